package simconsole

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"
)

// requireTool skips when an external program is missing, except under CI
// where the program must be installed.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newConsole(t *testing.T, opts Options) *Console {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openSerial opens path as a bench would and waits until c has noticed the
// reader, so that the next Printf is delivered.
func openSerial(t *testing.T, c *Console, path string) serial.Port {
	t.Helper()
	p, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", path, err)
	}
	t.Cleanup(func() { p.Close() })
	if err := p.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitReader(t, c, true)
	return p
}

func waitReader(t *testing.T, c *Console, open bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for c.ReaderOpen() != open {
		if time.Now().After(deadline) {
			t.Fatalf("ReaderOpen never became %v", open)
		}
		time.Sleep(time.Millisecond)
	}
}

// readUntil reads from r until the data read ends with want or the
// timeout passes, and returns everything read.
func readUntil(t *testing.T, r io.Reader, want string, timeout time.Duration) string {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, 4096)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if strings.HasSuffix(got.String(), want) {
			return got.String()
		}
		if err != nil {
			t.Fatalf("read: %v after %q", err, got.String())
		}
	}
	t.Fatalf("timed out waiting for %q; got %q", want, got.String())
	return ""
}

func TestLinesOverSerial(t *testing.T) {
	link := filepath.Join(t.TempDir(), "by-id", "usb-sim-board-if00")
	c := newConsole(t, Options{Link: link})
	if !strings.HasPrefix(c.Path(), "/dev/pts/") {
		t.Fatalf("Path = %q", c.Path())
	}
	if c.Link() != link {
		t.Errorf("Link = %q", c.Link())
	}
	if target, err := os.Readlink(link); err != nil || target != c.Path() {
		t.Fatalf("link -> %q, %v; want %s", target, err, c.Path())
	}

	tests := []struct {
		name   string
		format string
		args   []any
		want   string
	}{
		{"plain", "boot %d", []any{1}, "boot 1\r\n"},
		{"trailing newline not doubled", "ready\n", nil, "ready\r\n"},
		{"trailing CRLF not doubled", "ready\r\n", nil, "ready\r\n"},
		{"inner newline", "a\nb", nil, "a\r\nb\r\n"},
		{"control bytes pass raw", "x\x03\x04\x7f\ry", nil, "x\x03\x04\x7f\ry\r\n"},
		{"utf8", "größe %s", []any{"✓"}, "größe ✓\r\n"},
	}
	// Through the link, as a bench configured with a by-id name would.
	p := openSerial(t, c, link)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Printf(tt.format, tt.args...)
			if got := readUntil(t, p, tt.want, 2*time.Second); got != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
		})
	}
	// A burst of lines arrives whole and in order while someone reads.
	var want strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&want, "progress %d/3000\r\n", i)
	}
	got := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		deadline := time.Now().Add(5 * time.Second)
		for b.Len() < want.Len() && time.Now().Before(deadline) {
			n, err := p.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	for i := range 3000 {
		c.Printf("progress %d/3000", i)
	}
	if g := <-got; g != want.String() {
		t.Errorf("burst read differs: %d bytes, want %d", len(g), want.Len())
	}
	if s := c.Stats(); s.Dropped != 0 || s.Unread != 0 {
		t.Errorf("stats with an active reader: %+v", s)
	}
}

func TestSlaveIsRaw(t *testing.T) {
	c := newConsole(t, Options{})
	// A plain open does not set modes itself, unlike go.bug.st/serial.
	f, err := os.OpenFile(c.Path(), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitReader(t, c, true)
	tio := termios(t, f)
	if tio.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG) != 0 || tio.Iflag&(unix.ICRNL|unix.IXON) != 0 || tio.Oflag&unix.OPOST != 0 {
		t.Errorf("termios not raw: iflag %#x oflag %#x lflag %#x", tio.Iflag, tio.Oflag, tio.Lflag)
	}
	c.Printf("a\rb\x03c")
	if got := readUntil(t, deadlineReader{f}, "\r\n", 2*time.Second); got != "a\rb\x03c\r\n" {
		t.Errorf("read %q", got)
	}

	// A reader that leaves cooked modes behind does not spoil the next one.
	tio.Lflag |= unix.ECHO | unix.ICANON
	tio.Iflag |= unix.ICRNL
	setTermios(t, f, tio)
	f.Close()
	waitReader(t, c, false)
	g, err := os.OpenFile(c.Path(), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if tio := termios(t, g); tio.Lflag&(unix.ECHO|unix.ICANON) != 0 || tio.Iflag&unix.ICRNL != 0 {
		t.Errorf("modes not restored for the next reader: iflag %#x lflag %#x", tio.Iflag, tio.Lflag)
	}
}

// deadlineReader gives an os.File read the short timeout readUntil expects.
type deadlineReader struct{ f *os.File }

func (r deadlineReader) Read(p []byte) (int, error) {
	if err := r.f.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		return 0, err
	}
	n, err := r.f.Read(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return n, err
}

func termios(t *testing.T, f *os.File) *unix.Termios {
	t.Helper()
	var tio *unix.Termios
	if err := control(f, func(fd int) (err error) {
		tio, err = unix.IoctlGetTermios(fd, unix.TCGETS)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return tio
}

// control runs f on the file's descriptor without making it blocking.
func control(file *os.File, f func(fd int) error) error {
	sc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := sc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func setTermios(t *testing.T, f *os.File, tio *unix.Termios) {
	t.Helper()
	if err := control(f, func(fd int) error { return unix.IoctlSetTermios(fd, unix.TCSETS, tio) }); err != nil {
		t.Fatal(err)
	}
}

func TestReenumerate(t *testing.T) {
	link := filepath.Join(t.TempDir(), "console")
	c := newConsole(t, Options{Link: link, Reenumerate: true})
	first := c.Path()
	p := openSerial(t, c, link)
	c.Printf("app v1")
	readUntil(t, p, "app v1\r\n", 2*time.Second)

	c.Detach()
	if c.Attached() || c.Path() != "" {
		t.Errorf("after Detach: attached %v path %q", c.Attached(), c.Path())
	}
	if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("link still present after Detach: %v", err)
	}
	// The open reader loses its device.
	buf := make([]byte, 64)
	deadline := time.Now().Add(2 * time.Second)
	var rerr error
	for rerr == nil && time.Now().Before(deadline) {
		_, rerr = p.Read(buf)
	}
	if rerr == nil {
		t.Fatalf("reader of a removed pty got no error")
	}
	t.Logf("reader error after Detach: %v", rerr)
	c.Printf("unpowered") // discarded, must not panic or block

	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	second := c.Path()
	if second == "" || second == first {
		t.Fatalf("after Attach path %q, first was %q", second, first)
	}
	if target, err := os.Readlink(link); err != nil || target != second {
		t.Fatalf("link -> %q, %v; want %s", target, err, second)
	}
	// The old path is gone or is some other pty; it must not carry our lines.
	p2 := openSerial(t, c, link)
	c.Printf("app v2")
	if got := readUntil(t, p2, "app v2\r\n", 2*time.Second); got != "app v2\r\n" {
		t.Errorf("read %q after re-enumeration", got)
	}
	if s := waitStats(c, func(s Stats) bool { return s.Lines == 2 }); s.Ptys != 2 || s.Unpowered != 1 || s.Lines != 2 {
		t.Errorf("stats %+v, want 2 ptys, 2 lines and 1 unpowered line", s)
	}
	// Repeated cycles keep working and never reuse the previous number.
	prev := second
	for range 5 {
		c.Detach()
		if err := c.Attach(); err != nil {
			t.Fatal(err)
		}
		if c.Path() == prev {
			t.Fatalf("re-enumerated to the same path %s", prev)
		}
		prev = c.Path()
	}
}

func TestDetachWithoutReenumerate(t *testing.T) {
	link := filepath.Join(t.TempDir(), "console")
	c := newConsole(t, Options{Link: link})
	path := c.Path()
	p := openSerial(t, c, path)
	c.Printf("before")
	readUntil(t, p, "before\r\n", 2*time.Second)
	c.Detach()
	c.Detach() // idempotent
	c.Printf("while off")
	if c.Path() != path {
		t.Errorf("path changed to %q", c.Path())
	}
	if target, _ := os.Readlink(link); target != path {
		t.Errorf("link -> %q, want %s", target, path)
	}
	if err := c.Attach(); err != nil {
		t.Fatal(err)
	}
	c.Printf("after")
	if got := readUntil(t, p, "after\r\n", 2*time.Second); got != "after\r\n" {
		t.Errorf("read %q; the line printed while detached must be lost", got)
	}
	if s := c.Stats(); s.Unpowered != 1 || s.Ptys != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestNoReaderNeverBlocks(t *testing.T) {
	c := newConsole(t, Options{})
	const n = 10000
	start := time.Now()
	printMany(t, c, n, "chatter")
	elapsed := time.Since(start)
	t.Logf("%d lines with no reader: %v (%.2f µs/line)", n, elapsed, float64(elapsed.Microseconds())/n)

	// A later reader gets what is printed after it opened, no backlog.
	p := openSerial(t, c, c.Path())
	c.Printf("fresh")
	if got := readUntil(t, p, "fresh\r\n", 2*time.Second); got != "fresh\r\n" {
		t.Errorf("late reader got %d bytes %.80q, want only the fresh line", len(got), got)
	}
	// Lines counts after the write returns, which may be after the read.
	if s := waitStats(c, func(s Stats) bool { return s.Lines == 1 }); s.Unread != n || s.Dropped != 0 || s.Lines != 1 {
		t.Errorf("stats %+v: want %d lines unread and 1 delivered", s, n)
	}

	// A reader that leaves takes nothing stale with it to the next one.
	p.Close()
	waitReader(t, c, false)
	printMany(t, c, 100, "between")
	p2 := openSerial(t, c, c.Path())
	c.Printf("second")
	if got := readUntil(t, p2, "second\r\n", 2*time.Second); got != "second\r\n" {
		t.Errorf("second reader got %.80q", got)
	}
}

// waitStats waits up to 2 s for ok and returns the last stats.
func waitStats(c *Console, ok func(Stats) bool) Stats {
	deadline := time.Now().Add(2 * time.Second)
	for {
		s := c.Stats()
		if ok(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(time.Millisecond)
	}
}

// printMany prints n lines and fails if Printf blocks.
func printMany(t *testing.T, c *Console, n int, word string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			c.Printf("%s %05d %s", word, i, strings.Repeat("#", 60))
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Printf blocked")
	}
}

func TestReaderNotReadingNeverBlocks(t *testing.T) {
	c := newConsole(t, Options{Queue: 64, FullTimeout: 20 * time.Millisecond})
	p := openSerial(t, c, c.Path())
	const n = 10000
	printMany(t, c, n, "overrun")
	// Let the writer hit the full pty and give up at least once.
	s := waitStats(c, func(s Stats) bool { return s.Lines+s.Dropped == n })
	if s.Dropped == 0 || s.Lines == 0 || s.Lines+s.Dropped != n {
		t.Errorf("stats %+v: want some lines delivered and some dropped", s)
	}
	// The reader catches up and then sees new lines again.
	c.Printf("caught up")
	got := readUntil(t, p, "caught up\r\n", 5*time.Second)
	if !strings.HasPrefix(got, "overrun 00000 ") {
		t.Errorf("reader did not get the oldest buffered line first: %.40q", got)
	}
	t.Logf("stats %+v, reader got %d bytes", c.Stats(), len(got))
}

func TestInputIsDrained(t *testing.T) {
	c := newConsole(t, Options{})
	p := openSerial(t, c, c.Path())
	chunk := bytes.Repeat([]byte("reboot\r\n"), 512)
	const total = 1 << 20
	done := make(chan error, 1)
	go func() {
		// A tty write interrupted by a signal returns a short count.
		for sent := 0; sent < total; {
			n, err := p.Write(chunk[:min(len(chunk), total-sent)])
			sent += n
			if err != nil && !errors.Is(err, unix.EINTR) {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("writing to the board blocked")
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().InputBytes < total && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := c.Stats().InputBytes; got != total {
		t.Errorf("input bytes %d, want %d", got, total)
	}
	// Input is not echoed back to the reader.
	c.Printf("still here")
	if got := readUntil(t, p, "still here\r\n", 2*time.Second); got != "still here\r\n" {
		t.Errorf("read %q", got)
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name        string
		reenumerate bool
		detachFirst bool
	}{
		{"attached", false, false},
		{"detached", false, true},
		{"reenumerate attached", true, false},
		{"reenumerate detached", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			link := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-"))
			c, err := New(Options{Link: link, Reenumerate: tt.reenumerate, Logger: quietLogger()})
			if err != nil {
				t.Fatal(err)
			}
			path := c.Path()
			if tt.detachFirst {
				c.Detach()
			}
			for range 100 {
				c.Printf("busy")
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := os.Lstat(link); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("link not removed: %v", err)
			}
			if c.Path() != "" || c.ReaderOpen() {
				t.Errorf("after Close: path %q (was %s), reader %v", c.Path(), path, c.ReaderOpen())
			}
			c.Printf("after close") // must not panic or block
			if err := c.Attach(); !errors.Is(err, ErrClosed) {
				t.Errorf("Attach after Close: %v, want ErrClosed", err)
			}
			c.Detach()
		})
	}
}

func TestLinkErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "regular")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Link: file, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("New over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("regular file was replaced")
	}
	// A stale symlink from an earlier run is replaced.
	stale := filepath.Join(dir, "stale")
	if err := os.Symlink("/dev/pts/999999", stale); err != nil {
		t.Fatal(err)
	}
	c := newConsole(t, Options{Link: stale})
	if target, _ := os.Readlink(stale); target != c.Path() {
		t.Errorf("stale link -> %q, want %s", target, c.Path())
	}
	// Closing a console whose link another console took over leaves it.
	c2 := newConsole(t, Options{Link: stale})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(stale); target != c2.Path() {
		t.Errorf("link -> %q after closing the previous owner, want %s", target, c2.Path())
	}
}

// TestPicocom checks that a terminal program people actually use opens the
// link and shows the board's lines.
func TestPicocom(t *testing.T) {
	picocom := requireTool(t, "picocom")
	link := filepath.Join(t.TempDir(), "ttyBOARD")
	c := newConsole(t, Options{Link: link})
	logPath := filepath.Join(t.TempDir(), "picocom.log")
	cmd := exec.Command(picocom, "-q", "-b", "115200", "--exit-after", "500", "-g", logPath, link)
	stdin, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var out bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitReader(t, c, true)
	for i := range 3 {
		c.Printf("picocom line %d", i)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("picocom: %v\n%s", err, out.String())
	}
	logged, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	want := "picocom line 0\r\npicocom line 1\r\npicocom line 2\r\n"
	if string(logged) != want {
		t.Errorf("picocom logged %q, want %q (output %q)", logged, want, out.String())
	}
}
