// Package powertest holds a fake power.Switch for tests of code that
// switches power: it records every call with its time, and can be made to
// fail or to take time.
package powertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fudbench/fudbench/power"
)

var (
	_ power.Switch      = (*Switch)(nil)
	_ power.StateReader = (*Switch)(nil)
	_ power.Switch      = (*Halting)(nil)
	_ power.Halter      = (*Halting)(nil)
)

// Call is one recorded call.
type Call struct {
	Op  string    // "on", "off", "state" or "halt"
	At  time.Time // when the call started, by Switch.Now
	Err error     // what the call returned
}

// Switch is a fake power.Switch and power.StateReader. Its zero value is
// a working switch that starts off. Set the knobs before sharing it
// between goroutines; read results through its methods.
type Switch struct {
	// Name is what String returns after "fake:"; "" gives "fake".
	Name string
	// OnErr, OffErr and StateErr are returned by the matching call. A
	// failing On or Off leaves the state unchanged.
	OnErr, OffErr, StateErr error
	// Delay is how long each call takes. A ctx ending first makes the
	// call return an error wrapping power.ErrTimeout (deadline) or the
	// ctx's error (cancel), with the state unchanged.
	Delay time.Duration
	// Now is the clock calls are stamped with; nil is time.Now.
	Now func() time.Time

	mu    sync.Mutex
	on    bool
	calls []Call
}

// String names the fake.
func (s *Switch) String() string {
	if s.Name == "" {
		return "fake"
	}
	return "fake:" + s.Name
}

// On switches the fake on.
func (s *Switch) On(ctx context.Context) error { return s.set(ctx, "on", true, s.OnErr) }

// Off switches the fake off.
func (s *Switch) Off(ctx context.Context) error { return s.set(ctx, "off", false, s.OffErr) }

// State reports the fake's state.
func (s *Switch) State(ctx context.Context) (bool, error) {
	at := s.now()
	err := s.wait(ctx, "state")
	if err == nil {
		err = s.StateErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, Call{Op: "state", At: at, Err: err})
	if err != nil {
		return false, err
	}
	return s.on, nil
}

// IsOn reports the fake's state without recording a call.
func (s *Switch) IsOn() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.on
}

// SetOn sets the fake's state without recording a call, as if someone
// had flipped the switch by hand.
func (s *Switch) SetOn(on bool) {
	s.mu.Lock()
	s.on = on
	s.mu.Unlock()
}

// Calls returns the calls recorded so far.
func (s *Switch) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Ops returns the Op of each call recorded so far, for short assertions.
func (s *Switch) Ops() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ops := make([]string, len(s.calls))
	for i, c := range s.calls {
		ops[i] = c.Op
	}
	return ops
}

// Reset forgets the recorded calls.
func (s *Switch) Reset() {
	s.mu.Lock()
	s.calls = nil
	s.mu.Unlock()
}

func (s *Switch) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Switch) wait(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return s.ctxErr(op, err)
	}
	if s.Delay <= 0 {
		return nil
	}
	t := time.NewTimer(s.Delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return s.ctxErr(op, ctx.Err())
	}
}

func (s *Switch) ctxErr(op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %w", s, op, power.ErrTimeout, err)
	}
	return fmt.Errorf("%s: %s: %w", s, op, err)
}

func (s *Switch) set(ctx context.Context, op string, on bool, inject error) error {
	at := s.now()
	err := s.wait(ctx, op)
	if err == nil {
		err = inject
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, Call{Op: op, At: at, Err: err})
	if err == nil {
		s.on = on
	}
	return err
}

// Halting is a fake that is also a power.Halter: Halt records "halt" and
// leaves the fake in its exit state (off unless ExitOn).
type Halting struct {
	Switch
	// ExitOn makes Halt leave the supply on.
	ExitOn bool
	// HaltErr is returned by Halt, which then leaves the state unchanged.
	HaltErr error
}

// Halt goes to the exit state.
func (h *Halting) Halt(ctx context.Context) error {
	return h.set(ctx, "halt", h.ExitOn, h.HaltErr)
}
