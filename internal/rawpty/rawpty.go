// Package rawpty opens the pseudo-terminals the simulated devices serve a
// serial port on (a bench supply, an STM32 or ESP ROM loader): the slave
// in raw mode, as a USB-serial adapter's port is, and the master through
// the runtime's poller, so that closing it ends a blocked read.
package rawpty

import (
	"fmt"
	"os"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// Open returns a new pseudo-terminal: its master, non-blocking, and its
// slave in raw mode (slave.Name() is the port a client opens). The
// caller closes both.
func Open() (master, slave *os.File, err error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, nil, fmt.Errorf("open pty: %w", err)
	}
	if err := SetRaw(int(s.Fd())); err != nil {
		m.Close()
		s.Close()
		return nil, nil, fmt.Errorf("raw mode on %s: %w", s.Name(), err)
	}
	if master, err = pollable(m); err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("pty master of %s: %w", s.Name(), err)
	}
	return master, s, nil
}

// pollable returns f's descriptor as a non-blocking *os.File and closes f.
// pty.Open hands out the master in blocking mode (it calls Fd), and a
// blocked Read would keep Close from ever finishing; through the runtime
// poller, Close interrupts it.
func pollable(f *os.File) (*os.File, error) {
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), nil
}

// SetRaw applies cfmakeraw(3) to a terminal: no echo, no line editing,
// no CR/LF translation, 8 bits, reads returning each byte.
func SetRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	return unix.IoctlSetTermios(fd, unix.TCSETS, t)
}
