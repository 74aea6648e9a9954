package scpi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/fudbench/fudbench/internal/serialconn"
	"io"
	"net"
	"strings"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/power"
)

const (
	// maxReply bounds a reply: an instrument that talks on and on is an
	// error, not a reason to buffer without end.
	maxReply = 4 << 10
	// koradPause is the gap a Korad supply needs between commands: it
	// takes a pause in the stream for the end of one.
	koradPause = 80 * time.Millisecond
	// koradQuiet ends a Korad reply that has not reached its expected
	// length: once a reply has started, its bytes follow at line speed.
	koradQuiet = 30 * time.Millisecond
	// maxErrors bounds how many entries of the error queue a call reads.
	maxErrors = 10
)

// transport is what the driver needs of its byte stream: a TCP
// connection, or a serial port made to behave like one.
type transport interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

var _ transport = (*serialconn.Conn)(nil)

// link is an open connection to the instrument.
type link struct {
	t   transport
	buf []byte // read and not yet taken
	new bool   // no call has used it yet
}

// ioError is a transport failure under a command.
type ioError struct {
	cmd      string
	err      error
	ctxBound bool // the caller's deadline, not the timeout, bounded it
}

func (e *ioError) Error() string { return e.cmd + ": " + e.err.Error() }
func (e *ioError) Unwrap() error { return e.err }

// do runs f on a connection, holding the supply for the whole call. An
// I/O failure drops the connection; the first one, unless it is a
// timeout, makes f run again on a new connection.
func (s *Supply) do(ctx context.Context, f func(x *exchange) error) error {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return s.ioErr(ctx, &ioError{cmd: "waiting for the call before", err: ctx.Err(), ctxBound: true})
	}
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return s.ioErr(ctx, &ioError{cmd: "connect", err: err, ctxBound: true})
		}
		if s.link == nil {
			l, err := s.connect(ctx)
			if err != nil {
				return s.ioErr(ctx, err)
			}
			s.link = l
		}
		x := &exchange{s: s, ctx: ctx, l: s.link}
		stop := probeutil.AbortOnDone(ctx, s.link.t)
		err := x.run(f)
		if !stop() {
			// The abort may still be moving the deadline: the link
			// cannot be trusted with the next call.
			s.drop()
		}
		var ie *ioError
		switch {
		case err == nil:
			if x.close {
				return s.drop()
			}
			return nil
		case errors.As(err, &ie):
			s.drop()
			if attempt == 0 && ctx.Err() == nil && !probeutil.IsTimeout(ie.err) {
				continue
			}
			return s.ioErr(ctx, ie)
		default:
			if x.close || x.desync {
				s.drop()
			}
			return err
		}
	}
}

// ioErr words a transport failure: a deadline is power.ErrTimeout, the
// caller's cancel is its own, anything else power.ErrDriver.
func (s *Supply) ioErr(ctx context.Context, e *ioError) error {
	// Once ctx has ended, every blocked read or write fails (AbortOnDone):
	// the failure is the caller's.
	cerr := ctx.Err()
	switch {
	case errors.Is(cerr, context.Canceled) || errors.Is(e.err, context.Canceled):
		return fmt.Errorf("%s: %s: %w", s, e.cmd, context.Canceled)
	case cerr != nil || errors.Is(e.err, context.DeadlineExceeded) || (e.ctxBound && probeutil.IsTimeout(e.err)):
		return fmt.Errorf("%s: %s: %w: the caller's deadline passed: %w", s, e.cmd, power.ErrTimeout, context.DeadlineExceeded)
	case probeutil.IsTimeout(e.err):
		return fmt.Errorf("%s: %s: %w: no answer within %v", s, e.cmd, power.ErrTimeout, s.cfg.Timeout)
	}
	return fmt.Errorf("%s: %s: %w: %w", s, e.cmd, power.ErrDriver, e.err)
}

// connect dials the supply or opens its serial port.
func (s *Supply) connect(ctx context.Context) (*link, *ioError) {
	if s.cfg.Port != "" {
		p, err := serialconn.Open(s.cfg.Port, &serial.Mode{BaudRate: s.cfg.Baud, DataBits: 8, Parity: parity(s.cfg.Parity), StopBits: serial.OneStopBit})
		if err != nil {
			return nil, &ioError{cmd: "open", err: err}
		}
		return &link{t: p, new: true}, nil
	}
	dl := time.Now().Add(s.cfg.Timeout)
	ctxBound := false
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl, ctxBound = d, true
	}
	dctx, cancel := context.WithDeadline(ctx, dl)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", s.addr)
	if err != nil {
		var ne net.Error
		if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("%w (%w)", errTimeout, err)
		}
		return nil, &ioError{cmd: "connect", err: err, ctxBound: ctxBound}
	}
	return &link{t: c.(*net.TCPConn), new: true}, nil
}

// errTimeout is a timeout of the driver's own, a net.Error as the
// connection's are.
var errTimeout net.Error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timed out" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func parity(p string) serial.Parity {
	switch p {
	case ParityEven:
		return serial.EvenParity
	case ParityOdd:
		return serial.OddParity
	}
	return serial.NoParity
}

// drop closes the connection, if any.
func (s *Supply) drop() error {
	if s.link == nil {
		return nil
	}
	err := s.link.t.Close()
	s.link = nil
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%s: close: %w: %w", s, power.ErrDriver, err)
	}
	return nil
}

// exchange is one call's commands on a link.
type exchange struct {
	s   *Supply
	ctx context.Context
	l   *link
	// close asks do to close the link after the call.
	close bool
	// desync: a reply made no sense, so the stream may be out of step.
	desync bool
}

// run starts the call (stale input discarded, the error queue cleared
// on a new connection, the channel selected) and runs f.
func (x *exchange) run(f func(x *exchange) error) error {
	if _, err := x.arm("connect"); err != nil {
		return err
	}
	if err := x.fresh(); err != nil {
		return &ioError{cmd: "connect", err: err}
	}
	if x.l.new {
		x.l.new = false
		if x.s.cfg.CheckErrors {
			if err := x.send("*CLS"); err != nil {
				return err
			}
		}
	}
	if x.s.cfg.Channel > 0 && x.s.cfg.Dialect == DialectSCPI {
		if err := x.send(fmt.Sprintf("INST:NSEL %d", x.s.cfg.Channel)); err != nil {
			return err
		}
	}
	return f(x)
}

// arm sets the deadline of the next command.
func (x *exchange) arm(cmd string) (ctxBound bool, err error) {
	ctxBound, err = probeutil.Arm(x.ctx, x.l.t, x.s.cfg.Timeout)
	if err != nil {
		return ctxBound, &ioError{cmd: cmd, err: err, ctxBound: true}
	}
	return ctxBound, nil
}

// fresh discards what the instrument sent outside a reply, and finds a
// connection the instrument has closed before anything is written to
// it: a write to it could succeed and the command be lost.
func (x *exchange) fresh() error {
	x.l.buf = x.l.buf[:0]
	switch t := x.l.t.(type) {
	case *net.TCPConn:
		return drainTCP(t)
	case *serialconn.Conn:
		return t.ResetInput()
	}
	return nil
}

// pause waits, for a Korad supply, until koradPause has passed since the
// last command or reply.
func (x *exchange) pause(cmd string) error {
	if x.s.cfg.Dialect != DialectKorad {
		return nil
	}
	wait := time.Until(x.s.last.Add(koradPause))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-x.ctx.Done():
		return &ioError{cmd: cmd, err: x.ctx.Err(), ctxBound: true}
	}
}

// send writes a command.
func (x *exchange) send(cmd string) error {
	if err := x.pause(cmd); err != nil {
		return err
	}
	ctxBound, err := x.arm(cmd)
	if err != nil {
		return err
	}
	b := []byte(cmd + x.s.lineEnd)
	_, err = x.l.t.Write(b)
	x.s.last = time.Now()
	if x.s.cfg.Port != "" {
		// The write ends when the bytes are in the port's buffer; the
		// line takes 10 bits a byte (8N1) to carry them.
		x.s.last = x.s.last.Add(time.Duration(len(b)) * 10 * time.Second / time.Duration(x.s.cfg.Baud))
	}
	if err != nil {
		return &ioError{cmd: cmd, err: err, ctxBound: ctxBound}
	}
	return nil
}

// query writes a command and reads its reply: a line for scpi; for
// korad, want bytes or what came before the line went quiet (want 0:
// the latter).
func (x *exchange) query(cmd string, want int) (string, error) {
	if err := x.send(cmd); err != nil {
		return "", err
	}
	ctxBound, err := x.arm(cmd)
	if err != nil {
		return "", err
	}
	var r string
	if x.s.cfg.Dialect == DialectKorad {
		r, err = x.readQuiet(want)
	} else {
		r, err = x.readLine()
	}
	x.s.last = time.Now()
	if errors.Is(err, errLong) {
		x.desync = true
		return "", fmt.Errorf("%s: %s: %w: %w", x.s, cmd, power.ErrDriver, err)
	}
	if err != nil {
		return "", &ioError{cmd: cmd, err: err, ctxBound: ctxBound}
	}
	return r, nil
}

var errLong = fmt.Errorf("reply longer than %d bytes", maxReply)

// parsed applies parse to a reply; a reply it refuses is an error naming
// the command and the reply.
func parsed[T any](x *exchange, cmd, reply string, parse func(string) (T, error)) (T, error) {
	v, err := parse(reply)
	if err != nil {
		x.desync = true
		return v, fmt.Errorf("%s: %s: reply %s %v: %w", x.s, cmd, quote(reply), err, power.ErrDriver)
	}
	return v, nil
}

// number queries a number.
func (x *exchange) number(cmd string, want int) (float64, error) {
	r, err := x.query(cmd, want)
	if err != nil {
		return 0, err
	}
	return parsed(x, cmd, r, ParseNumber)
}

// set sends setting commands, then waits for the instrument to have
// carried them out: with check_errors by reading its error queue, else
// (scpi) with *OPC?. A Korad supply has no way to tell.
func (x *exchange) set(cmds ...string) error {
	for _, c := range cmds {
		if err := x.send(c); err != nil {
			return err
		}
	}
	if !x.s.cfg.CheckErrors {
		if x.s.cfg.Dialect != DialectSCPI {
			return nil
		}
		// *OPC? is answered once the commands before it are carried
		// out: the call returns when they have been.
		r, err := x.query("*OPC?", 0)
		if err != nil {
			return err
		}
		_, err = parsed(x, "*OPC?", r, func(r string) (bool, error) {
			if t := strings.TrimSpace(r); t != "1" && t != "+1" {
				return false, errors.New("is not 1")
			}
			return true, nil
		})
		return err
	}
	var errs []string
	for range maxErrors {
		r, err := x.query("SYST:ERR?", 0)
		if err != nil {
			return err
		}
		code, err := parsed(x, "SYST:ERR?", r, func(r string) (int, error) {
			code, _, err := ParseError(r)
			return code, err
		})
		if err != nil {
			return err
		}
		if code == 0 {
			break
		}
		errs = append(errs, strings.TrimSpace(r))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s: the instrument reports %s: %w", x.s, strings.Join(cmds, "; "), strings.Join(errs, "; "), power.ErrDriver)
	}
	return nil
}

// fill reads what the transport has into the buffer.
func (l *link) fill() error {
	if cap(l.buf)-len(l.buf) < 256 {
		nb := make([]byte, len(l.buf), 2*cap(l.buf)+512)
		copy(nb, l.buf)
		l.buf = nb
	}
	n, err := l.t.Read(l.buf[len(l.buf):cap(l.buf)])
	l.buf = l.buf[:len(l.buf)+n]
	if n > 0 {
		return nil
	}
	if err == nil {
		return nil
	}
	return err
}

// readLine returns the next line that is not empty; a line ends at CR or
// LF.
func (x *exchange) readLine() (string, error) {
	l := x.l
	for {
		i := 0
		for i < len(l.buf) && (l.buf[i] == '\r' || l.buf[i] == '\n') {
			i++
		}
		if i > 0 {
			l.buf = append(l.buf[:0], l.buf[i:]...)
		}
		if j := bytes.IndexAny(l.buf, "\r\n"); j >= 0 {
			if j > maxReply {
				return "", errLong
			}
			line := string(l.buf[:j])
			l.buf = append(l.buf[:0], l.buf[j+1:]...)
			return line, nil
		}
		if len(l.buf) > maxReply {
			return "", errLong
		}
		if err := l.fill(); err != nil {
			return "", err
		}
	}
}

// readQuiet reads a Korad reply: want bytes, or (want 0, or fewer came)
// what arrived before the line went quiet for koradQuiet.
func (x *exchange) readQuiet(want int) (string, error) {
	l := x.l
	for want == 0 || len(l.buf) < want {
		if len(l.buf) > maxReply {
			return "", errLong
		}
		if len(l.buf) > 0 {
			if _, err := probeutil.Arm(x.ctx, l.t, min(koradQuiet, x.s.cfg.Timeout)); err != nil {
				return "", err
			}
		}
		if err := l.fill(); err != nil {
			if len(l.buf) > 0 && probeutil.IsTimeout(err) && x.ctx.Err() == nil {
				break
			}
			return "", err
		}
	}
	r := string(l.buf)
	l.buf = l.buf[:0]
	return r, nil
}
