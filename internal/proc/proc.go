// Package proc runs a program for a driver that shells out (the exec power
// switch, the probe-rs and pyOCD probes): argv passed literally, no shell,
// bounded by a timeout and the caller's ctx, in a process group of its own
// that is killed as a whole, so that what a script or tool started dies
// with it. Tail keeps the end of its output for errors and logs.
//
// It is a leaf: it imports nothing of fudbench.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strings"
	"time"
)

// waitDelay bounds how long a finished or killed command's output pipes
// may be held open by a process that escaped its group.
const waitDelay = 500 * time.Millisecond

// Options configures one Run.
type Options struct {
	// Timeout bounds the run; a caller's earlier deadline wins. It must be
	// positive.
	Timeout time.Duration
	// Env is the command's environment; nil is the bench's own.
	Env []string
	// Stdout and Stderr receive its output; nil discards it.
	Stdout, Stderr io.Writer
}

// KilledError is the error of a command whose group was killed because
// its timeout passed or the caller's ctx ended.
type KilledError struct {
	// Err says why: context.DeadlineExceeded or context.Canceled.
	Err error
	// Timeout: the run's own timeout passed while the caller's ctx was
	// still live.
	Timeout bool
}

func (e *KilledError) Error() string { return fmt.Sprintf("killed: %v", e.Err) }

// Unwrap makes errors.Is find the ctx error.
func (e *KilledError) Unwrap() error { return e.Err }

// Run runs argv[0] with argv[1:] and waits for it. It returns how long the
// command ran and:
//   - nil when it exited with status 0, even if a process it left behind
//     held its output open: the command's own result stands;
//   - an *exec.ExitError whose Exited is true when it ended by itself with
//     another status, whatever the clock says by then;
//   - a *KilledError when its group was killed for the timeout or ctx;
//   - otherwise the error of starting or waiting for it (exec.ErrNotFound,
//     a signal from elsewhere).
func Run(ctx context.Context, argv []string, o Options) (time.Duration, error) {
	if len(argv) == 0 {
		return 0, errors.New("proc: empty command line")
	}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Env = o.Env
	cmd.Stdout = o.Stdout
	cmd.Stderr = o.Stderr
	cmd.WaitDelay = waitDelay
	setGroup(cmd)
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var exit *exec.ExitError
	switch {
	case err == nil || errors.Is(err, exec.ErrWaitDelay):
		return took, nil
	case errors.As(err, &exit) && exit.Exited():
		return took, err
	case cctx.Err() != nil:
		return took, &KilledError{Err: cctx.Err(), Timeout: ctx.Err() == nil}
	}
	return took, err
}

// Tail keeps the last Max bytes written to it. It is not safe for
// concurrent writes.
type Tail struct {
	Max int
	buf []byte
}

// Write adds p, dropping what falls out of the last Max bytes; it never
// fails.
func (t *Tail) Write(p []byte) (int, error) {
	if len(p) >= t.Max {
		t.buf = append(t.buf[:0], p[len(p)-t.Max:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns what is kept.
func (t *Tail) String() string { return string(t.buf) }

// Quoted formats the last n non-blank lines kept, trimmed and joined by
// newlines, as a quoted string after prefix, for an error message; it
// returns "" when there are none.
func (t *Tail) Quoted(prefix string, n int) string {
	if l := t.lastLines(n); l != "" {
		return fmt.Sprintf("%s%q", prefix, l)
	}
	return ""
}

// lastLines reads the kept bytes from their end, so that a buffer of
// thousands of short lines costs n strings, not one a line.
func (t *Tail) lastLines(n int) string {
	var lines []string
	for rest := t.buf; len(rest) > 0 && len(lines) < n; {
		i := bytes.LastIndexByte(rest, '\n')
		seg := rest[i+1:]
		rest = rest[:max(i, 0)]
		if s := bytes.TrimSpace(seg); len(s) > 0 {
			lines = append(lines, string(s))
		}
	}
	slices.Reverse(lines)
	return strings.Join(lines, "\n")
}
