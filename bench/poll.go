package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/coap"
)

// maxPollWait caps the backed-off bound of one poll attempt.
const maxPollWait = time.Second

// pollPause separates attempts that were answered (an error answer, a
// state not reached yet), so a device that answers at once is not
// flooded.
const pollPause = 5 * time.Millisecond

// poller asks a device the same question until the answer is the one
// wanted or a deadline passes. It is the one place that knows how to
// wait for a device that is booting or recovering:
//
//   - each attempt is bounded by the endpoint's poll interval, doubled
//     after each attempt that got no answer, up to a second, and reset by
//     the first answer: a request sent while the device boots is lost,
//     and a device (or host) too busy to answer in time gets a longer
//     bound rather than a flood of requests;
//   - a transport failure redials: after a power cycle the old socket (a
//     DTLS session) may be dead;
//   - answered attempts are separated by a short pause.
type poller struct {
	b     *Board
	c     *fwclient.Client
	wait  time.Duration
	heard bool // something came from the device on a client since replaced
}

// Heard reports whether anything at all ever came back from the device,
// even garbage: a device that is there but misbehaves is not unreachable.
func (p *poller) Heard() bool { return p.heard || (p.c != nil && p.c.Heard()) }

// poll returns a poller for b that starts from client c (nil: dial on
// first use). The poller owns the client from then on; Close releases it.
func (b *Board) poll(c *fwclient.Client) *poller { return &poller{b: b, c: c} }

// Client is the poller's current client (dialled if needed).
func (p *poller) Client(ctx context.Context) (*fwclient.Client, error) {
	if p.c != nil {
		return p.c, nil
	}
	c, err := p.b.Dial(ctx)
	if err != nil {
		return nil, err
	}
	p.c = c
	return c, nil
}

// Close releases the client.
func (p *poller) Close() {
	if p.c != nil {
		p.c.Close()
		p.c = nil
	}
}

// ask runs one attempt of f with a bounded context. An error that is not
// a device's answer replaces the client with a fresh one.
func (p *poller) ask(ctx context.Context, f func(context.Context, *fwclient.Client) error) error {
	base := p.b.Endpoint.poll()
	p.wait = max(p.wait, base)
	c, err := p.Client(ctx)
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, p.wait)
	err = f(actx, c)
	cancel()
	if err == nil || answered(err) || isStop(err) || errors.Is(err, errNotYet) {
		p.wait = base
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		p.wait = min(2*p.wait, maxPollWait)
	}
	if nc, derr := p.b.Dial(ctx); derr == nil {
		p.heard = p.Heard()
		p.c.Close()
		p.c = nc
	}
	return err
}

// answered reports whether err came with an answer from the device (a
// CoAP error code, or an answer that is not the one wanted yet), as
// opposed to no answer at all.
func answered(err error) bool {
	var se *coap.StatusError
	var pe errPending
	return errors.As(err, &se) || errors.As(err, &pe) || errors.Is(err, fwclient.ErrBadAnswer)
}

// errStop ends until early with the error it wraps.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// stop makes a step's error final: until returns it at once.
func stop(err error) error { return errStop{err} }

func isStop(err error) bool {
	var st errStop
	return errors.As(err, &st)
}

// errPending is a step's "the device answered, but not yet as wanted".
type errPending struct{ err error }

func (e errPending) Error() string { return e.err.Error() }
func (e errPending) Unwrap() error { return e.err }

// pending marks an answered attempt that should be repeated.
func pending(err error) error { return errPending{err} }

// until repeats step until it returns nil (done), a stop(err), the
// timeout passes or ctx ends. A step error that is not final is the
// reason given when the time runs out.
func (p *poller) until(ctx context.Context, timeout time.Duration, what string, step func(context.Context, *fwclient.Client) error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := p.ask(ctx, step)
		if err == nil {
			return nil
		}
		var st errStop
		if errors.As(err, &st) {
			return st.err
		}
		if errors.Is(err, coap.ErrRefused) {
			// The device refuses the DTLS identity or key: asking again
			// changes nothing.
			return fmt.Errorf("board %s: %w", p.b.Name, err)
		}
		last = err
		if !time.Now().Before(deadline) {
			break
		}
		if answered(err) || !errors.Is(err, context.DeadlineExceeded) {
			select {
			case <-time.After(pollPause):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	if last == nil {
		return fmt.Errorf("board %s: %s: no answer within %v", p.b.Name, what, timeout)
	}
	return fmt.Errorf("board %s: %s within %v: %w", p.b.Name, what, timeout, last)
}
