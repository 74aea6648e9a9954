package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
)

// consoleReader follows a board's console through go.bug.st/serial, as a
// bench's serial driver does, and hands out whole lines.
type consoleReader struct {
	port  serial.Port
	lines chan string
	err   chan error // the read error that ended the reader
}

// openConsole opens path and waits until the board has noticed the reader:
// lines printed before that are lost, as bytes on a wire are.
func openConsole(t *testing.T, b *Board, path string) *consoleReader {
	t.Helper()
	p, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { p.Close() })
	deadline := time.Now().Add(2 * time.Second)
	for !b.console.ReaderOpen() {
		if time.Now().After(deadline) {
			t.Fatal("the console never noticed its reader")
		}
		time.Sleep(time.Millisecond)
	}
	r := &consoleReader{port: p, lines: make(chan string, 1024), err: make(chan error, 1)}
	go func() {
		s := bufio.NewScanner(p)
		for s.Scan() {
			r.lines <- strings.TrimSuffix(s.Text(), "\r")
		}
		err := s.Err()
		if err == nil {
			err = io.EOF
		}
		r.err <- err
		close(r.lines)
	}()
	return r
}

// expect reads lines until one starts with each prefix in turn, and
// returns the matching lines.
func (r *consoleReader) expect(t *testing.T, prefixes ...string) []string {
	t.Helper()
	var got, seen []string
	timeout := time.After(10 * time.Second)
	for _, want := range prefixes {
		for found := false; !found; {
			select {
			case l, ok := <-r.lines:
				if !ok {
					t.Fatalf("console ended (%v) waiting for %q; read %q", <-r.err, want, seen)
				}
				seen = append(seen, l)
				if strings.HasPrefix(l, want) {
					got, found = append(got, l), true
				}
			case <-timeout:
				t.Fatalf("no console line %q; read %q", want, seen)
			}
		}
	}
	return got
}

func newConsoleBoard(t *testing.T, cfg Config) *Board {
	t.Helper()
	cfg.DTLSAddr, cfg.GDBAddr, cfg.UDPAddrs = "-", "-", []string{"127.0.0.1:0"}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.FactoryProgram(buildImage(t, "1.0.0", 1, 4<<10, 1)); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConsoleBootBanner(t *testing.T) {
	b := newConsoleBoard(t, Config{Name: "con-boot"})
	r := openConsole(t, b, b.ConsoleLink())
	b.SetPower(true)
	got := r.expect(t, "BL ", "APP ")
	want := []string{
		"BL fudbench-sim bootloader v1 board=con-boot reset=power boots=1",
		"APP v1.0.0 seq=1 mode=app reset=power boots=1 ready",
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, got[i], want[i])
		}
	}

	// A software reset keeps the pty; the banner says why it booted.
	b.Reset()
	got = r.expect(t, "BL ", "APP ")
	if got[0] != "BL fudbench-sim bootloader v1 board=con-boot reset=software boots=2" || !strings.HasSuffix(got[1], "reset=software boots=2 ready") {
		t.Errorf("after reset: %q", got)
	}
}

// TestConsoleRecoveryProgress reads the recovery bootloader's progress
// lines during a resumable update.
func TestConsoleRecoveryProgress(t *testing.T) {
	b := newConsoleBoard(t, Config{Name: "con-recovery"})
	r := openConsole(t, b, b.ConsoleLink())
	powerOn(t, b, ModeApp)
	r.expect(t, "APP v1.0.0")

	img := buildImage(t, "2.0.0", 2, 40<<10, 2)
	const szx = 6
	if _, err := resumable(t, b, img, szx, []byte{3}); err != nil {
		t.Fatal(err)
	}
	n := (len(img) + 1023) / 1024 // 40 blocks: a line every 4
	var prefixes []string
	prefixes = append(prefixes,
		fmt.Sprintf("APP update prepared size=%d szx=%d blocks=%d", len(img), szx, n),
		"BL fudbench-sim bootloader v1 board=con-recovery reset=software boots=2",
		fmt.Sprintf("BL recovery: resuming transfer size=%d szx=%d next=0/%d", len(img), szx, n),
		fmt.Sprintf("RECOVERY ready mode=recovery state=receiving next=0/%d boots=2", n))
	for k := n / 10; k <= n; k += n / 10 {
		prefixes = append(prefixes, fmt.Sprintf("RECOVERY block %d/%d", k, n))
	}
	prefixes = append(prefixes,
		fmt.Sprintf("RECOVERY verifying %d bytes", len(img)),
		"RECOVERY verify ok v2.0.0 seq=2, booting",
		"BL fudbench-sim bootloader v1 board=con-recovery reset=software boots=3",
		"APP v2.0.0 seq=2 mode=app reset=software boots=3 ready")
	got := r.expect(t, prefixes...)
	for i, l := range got {
		if strings.HasPrefix(prefixes[i], "RECOVERY block") && l != prefixes[i] {
			t.Errorf("progress line %q, want %q", l, prefixes[i])
		}
	}
}

// TestConsoleReenumerates: a board whose console re-enumerates takes its
// pty away at power off (the open reader gets an error) and comes back
// under a new /dev/pts path behind the same link.
func TestConsoleReenumerates(t *testing.T) {
	// A real boot delay leaves time to open the new pty before the banner.
	b := newConsoleBoard(t, Config{Name: "con-reenum", Reenumerate: true, TimeScale: 1, BootDelay: 400 * time.Millisecond})
	link := b.ConsoleLink()
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("link of an unpowered board: %v", err)
	}
	var paths []string
	for cycle := 1; cycle <= 2; cycle++ {
		b.SetPower(true)
		path := b.ConsolePath()
		if target, err := os.Readlink(link); err != nil || target != path || !strings.HasPrefix(path, "/dev/pts/") {
			t.Fatalf("cycle %d: link -> %q, %v; pty %q", cycle, target, err, path)
		}
		for _, p := range paths {
			if p == path {
				t.Fatalf("cycle %d: pty %s reused", cycle, path)
			}
		}
		paths = append(paths, path)
		r := openConsole(t, b, link)
		got := r.expect(t, "BL ", "APP ")
		if want := fmt.Sprintf("BL fudbench-sim bootloader v1 board=con-reenum reset=power boots=%d", cycle); got[0] != want {
			t.Errorf("cycle %d: banner %q, want %q", cycle, got[0], want)
		}

		b.SetPower(false)
		select {
		case l, ok := <-r.lines:
			if ok {
				t.Fatalf("cycle %d: line %q after power off", cycle, l)
			}
			t.Logf("cycle %d: reader error after power off: %v", cycle, <-r.err)
		case <-time.After(5 * time.Second):
			t.Fatalf("cycle %d: the reader of a removed pty got no error", cycle)
		}
		// The pty goes away in the background after the cut.
		gone := false
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if _, err := os.Lstat(link); errors.Is(err, fs.ErrNotExist) {
				gone = true
				break
			}
		}
		if !gone {
			t.Errorf("cycle %d: link still present 2 s after power off", cycle)
		}
	}
}
