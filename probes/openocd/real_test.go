package openocd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/probes"
)

// needProgram skips the test when an external program is missing; under
// CI=true it fails instead.
func needProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (Debian package %s): %v", name, pkg, err)
	}
	t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	return ""
}

// lockedBuffer collects a process's output for the test log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startOpenOCD runs OpenOCD with the dummy adapter and its Tcl RPC server
// on a free loopback port, plus the extra -c commands, and returns the
// server's address once it listens.
func startOpenOCD(t *testing.T, extra ...string) string {
	t.Helper()
	bin := needProgram(t, "openocd", "openocd")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{
		"-c", "adapter driver dummy",
		"-c", "adapter speed 1000", // silences the "no adapter speed" warning
		"-c", "transport select jtag",
		"-c", "bindto 127.0.0.1",
		"-c", fmt.Sprintf("tcl_port %d", port),
		"-c", "gdb_port disabled",
		"-c", "telnet_port disabled",
	}
	for _, e := range extra {
		args = append(args, "-c", e)
	}
	cmd := exec.Command(bin, args...)
	var out lockedBuffer
	cmd.Stdout = &out
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		ready := fmt.Sprintf("Listening on port %d for tcl connections", port)
		for sc.Scan() {
			fmt.Fprintln(&out, sc.Text())
			if strings.Contains(sc.Text(), ready) {
				close(listening)
				ready = "\x00" // never again
			}
		}
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("openocd output:\n%s", out.String())
		}
	})
	select {
	case <-listening:
	case err := <-exited:
		exited <- err
		t.Fatalf("openocd exited before listening: %v\n%s", err, out.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("openocd did not listen on port %d within 15s\n%s", port, out.String())
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// TestRealOpenOCD runs the client against OpenOCD with the dummy adapter
// and no target: framing, the error convention, Jim's list quoting and
// program's failure text. Texts seen from Debian's OpenOCD 0.12.0:
//
//	version                  -> 0 {Open On-Chip Debugger 0.12.0}
//	error boom               -> 1 boom
//	nosuchcmd                -> 1 {invalid command name "nosuchcmd"}
//	program FILE verify ADDR -> 1 {** Unable to reset target **}
//	reset run                -> 1 {invalid command name "reset"}   (no target)
//	read_memory ...          -> 1 {invalid command name "read_memory"}
//	flash erase_address ...  -> 1 {}   (the reason is only in OpenOCD's log)
func TestRealOpenOCD(t *testing.T) {
	addr := startOpenOCD(t)
	p, err := New(Config{Address: addr, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := t.Context()
	name := "openocd:" + addr

	v, err := p.Command(ctx, "version")
	if err != nil || !strings.HasPrefix(v, "Open On-Chip Debugger ") {
		t.Fatalf("version = %q, %v", v, err)
	}
	t.Logf("version: %s", v)

	// Jim's own quoting of awkward elements parses back.
	want := []string{"a", "b c", "d {e", `x\y`, "", "$x", "p\nq", `"`, "}{"}
	res, err := p.Command(ctx, "list a {b c} d\\ \\{e {x\\y} {} {$x} \"p\\nq\" \\\" \\}\\{")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("jim list: %q", res)
	if got, err := parseList(res); err != nil || !slices.Equal(got, want) {
		t.Errorf("Jim's list %q parses as %q, %v; want %q", res, got, err, want)
	}
	res, err = p.Command(ctx, "list "+joinList(want...))
	if err != nil || !equalList(res, want) {
		t.Errorf("list of our quoting = %q, %v; want the same elements", res, err)
	}

	tests := []struct {
		name string
		call func() error
		code int
		msg  string
		text string
	}{
		{name: "error", call: func() error { _, err := p.Command(ctx, "error boom"); return err }, code: 1, msg: "boom", text: name + ": error boom: boom"},
		{
			name: "unknown command", call: func() error { _, err := p.Command(ctx, "nosuchcmd"); return err },
			code: 1, msg: `invalid command name "nosuchcmd"`, text: name + `: nosuchcmd: invalid command name "nosuchcmd"`,
		},
		{
			name: "program", call: func() error { return p.Flash(ctx, 0x08000000, make([]byte, 64), nil) },
			code: 1, msg: "** Unable to reset target **", text: name + ": program at 0x08000000: ** Unable to reset target **",
		},
		{
			name: "reset without target", call: func() error { return p.Reset(ctx) },
			code: 1, msg: `invalid command name "reset"`, text: name + `: reset run: invalid command name "reset"`,
		},
		{
			name: "erase without flash", call: func() error { return p.Erase(ctx, 0x08000000, 0x400) },
			code: 1, msg: "", text: name + ": flash erase_address at 0x08000000+0x400: failed without a message (the details are in OpenOCD's log)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var ce *CommandError
			if !errors.As(err, &ce) || ce.Code != tt.code || ce.Message != tt.msg {
				t.Fatalf("err %#v, want a CommandError code %d message %q", err, tt.code, tt.msg)
			}
			if !errors.Is(err, probes.ErrProbe) || err.Error() != tt.text {
				t.Errorf("err %q, want ErrProbe %q", err, tt.text)
			}
		})
	}
}

func equalList(s string, want []string) bool {
	got, err := parseList(s)
	return err == nil && slices.Equal(got, want)
}

// TestRealOpenOCDNotifications adds OpenOCD's "testee" target so that
// reset and read_memory exist and send notifications; with
// tcl_notifications on, OpenOCD 0.12.0 sent:
//
//	reset run    -> type target_reset mode run\r\n, then 0 {}
//	reset halt   -> type target_reset mode halt\r\n, then 0 {}
//	program ...  -> type target_reset mode init\r\n, then 1 {** Programming Failed **}
//	read_memory  -> 1 {read_memory: failed to read memory}
//
// (resume makes this OpenOCD exit, so the test never runs it.)
func TestRealOpenOCDNotifications(t *testing.T) {
	addr := startOpenOCD(t,
		"jtag newtap dummy cpu -irlen 4 -expected-id 0",
		"target create dummy.cpu testee -chain-position dummy.cpu",
	)
	var notes []string // Notify runs on the caller's goroutine
	p, err := New(Config{Address: addr, Timeout: 10 * time.Second, Notify: func(s string) { notes = append(notes, s) }})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	name := "openocd:" + addr
	if _, err := p.Command(ctx, "tcl_notifications on"); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name  string
		call  func() error
		err   string // "" for success
		notes []string
	}{
		{name: "reset", call: func() error { return p.Reset(ctx) }, notes: []string{"type target_reset mode run"}},
		{name: "halt", call: func() error { return p.Halt(ctx) }, notes: []string{"type target_reset mode halt"}},
		{
			name: "program", call: func() error { return p.Flash(ctx, 0x08000000, make([]byte, 64), nil) },
			err: name + ": program at 0x08000000: ** Programming Failed **", notes: []string{"type target_reset mode init"},
		},
		{
			name: "read", call: func() error { return p.Read(ctx, 0x20000000, make([]byte, 4)) },
			err: name + ": read_memory at 0x20000000 (4 bytes): read_memory: failed to read memory",
		},
		{name: "reset again", call: func() error { return p.Reset(ctx) }, notes: []string{"type target_reset mode run"}},
	}
	for _, s := range steps {
		notes = nil
		err := s.call()
		switch {
		case s.err == "" && err != nil:
			t.Errorf("%s: %v", s.name, err)
		case s.err != "" && (err == nil || err.Error() != s.err || !errors.Is(err, probes.ErrProbe)):
			t.Errorf("%s: err %v, want ErrProbe %q", s.name, err, s.err)
		}
		t.Logf("%s: notifications %q", s.name, notes)
		// Notifications may also arrive after a reply (polling
		// events); the ones expected must be there, each whole.
		for _, n := range s.notes {
			if !slices.Contains(notes, n) {
				t.Errorf("%s: notifications %q lack %q", s.name, notes, n)
			}
		}
	}
	v, err := p.Command(ctx, "version")
	if err != nil || !strings.HasPrefix(v, "Open On-Chip Debugger ") {
		t.Errorf("version after notifications = %q, %v", v, err)
	}
}
