package openocd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/probes"
)

// do runs f on a live connection, holding the probe for the whole
// operation. A connection that broke during f is dropped so the next
// operation reconnects. gdbrsp's do is alike but not shared: what a
// connection is (TCP or serial, a handshake or none) differs.
func (p *Probe) do(ctx context.Context, op string, f func(c *conn) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: %s: probe is closed: %w", p, op, probes.ErrProbe)
	}
	if err := ctx.Err(); err != nil {
		return ctxErr(p.name, op, err)
	}
	c, err := p.connect(ctx)
	if err != nil {
		return err
	}
	// A cancelled ctx aborts blocked I/O; arm re-checks ctx after every
	// deadline it sets, so a cancel is never overwritten unnoticed.
	defer probeutil.AbortOnDone(ctx, c.nc)()
	err = f(c)
	if c.broken {
		c.nc.Close()
		p.c = nil
	}
	return err
}

// connect returns the live connection or makes a new one.
func (p *Probe) connect(ctx context.Context) (*conn, error) {
	if p.c != nil {
		if p.c.alive() {
			return p.c, nil
		}
		p.log.Info("openocd closed the connection; reconnecting")
		p.c.nc.Close()
		p.c = nil
	}
	d := net.Dialer{Timeout: p.cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", p.cfg.Address)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxErr(p.name, "connect", ctx.Err())
		}
		return nil, fmt.Errorf("%s: connect: %w: %w", p, probes.ErrProbe, err)
	}
	p.c = &conn{p: p, nc: nc, r: bufio.NewReaderSize(nc, 64<<10)}
	p.log.Debug("connected")
	return p.c, nil
}

// conn is one connection to OpenOCD.
type conn struct {
	p  *Probe
	nc net.Conn
	r  *bufio.Reader
	// broken: the byte stream can no longer be trusted (I/O error,
	// timeout, a reply that is not ours); the connection must be dropped.
	broken bool
	// ctxBound: the current deadline is the ctx's, so a timeout is the
	// ctx's even if its timer has not fired yet.
	ctxBound bool
}

// alive reports whether OpenOCD still holds the connection, waiting at
// most aliveWait: a read times out on a live idle connection and returns
// EOF (or a reset) on a closed one. Whole frames that arrived while no
// command was pending are consumed first, so that notifications followed
// by a hang-up still count as closed: notifications go to Notify, anything
// else is a stray reply and is dropped. A partial frame stays.
func (c *conn) alive() bool {
	for {
		// A deadline already past would fail the read before it looks
		// at the socket, so it lies a little ahead.
		if err := c.nc.SetReadDeadline(time.Now().Add(aliveWait)); err != nil {
			return false
		}
		if _, err := c.r.Peek(1); err != nil {
			return probeutil.IsTimeout(err)
		}
		buf, _ := c.r.Peek(c.r.Buffered())
		i := bytes.IndexByte(buf, terminator)
		if i < 0 {
			return true
		}
		frame := buf[:i]
		if isNotification(frame) {
			c.notify(strings.TrimRight(string(frame), "\r\n"))
		} else {
			c.p.log.Warn("dropping a stray frame from openocd", "frame", short(string(frame)))
		}
		c.r.Discard(i + 1)
	}
}

// arm sets the deadline of the next command: one timeout from now, or
// ctx's deadline if earlier. It then checks ctx, so that a cancel that
// came before this deadline was set is not lost.
func (c *conn) arm(ctx context.Context) error {
	var err error
	c.ctxBound, err = probeutil.Arm(ctx, c.nc, c.p.cfg.Timeout)
	return err
}

// wrap makes cmd report its catch code and message as a Tcl list.
func wrap(cmd string) string {
	return fmt.Sprintf("set %s [catch {%s} %s]; list $%s $%s", rcVar, cmd, msgVar, rcVar, msgVar)
}

// call sends cmd wrapped and returns its result, or a *CommandError.
func (c *conn) call(ctx context.Context, op, cmd string) (string, error) {
	c.p.log.Debug("command", "cmd", short(cmd))
	if err := c.arm(ctx); err != nil {
		return "", c.fail(ctx, op, err, nil)
	}
	if _, err := io.WriteString(c.nc, wrap(cmd)+"\x1a"); err != nil {
		return "", c.fail(ctx, op, err, nil)
	}
	rep, err := readReply(c.r, c.notify)
	if err != nil {
		var pe *partialError
		if errors.As(err, &pe) {
			return "", c.fail(ctx, op, pe.err, pe.got)
		}
		// The frame arrived but is no reply of ours: this is not
		// OpenOCD, or its state is unknown.
		c.broken = true
		return "", fmt.Errorf("%s: %s: %w: %w", c.p, op, probes.ErrProbe, err)
	}
	if rep.code != 0 {
		return "", &CommandError{Probe: c.p.name, Op: op, Command: cmd, Code: rep.code, Message: rep.msg}
	}
	return rep.msg, nil
}

func (c *conn) notify(msg string) {
	c.p.log.Debug("notification", "msg", msg)
	if c.p.cfg.Notify != nil {
		c.p.cfg.Notify(msg)
	}
}

// reply is the decoded reply to a wrapped command.
type reply struct {
	code int    // catch code
	msg  string // result or error message
}

// partialError is a transport error while reading a frame, with the
// bytes of the frame read so far.
type partialError struct {
	got []byte
	err error
}

func (e *partialError) Error() string { return e.err.Error() }

func (e *partialError) Unwrap() error { return e.err }

// readReply reads frames up to the reply of the pending command, passing
// notifications (frames starting with "type ") to notify. A transport
// error is a *partialError; any other error means the frame is not a
// reply of a wrapped command.
func readReply(r *bufio.Reader, notify func(string)) (reply, error) {
	for {
		frame, err := readFrame(r)
		if err != nil {
			return reply{}, &partialError{got: frame, err: err}
		}
		if isNotification(frame) {
			if notify != nil {
				notify(strings.TrimRight(string(frame), "\r\n"))
			}
			continue
		}
		return parseReply(frame)
	}
}

// isNotification tells OpenOCD's asynchronous frames from replies.
func isNotification(frame []byte) bool {
	return bytes.HasPrefix(frame, []byte("type "))
}

var errTooLong = fmt.Errorf("frame longer than %d bytes without a 0x1a terminator", maxFrame)

// readFrame reads one frame and returns it without its terminator. On
// error it returns what it read of the frame.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var frame []byte
	for {
		chunk, err := r.ReadSlice(terminator)
		frame = append(frame, chunk...)
		switch {
		case err == nil:
			return frame[:len(frame)-1], nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return frame, err
		case len(frame) > maxFrame:
			return frame, errTooLong
		}
	}
}

// parseReply decodes "CODE MESSAGE" as a two-element Tcl list.
func parseReply(frame []byte) (reply, error) {
	elems, err := parseListN(string(frame), 3) // 3: "3 elements, want 2"
	if err == nil && len(elems) != 2 {
		err = fmt.Errorf("%d elements, want 2", len(elems))
	}
	if err != nil {
		return reply{}, fmt.Errorf("unexpected reply %q: %w", short(string(frame)), err)
	}
	code, err := strconv.Atoi(elems[0])
	if err != nil {
		return reply{}, fmt.Errorf("unexpected reply %q: catch code %q is no integer", short(string(frame)), short(elems[0]))
	}
	return reply{code: code, msg: elems[1]}, nil
}

// fail turns a transport error during op into the probe's error and
// marks the connection broken. got is what arrived of the reply.
func (c *conn) fail(ctx context.Context, op string, err error, got []byte) error {
	c.broken = true
	if ctx.Err() != nil {
		return ctxErr(c.p.name, op, ctx.Err())
	}
	timeout := probeutil.IsTimeout(err)
	switch {
	case timeout && c.ctxBound:
		return ctxErr(c.p.name, op, context.DeadlineExceeded)
	case timeout:
		return fmt.Errorf("%s: %s: no reply within %v (the command may have reached the target): %w: %w", c.p, op, c.p.cfg.Timeout, probes.ErrTimeout, err)
	case probeutil.Hungup(err):
		when := "before replying"
		if len(got) > 0 {
			when = fmt.Sprintf("mid-reply, after %d bytes (%q)", len(got), short(string(got)))
		}
		return fmt.Errorf("%s: %s: openocd closed the connection %s; the command may have reached the target: %w: %w", c.p, op, when, probes.ErrProbe, err)
	}
	return fmt.Errorf("%s: %s: %w: %w", c.p, op, probes.ErrProbe, err)
}

// ctxErr is in every probe driver, not in internal/probeutil: it wraps
// probes.ErrTimeout, and the internal leaves import nothing of fudbench.
func ctxErr(name, op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", name, op, probes.ErrTimeout, err)
	}
	return fmt.Errorf("%s: %s: %w", name, op, err)
}

// short shortens a command or reply for logs and errors.
func short(s string) string {
	if len(s) > 80 {
		return fmt.Sprintf("%s...(%d bytes)", s[:80], len(s))
	}
	return s
}
