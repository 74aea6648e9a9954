// Package serialconn gives a serial port (go.bug.st/serial) the deadline
// semantics of a net.Conn, for the drivers that speak a byte-stream
// protocol over either TCP or a serial port (a GDB server on a Black
// Magic Probe, a SCPI bench supply on USB serial): one client code path
// for both.
package serialconn

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

// Poll bounds one blocking read of the port, so that a deadline moved
// earlier (a cancelled ctx) is seen within this time.
const Poll = 20 * time.Millisecond

// Conn gives a serial port the deadline semantics of a net.Conn: a
// read or write blocked past its deadline returns os.ErrDeadlineExceeded,
// and moving a deadline into the past aborts a blocked call.
//
// go.bug.st/serial has only a per-call read timeout and no write timeout,
// so reads poll in slices of Poll, and each write runs in a
// goroutine of its own. A write that timed out may still be in the kernel;
// the next write waits for it first, so bytes never interleave. A write
// stuck for good (a peer that stopped reading) keeps its goroutine until
// the device goes away; the client drops the connection after any
// timeout, so no further write is queued behind it.
type Conn struct {
	port serial.Port
	path string

	mu      sync.Mutex
	rdl     time.Time     // read deadline; zero is none
	wdl     time.Time     // write deadline; zero is none
	changed chan struct{} // closed and replaced when a deadline changes
	closed  bool

	wmu     sync.Mutex       // one Write at a time
	pending chan writeResult // a write that timed out and has not ended, or nil
}

type writeResult struct {
	n   int
	err error
}

// Open opens the serial device at path in mode (raw; 8N1 when mode is
// nil, at 115200 baud) and discards what it had received. It leaves the
// modem lines alone: a pseudo-terminal has none, and setting them would
// fail.
func Open(path string, mode *serial.Mode) (*Conn, error) {
	if mode == nil {
		mode = &serial.Mode{BaudRate: 115200, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
	}
	port, err := serial.Open(path, mode)
	if err != nil {
		return nil, fmt.Errorf("open serial port %s: %w", path, err)
	}
	// Bytes left from an earlier session would be taken for replies.
	if err := port.ResetInputBuffer(); err != nil {
		port.Close()
		return nil, fmt.Errorf("serial port %s: reset input buffer: %w", path, err)
	}
	return &Conn{port: port, path: path, changed: make(chan struct{})}, nil
}

// deadline returns the read or write deadline and a channel closed when
// either changes.
func (c *Conn) deadline(write bool) (time.Time, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if write {
		return c.wdl, c.changed
	}
	return c.rdl, c.changed
}

func (c *Conn) setDeadlines(r, w *time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if r != nil {
		c.rdl = *r
	}
	if w != nil {
		c.wdl = *w
	}
	close(c.changed)
	c.changed = make(chan struct{})
	return nil
}

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error { return c.setDeadlines(&t, &t) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadlines(&t, nil) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadlines(nil, &t) }

// Read reads what the port has, waiting until the read deadline.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		dl, _ := c.deadline(false)
		wait := Poll
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return 0, os.ErrDeadlineExceeded
			}
			wait = min(wait, left)
		}
		// Only Read touches the port's read timeout, and the client reads
		// from one goroutine at a time.
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

// Write writes all of p or returns an error, waiting until the write
// deadline.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.pending != nil {
		r, err := c.await(c.pending)
		if err != nil {
			return 0, err
		}
		c.pending = nil
		if r.err != nil {
			return 0, r.err
		}
	}
	done := make(chan writeResult, 1)
	// The caller may reuse p once Write returns, even if the write goes on.
	buf := bytes.Clone(p)
	go func() {
		var r writeResult
		for r.n < len(buf) && r.err == nil {
			n, err := c.port.Write(buf[r.n:])
			r.n += max(n, 0)
			switch {
			case err != nil:
				r.err = c.mapErr("write", err)
			case n <= 0:
				r.err = fmt.Errorf("serial port %s: write: %w", c.path, io.ErrShortWrite)
			}
		}
		done <- r
	}()
	r, err := c.await(done)
	if err != nil {
		c.pending = done
		return 0, err
	}
	return r.n, r.err
}

// await waits for a write to end or the write deadline to pass.
func (c *Conn) await(done <-chan writeResult) (writeResult, error) {
	for {
		dl, changed := c.deadline(true)
		var expired <-chan time.Time
		if !dl.IsZero() {
			left := time.Until(dl)
			if left <= 0 {
				return writeResult{}, os.ErrDeadlineExceeded
			}
			expired = time.After(left)
		}
		select {
		case r := <-done:
			return r, nil
		case <-expired:
			return writeResult{}, os.ErrDeadlineExceeded
		case <-changed:
			// Look at the new deadline.
		}
	}
}

// Close closes the port; a blocked Read returns within Poll.
func (c *Conn) Close() error {
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

// mapErr turns the port's errors into the ones the client tells apart: a
// port closed by us is net.ErrClosed; a device that went away (unplugged,
// or the other end of a pseudo-terminal closed) is io.EOF, as a TCP server
// hanging up would be.
func (c *Conn) mapErr(op string, err error) error {
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

// ResetInput discards what the port has received and not yet read.
func (c *Conn) ResetInput() error {
	if err := c.port.ResetInputBuffer(); err != nil {
		return fmt.Errorf("serial port %s: reset input buffer: %w", c.path, err)
	}
	return nil
}
