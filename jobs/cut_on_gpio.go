package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/inputs"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// on_gpio: {input: NAME, edge: rising|falling|both, nth: N | {from, to, step}, delay: D | {…}}
//
// Power goes delay after the nth edge (from 1) of one of the board's
// trigger inputs, such as a line wired to the device's flash-busy signal:
// the most precise cut a bench can make, timed to the device's own flash
// activity. The input is wiring: the bench file declares it for the board
// (inputs: {busy: {driver: gpio, pin: GPIO27}}) and it is opened when the
// board is bound, before anything is powered.
func init() {
	registerCut(&cutKind{
		name: "on_gpio",
		decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
			fs, err := d.Fields(f.Val, w, "input", "pin", "edge", "nth", "delay")
			if err != nil {
				return nil, err
			}
			if pf, ok := fs["pin"]; ok {
				return nil, d.Errf(pf.Key, "%s.pin: a pin is wiring: declare it as a trigger input of the board in the bench file (inputs: {busy: {driver: gpio, pin: …}}) and name it here (input: busy)", w)
			}
			inf, ok := fs["input"]
			if !ok {
				return nil, d.Errf(f.Key, "%s: input is required (the name of one of the board's trigger inputs in the bench file, e.g. busy)", w)
			}
			s := onGPIOSpec{edge: inputs.Rising, at: config.PosOf(inf.Val)}
			if s.input, err = d.Str(inf.Val, w+".input"); err != nil {
				return nil, err
			}
			if !boards.NameOK(s.input) {
				return nil, d.Errf(inf.Val, "%s.input %q: want an input name such as busy", w, s.input)
			}
			if ef, ok := fs["edge"]; ok {
				e, err := d.Str(ef.Val, w+".edge")
				if err != nil {
					return nil, err
				}
				if s.edge, err = inputs.ParseEdge(e); err != nil {
					return nil, d.Errf(ef.Val, "%s.edge %q: want rising, falling or both", w, e)
				}
			}
			s.nth = IntRange{From: 1, To: 1, Step: 1}
			if nf, ok := fs["nth"]; ok {
				if s.nth, err = intRange(d, nf.Val, w+".nth", false, 1); err != nil {
					return nil, err
				}
			}
			if df, ok := fs["delay"]; ok {
				s.delay, err = durRange(d, df.Val, w+".delay", MaxDelay, false)
			}
			return s, err
		},
	})
}

type onGPIOSpec struct {
	input string
	edge  inputs.Edge
	nth   IntRange
	delay DurRange
	at    config.Pos
}

func (s onGPIOSpec) count(*Job, uint32, string) (int64, error) {
	return s.nth.count(s.nth.From, s.nth.To) * int64(len(s.delay.values())), nil
}

func (s onGPIOSpec) expand(_ *Job, _ uint32, _ string, _ *rand.Rand, add func(bench.Cut)) error {
	for n := s.nth.From; n <= s.nth.To; n += max(s.nth.Step, 1) {
		for _, dl := range s.delay.values() {
			add(onGPIO{input: s.input, edge: s.edge, nth: int(n), delay: dl})
		}
	}
	return nil
}

func (s onGPIOSpec) check(j *Job, bd *boards.Board, what string) error {
	if bd.Input(s.input) == nil {
		have := "none"
		if names := bd.InputNames(); len(names) > 0 {
			have = fmt.Sprint(names)
		}
		return j.errAt(s.at, "%s: board %s has no trigger input %q in %s (its inputs: %s)", what, bd.Name, s.input, bd.File, have)
	}
	return nil
}

// OnGPIO is the cut delay after the nth edge (from 1) of the board's
// trigger input called input.
func OnGPIO(input string, edge inputs.Edge, nth int, delay time.Duration) bench.Cut {
	return onGPIO{input: input, edge: edge, nth: nth, delay: delay}
}

type onGPIO struct {
	input string
	edge  inputs.Edge
	nth   int
	delay time.Duration
}

func (c onGPIO) String() string {
	s := fmt.Sprintf("on_gpio %s %s edge %d", c.input, c.edge, c.nth)
	if c.delay > 0 {
		s += fmt.Sprintf(" +%v", c.delay)
	}
	return s
}

func (c onGPIO) Block() int64 { return -1 }

func (c onGPIO) Trigger(b *bench.Board) (bench.Trigger, error) {
	in, ok := b.Inputs[c.input]
	if !ok {
		return nil, fmt.Errorf("board %s: trigger input %q is not open", b.Name, c.input)
	}
	return &onGPIOTrigger{c: c, in: in}, nil
}

func (c onGPIO) Missed(cut *results.CutInfo) string {
	if cut == nil {
		return fmt.Sprintf("the cut never fired: input %s saw fewer than %d %s edges while the update ran", c.input, c.nth, c.edge)
	}
	return ""
}

// onGPIOTrigger counts the input's edges from Arm; the latency is measured
// from the edge (plus the delay).
type onGPIOTrigger struct {
	c    onGPIO
	in   inputs.Input
	stop context.CancelFunc
}

func (t *onGPIOTrigger) String() string { return t.c.String() }

func (t *onGPIOTrigger) Arm(ctx context.Context, fire bench.Fire) error {
	if err := t.in.Arm(ctx, t.c.edge); err != nil {
		return err
	}
	wctx, stop := context.WithCancel(ctx)
	t.stop = stop
	go func() {
		for n := 1; ; n++ {
			at, err := t.in.Wait(wctx)
			if err != nil {
				return
			}
			if n < max(t.c.nth, 1) {
				continue
			}
			if t.c.delay > 0 {
				at = at.Add(t.c.delay)
				select {
				case <-time.After(time.Until(at)):
				case <-wctx.Done():
					return
				}
			}
			fire(at, t.c.String())
			return
		}
	}()
	return nil
}

func (t *onGPIOTrigger) Sent(uint32, time.Time)       {}
func (t *onGPIOTrigger) Acked(uint32, time.Time) bool { return false }

func (t *onGPIOTrigger) Disarm() {
	if t.stop != nil {
		t.stop()
	}
}
