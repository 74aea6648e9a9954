package jobs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// during_block: {block: N | last | {from, to, step}, delay: D | {from, to, step}}
//
// Power goes delay after block N was sent, while the device receives and
// writes it.
func init() {
	registerCut(&cutKind{
		name: "during_block",
		decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
			fs, err := d.Fields(f.Val, w, "block", "delay")
			if err != nil {
				return nil, err
			}
			b, ok := fs["block"]
			if !ok {
				return nil, d.Errf(f.Key, "%s: block is required", w)
			}
			var s duringBlockSpec
			if s.blocks, err = intRange(d, b.Val, w+".block", true, 0); err != nil {
				return nil, err
			}
			s.delay.at = config.PosOf(f.Val)
			if df, ok := fs["delay"]; ok {
				s.delay, err = durRange(d, df.Val, w+".delay", MaxDelay, false)
			}
			return s, err
		},
		draw: &drawer{delay: true, cut: func(block int64, delay, _ time.Duration) bench.Cut { return DuringBlock(block, delay) }},
	})
}

type duringBlockSpec struct {
	blocks IntRange
	delay  DurRange
}

func (s duringBlockSpec) count(j *Job, blocks uint32, what string) (int64, error) {
	from, to, err := s.blocks.resolve(j, blocks, what)
	return s.blocks.count(from, to) * int64(len(s.delay.values())), err
}

func (s duringBlockSpec) expand(j *Job, blocks uint32, what string, _ *rand.Rand, add func(bench.Cut)) error {
	from, to, err := s.blocks.resolve(j, blocks, what)
	if err != nil {
		return err
	}
	delays := s.delay.values()
	for b := from; b <= to; b += max(s.blocks.Step, 1) {
		for _, dl := range delays {
			add(DuringBlock(b, dl))
		}
	}
	return nil
}

func (s duringBlockSpec) check(j *Job, bd *boards.Board, what string) error {
	return checkDelayLands(j, bd, what+".delay", s.delay)
}

// ErrCannotLand marks a cut that the board's timing makes impossible: a
// during_block delay at least as long as the board takes to write a block.
var ErrCannotLand = errors.New("the cut cannot land where planned")

// checkDelayLands refuses a during_block delay that is not shorter than
// the time the board takes to program a block, when its bench entry says
// how fast it programs: the device would have written and acknowledged
// the block before the cut, which then lands in a later block (or after
// the transfer) every time.
func checkDelayLands(j *Job, bd *boards.Board, what string, delay DurRange) error {
	write, ok := bd.Flash.BlockWriteTime(j.BlockSize)
	if !ok || delay.To == 0 || delay.To < write {
		return nil
	}
	return &landError{err: j.errAt(delay.at, "%s %v cannot land during a block on board %s: it programs a %d-byte block in %v (program_time %v per %d bytes, %s)",
		what, delay.To, bd.Name, j.BlockSize, write, bd.Flash.ProgramTime, bd.Flash.WriteUnit, strings.Trim(bd.File, "()"))}
}

// landError is a configuration error that is also ErrCannotLand.
type landError struct{ err error }

func (e *landError) Error() string   { return e.err.Error() }
func (e *landError) Unwrap() []error { return []error{e.err, ErrCannotLand} }

// DuringBlock is the cut delay after block n was sent.
func DuringBlock(n int64, delay time.Duration) bench.Cut { return duringBlock{n, delay} }

type duringBlock struct {
	n     int64
	delay time.Duration
}

func (c duringBlock) String() string { return fmt.Sprintf("during_block %d +%v", c.n, c.delay) }
func (c duringBlock) Block() int64   { return c.n }

func (c duringBlock) Trigger(*bench.Board) (bench.Trigger, error) {
	return &sentTimer{n: c.n, delay: c.delay, name: c.String()}, nil
}

// Missed: the bench still had block N in flight, and the device, when it
// keeps a record, was writing block N or had not started it yet (the
// block was on its way) — not past it.
func (c duringBlock) Missed(cut *results.CutInfo) string {
	switch {
	case cut == nil:
		return fmt.Sprintf("the cut never fired: the transfer was past block %d before +%v", c.n, c.delay)
	case cut.InFlight != c.n:
		return fmt.Sprintf("cut with block %d in flight and block %d acknowledged, planned during block %d", cut.InFlight, cut.LastAcked, c.n)
	case cut.Device != nil && cut.Device.Writing != c.n && !(cut.Device.Writing == -1 && cut.Device.LastAcked == c.n-1):
		if cut.Device.Writing == -1 && cut.Device.LastAcked >= c.n {
			return fmt.Sprintf("the device had already written and acknowledged block %d when power went (its record: last acknowledged %d)", c.n, cut.Device.LastAcked)
		}
		return fmt.Sprintf("the device's record: writing block %d, last acknowledged %d; planned during block %d", cut.Device.Writing, cut.Device.LastAcked, c.n)
	}
	return ""
}

// sentTimer fires delay after a block is sent: block n, or the first
// block sent when n is -1. It is the trigger of during_block (block n)
// and at_time (the transfer's first block).
type sentTimer struct {
	n     int64
	delay time.Duration
	name  string
	fire  bench.Fire
	timer *time.Timer
	begun bool // the block came: the cut is under way
}

func (t *sentTimer) String() string { return t.name }

func (t *sentTimer) Arm(_ context.Context, fire bench.Fire) error {
	t.fire = fire
	return nil
}

func (t *sentTimer) Sent(num uint32, at time.Time) {
	if t.n >= 0 && int64(num) != t.n || t.fire == nil || t.begun {
		return
	}
	t.begun = true
	if t.delay <= 0 {
		// Cut before the block goes out: the session calls Sent just
		// before writing it.
		t.fire(at, t.name)
		return
	}
	planned := at.Add(t.delay)
	t.timer = time.AfterFunc(time.Until(planned), func() { t.fire(planned, t.name) })
}

func (t *sentTimer) Acked(uint32, time.Time) bool { return false }

func (t *sentTimer) Disarm() {
	if t.timer != nil {
		t.timer.Stop()
	}
}
