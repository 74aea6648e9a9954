package scpi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"go.bug.st/serial"
)

// serialPoll bounds one blocking read of a serial port, so that a
// deadline moved into the past (a cancelled ctx) is seen within it.
const serialPoll = 20 * time.Millisecond

// serialConn gives a serial port a net.Conn's deadlines: a read or write
// blocked past its deadline returns os.ErrDeadlineExceeded, and moving
// the deadline into the past ends a blocked call.
//
// go.bug.st/serial has a per-read timeout and no write timeout, so reads
// poll in slices of serialPoll and each write runs in a goroutine of its
// own. A write that timed out may go on in the kernel; the driver drops
// the connection after any timeout, so no other write follows it.
type serialConn struct {
	port serial.Port
	path string

	mu      sync.Mutex
	dl      time.Time     // zero is none
	changed chan struct{} // closed and replaced when the deadline changes
	closed  bool
}

var _ transport = (*serialConn)(nil)

// openSerial opens the serial port at path, raw, leaving the modem lines
// as they are, and discards what it had received.
func openSerial(path string, mode *serial.Mode) (*serialConn, error) {
	port, err := serial.Open(path, mode)
	if err != nil {
		return nil, fmt.Errorf("open serial port %s: %w", path, err)
	}
	if err := port.ResetInputBuffer(); err != nil {
		port.Close()
		return nil, fmt.Errorf("serial port %s: reset input buffer: %w", path, err)
	}
	return &serialConn{port: port, path: path, changed: make(chan struct{})}, nil
}

func (c *serialConn) deadline() (time.Time, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dl, c.changed
}

// SetDeadline sets the read and write deadline.
func (c *serialConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	c.dl = t
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// Read reads what the port has, waiting until the deadline.
func (c *serialConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		dl, _ := c.deadline()
		wait := serialPoll
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			wait = min(wait, left)
		}
		if err := c.port.SetReadTimeout(wait); err != nil {
			return 0, c.mapErr("read", err)
		}
		n, err := c.port.Read(p)
		if err != nil {
			return n, c.mapErr("read", err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

// Write writes all of p or fails, waiting until the deadline.
func (c *serialConn) Write(p []byte) (int, error) {
	done := make(chan error, 1)
	buf := bytes.Clone(p) // the write may outlive the call
	go func() {
		for len(buf) > 0 {
			n, err := c.port.Write(buf)
			if err != nil {
				done <- c.mapErr("write", err)
				return
			}
			if n <= 0 {
				done <- fmt.Errorf("serial port %s: write: %w", c.path, io.ErrShortWrite)
				return
			}
			buf = buf[n:]
		}
		done <- nil
	}()
	for {
		dl, changed := c.deadline()
		var expired <-chan time.Time
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(left)
			defer t.Stop()
			expired = t.C
		}
		select {
		case err := <-done:
			if err != nil {
				return 0, err
			}
			return len(p), nil
		case <-expired:
			return 0, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
}

// Close closes the port; a blocked Read returns within serialPoll.
func (c *serialConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	if err := c.port.Close(); err != nil {
		return fmt.Errorf("serial port %s: close: %w", c.path, err)
	}
	return nil
}

// mapErr words the port's errors: a port closed under the call is
// net.ErrClosed; a device that went away (unplugged, the other end of a
// pseudo-terminal closed) is io.EOF, as a TCP peer hanging up would be.
func (c *serialConn) mapErr(op string, err error) error {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	var pe *serial.PortError
	switch {
	case closed:
		return fmt.Errorf("serial port %s: %s: %w", c.path, op, net.ErrClosed)
	case errors.As(err, &pe) && pe.Code() == serial.PortClosed,
		errors.Is(err, syscall.EIO), errors.Is(err, syscall.ENXIO), errors.Is(err, syscall.ENODEV):
		return fmt.Errorf("serial port %s: %s: device gone: %w (%w)", c.path, op, io.EOF, err)
	}
	return fmt.Errorf("serial port %s: %s: %w", c.path, op, err)
}
