package bench

// This file is what the bench does with a supply that measures and sets
// its output (power.Meter, power.Supply): readings on the timeline during
// an update, the energy an update and a recovery took, and the brownout
// cut.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// DefaultSample is how often the bench reads a measuring supply during an
// update when the job does not say.
const DefaultSample = 50 * time.Millisecond

// Brownout is a cut that drops the supply's voltage to To for For and
// brings it back to its nominal level, instead of switching it off: the
// way a battery under load or a sagging supply fails. Below its brownout
// threshold a device resets; above it, it runs on, and flash written
// meanwhile may hold wrong bits.
type Brownout struct {
	To  float64 // volts
	For time.Duration
}

// String is "brownout to 1.7V for 20ms".
func (b Brownout) String() string {
	return fmt.Sprintf("brownout to %s for %v", config.FormatQuantity(b.To, "V"), b.For)
}

// Supply is the board's power switch as a settable supply, nil when its
// driver cannot set a voltage.
func (b *Board) Supply() power.Supply {
	s, _ := b.Power.(power.Supply)
	return s
}

// Meter is the board's power switch as a meter, nil when its driver
// cannot measure.
func (b *Board) Meter() power.Meter {
	m, _ := b.Power.(power.Meter)
	return m
}

// brownout drops the supply to bo.To, holds it for bo.For and restores
// the nominal voltage. The returned events carry the instants the drop and
// the restore calls returned. The restore is attempted whatever happens to
// the drop, with its own deadline: a board must not be left at a brownout
// level.
func (b *Board) brownout(ctx context.Context, bo Brownout) (drop, restore results.Event, err error) {
	sup := b.Supply()
	if sup == nil {
		return drop, restore, fmt.Errorf("board %s: a brownout cut needs a supply that sets its voltage; %s cannot: %w", b.Name, b.Power, ErrPower)
	}
	b.touch()
	level := func(v float64) func(context.Context) error {
		return func(ctx context.Context) error { return sup.SetVoltage(ctx, v) }
	}
	if err = b.powerCall(ctx, 0, level(bo.To)); err != nil {
		e := b.Event(results.PowerError)
		e.Text = err.Error()
		b.Emit(e)
		err = fmt.Errorf("board %s: brownout to %s (%s): %w: %w", b.Name, config.FormatQuantity(bo.To, "V"), b.Power, ErrPower, err)
	} else {
		drop = b.Event(results.Brownout)
		drop.Text = bo.String()
		drop.Attrs = map[string]string{"volts": strconv.FormatFloat(bo.To, 'f', -1, 64)}
		b.Emit(drop)
		t := time.NewTimer(bo.For)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	nominal := sup.Nominal()
	rerr := b.powerCall(context.Background(), 0, level(nominal))
	if rerr != nil {
		e := b.Event(results.PowerError)
		e.Text = rerr.Error()
		b.Emit(e)
		return drop, restore, errors.Join(err, fmt.Errorf("board %s: restoring %s after a brownout (%s): %w: %w", b.Name, config.FormatQuantity(nominal, "V"), b.Power, ErrPower, rerr))
	}
	restore = b.Event(results.PowerOn)
	restore.Text = "restored " + config.FormatQuantity(nominal, "V") + " after the brownout"
	b.Emit(restore)
	return drop, restore, err
}

// sampler reads the board's meter every interval while an update runs,
// puts each reading on the timeline and adds up the energy: the whole
// update's, and the part spent while the board recovered from a cut.
type sampler struct {
	b     *Board
	m     power.Meter
	every time.Duration
	stop  context.CancelFunc
	done  chan struct{}

	mu       sync.Mutex
	energy   results.Energy
	last     time.Time
	failures int
	// recFrom and recTo bound the recovery after a cut: from the cut to
	// the transfer resuming or the new image running (recTo zero: still
	// recovering; recFrom zero: no cut yet).
	recFrom, recTo time.Time
}

// cut marks the start of a recovery at the cut's instant.
func (s *sampler) cut(at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.recFrom, s.recTo = at, time.Time{}
	s.mu.Unlock()
}

// recovered marks its end, once.
func (s *sampler) recovered(at time.Time) {
	if s == nil {
		return
	}
	s.mu.Lock()
	if !s.recFrom.IsZero() && s.recTo.IsZero() {
		s.recTo = at
	}
	s.mu.Unlock()
}

// recoveryShare is the part of [from, to] inside the recovery window.
// s.mu held.
func (s *sampler) recoveryShare(from, to time.Time) float64 {
	if s.recFrom.IsZero() || !to.After(from) {
		return 0
	}
	lo, hi := from, to
	if s.recFrom.After(lo) {
		lo = s.recFrom
	}
	if !s.recTo.IsZero() && s.recTo.Before(hi) {
		hi = s.recTo
	}
	if !hi.After(lo) {
		return 0
	}
	return float64(hi.Sub(lo)) / float64(to.Sub(from))
}

// startSampler starts sampling when the board's supply measures and every
// is positive; it returns nil otherwise.
func (b *Board) startSampler(ctx context.Context, every time.Duration) *sampler {
	m := b.Meter()
	if m == nil || every <= 0 {
		return nil
	}
	ctx, stop := context.WithCancel(ctx)
	s := &sampler{b: b, m: m, every: every, stop: stop, done: make(chan struct{}), last: time.Now()}
	s.energy.Every = every
	go s.loop(ctx)
	return s
}

func (s *sampler) loop(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sample(ctx)
	}
}

// sample takes one reading. A reading is bounded by the sampling interval
// (at least 100 ms): a supply that stops answering costs readings, never
// the update.
func (s *sampler) sample(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, max(s.every, 100*time.Millisecond))
	r, err := s.m.Measure(rctx)
	cancel()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			s.failures++
			if s.failures == 1 || s.failures%100 == 0 {
				e := s.b.Event(results.Note)
				e.Text = fmt.Sprintf("supply reading failed (%d so far): %v", s.failures, err)
				s.b.Emit(e)
			}
		}
		return
	}
	j := r.Volts * r.Amps * now.Sub(s.last).Seconds()
	s.energy.Recovery += j * s.recoveryShare(s.last, now)
	s.last = now
	s.energy.Joules += j
	s.energy.Samples++
	s.energy.PeakAmps = max(s.energy.PeakAmps, r.Amps)
	e := s.b.Event(results.PowerReading)
	e.Attrs = map[string]string{
		"volts": strconv.FormatFloat(r.Volts, 'g', 6, 64),
		"amps":  strconv.FormatFloat(r.Amps, 'g', 6, 64),
	}
	s.b.Emit(e)
}

// finish stops sampling and returns what was measured (nil when s is).
func (s *sampler) finish() *results.Energy {
	if s == nil {
		return nil
	}
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.energy.Samples == 0 {
		return nil
	}
	e := s.energy
	return &e
}

// brownoutResetWait bounds how long the bench looks for a boot banner on
// the console after a brownout, when the device keeps no record of its
// power losses.
const brownoutResetWait = 500 * time.Millisecond

// brownoutWatch tells whether a brownout reset the device: by the
// device's own record of its power losses (a simulated board), else by a
// boot banner on its console after the drop; a device with neither is
// taken to have run on, and a reset shows as the transfer's errors.
type brownoutWatch struct {
	s     *session
	lines <-chan results.Event
	stopW func()
}

// watchReset starts watching before the supply drops.
func (s *session) watchReset() *brownoutWatch {
	w := &brownoutWatch{s: s}
	if s.b.Witness == nil && s.b.Console != nil && s.b.Patterns.Boot != nil {
		name := s.b.Name
		w.lines, w.stopW = s.b.hub.Watch(func(e *results.Event) bool { return e.Kind == results.ConsoleLine && e.Board == name })
	}
	return w
}

// decide reports whether the device reset during the brownout bo.
func (w *brownoutWatch) decide(bo Brownout) bool {
	s := w.s
	if s.b.Witness != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rec, ok, err := s.b.Witness.LastCut(ctx)
		return err == nil && ok && rec.Seq > s.witnessed
	}
	if w.lines == nil {
		return false
	}
	t := time.NewTimer(max(bo.For, brownoutResetWait))
	defer t.Stop()
	for {
		select {
		case e := <-w.lines:
			if s.b.Patterns.Boot.MatchString(e.Text) {
				return true
			}
		case <-t.C:
			return false
		}
	}
}

func (w *brownoutWatch) stop() {
	if w.stopW != nil {
		w.stopW()
	}
}
