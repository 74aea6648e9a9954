// Package probeutil holds what the probe drivers share beyond the probes
// contract: the timeout setting, the read-back comparison of a verify, and
// the deadline and hang-up rules of a driver that talks to its server over
// a connection (gdbrsp, openocd).
//
// It is a leaf: it imports nothing of fudbench, so its errors are plain;
// drivers wrap them with their name and the probes sentinels.
package probeutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// ParseTimeout parses a driver's "timeout" setting: "" is 0, which leaves
// the driver's default; anything else must be a positive duration such as
// "10s".
func ParseTimeout(s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("timeout: %w", err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("timeout: %q must be positive", s)
	}
	return d, nil
}

// Timeout checks the timeout of a driver's Config: 0 is def, a negative
// one is an error.
func Timeout(d, def time.Duration) (time.Duration, error) {
	switch {
	case d == 0:
		return def, nil
	case d < 0:
		return 0, fmt.Errorf("timeout: %v is negative", d)
	}
	return d, nil
}

// Mismatch returns the offset of the first byte where got, what the target
// holds, differs from the image, or -1 when they agree over the length of
// got. image must be at least as long as got.
func Mismatch(got, image []byte) int {
	for i := range got {
		if got[i] != image[i] {
			return i
		}
	}
	return -1
}

// Deadliner is what Arm and AbortOnDone need of a connection: a net.Conn,
// or a serial port made to behave like one.
type Deadliner interface {
	SetDeadline(t time.Time) error
}

// Arm sets the deadline of the next command on c: timeout from now, or
// ctx's deadline if that is earlier, in which case ctxBound is true and a
// timeout is the ctx's even if its timer has not fired yet. It checks ctx
// after setting the deadline, so that a cancel that came before it (and
// whose abort the new deadline overwrote) is not lost.
func Arm(ctx context.Context, c Deadliner, timeout time.Duration) (ctxBound bool, err error) {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d, ctxBound = cd, true
	}
	if err := c.SetDeadline(d); err != nil {
		return ctxBound, err
	}
	return ctxBound, ctx.Err()
}

// AbortOnDone makes I/O blocked on c return as soon as ctx ends, by moving
// its deadline into the past. stop ends the watch; call it when the
// operation is over.
func AbortOnDone(ctx context.Context, c Deadliner) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// IsTimeout reports whether err is a connection's deadline passing.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Hungup reports whether err means that the connection is gone: the peer
// closed or reset it, or it was closed under the operation.
func Hungup(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}
