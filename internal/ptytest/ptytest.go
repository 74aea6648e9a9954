// Package ptytest opens pseudo-terminals for tests of serial drivers: the
// test plays the device on the master side while the code under test
// opens the slave by its path, as it would a USB-serial adapter.
package ptytest

import (
	"os"
	"syscall"
	"testing"

	"github.com/creack/pty"
)

// Open returns a pseudo-terminal's master, non-blocking (through the
// runtime poller, Close ends a blocked Read), and the path of its slave.
// The slave stays open until the test ends, so the master does not read
// EIO while the code under test has the port closed. Without a
// pseudo-terminal the test is skipped, and fails under CI=true.
func Open(t testing.TB) (master *os.File, slavePath string) {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pseudo-terminal needed under CI=true: %v", err)
		}
		t.Skipf("no pseudo-terminal: %v", err)
	}
	// pty.Open hands out the master in blocking mode (it calls Fd).
	fd, err := syscall.Dup(int(m.Fd()))
	m.Close()
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	syscall.CloseOnExec(fd)
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		s.Close()
		t.Fatal(err)
	}
	m = os.NewFile(uintptr(fd), "/dev/ptmx")
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s.Name()
}
