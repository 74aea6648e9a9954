package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// after_block: N | last | {from, to, step}
//
// Power goes once block N is acknowledged, before block N+1 is sent: the
// device holds exactly N+1 blocks.
func init() {
	registerCut(&cutKind{
		name: "after_block",
		decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
			r, err := intRange(d, f.Val, w, true, 0)
			return afterBlockSpec{r}, err
		},
		draw: &drawer{cut: func(block int64, _, _ time.Duration) bench.Cut { return AfterBlock(block) }},
	})
}

type afterBlockSpec struct{ blocks IntRange }

func (s afterBlockSpec) count(j *Job, blocks uint32, what string) (int64, error) {
	from, to, err := s.blocks.resolve(j, blocks, what)
	return s.blocks.count(from, to), err
}

func (s afterBlockSpec) expand(j *Job, blocks uint32, what string, _ *rand.Rand, add func(bench.Cut)) error {
	from, to, err := s.blocks.resolve(j, blocks, what)
	if err != nil {
		return err
	}
	for b := from; b <= to; b += max(s.blocks.Step, 1) {
		add(AfterBlock(b))
	}
	return nil
}

func (afterBlockSpec) check(*Job, *boards.Board, string) error { return nil }

// AfterBlock is the cut once block n is acknowledged.
func AfterBlock(n int64) bench.Cut { return afterBlock{n} }

type afterBlock struct{ n int64 }

func (c afterBlock) String() string { return fmt.Sprintf("after_block %d", c.n) }
func (c afterBlock) Block() int64   { return c.n }

func (c afterBlock) Trigger(*bench.Board) (bench.Trigger, error) {
	return &afterBlockTrigger{n: uint32(c.n), name: c.String()}, nil
}

// Missed: the bench saw block N acknowledged and nothing in flight, and
// the device, when it keeps a record, was not writing and had
// acknowledged block N last. A record with no transfer at all (nothing
// written, nothing acknowledged) is of a device that had already
// restarted, as it does once it has the last block: it cannot place the
// cut, and the bench's view stands.
func (c afterBlock) Missed(cut *results.CutInfo) string {
	switch {
	case cut == nil:
		return fmt.Sprintf("the cut never fired: block %d was never acknowledged", c.n)
	case cut.LastAcked != c.n || cut.InFlight != -1:
		return fmt.Sprintf("cut with block %d acknowledged and block %d in flight, planned once block %d is acknowledged", cut.LastAcked, cut.InFlight, c.n)
	case cut.Device == nil || cut.Device.Writing == -1 && cut.Device.LastAcked == -1:
	case cut.Device.Writing != -1 || cut.Device.LastAcked != c.n:
		return fmt.Sprintf("the device's record: writing block %d, last acknowledged %d; planned once block %d is acknowledged", cut.Device.Writing, cut.Device.LastAcked, c.n)
	}
	return ""
}

type afterBlockTrigger struct {
	n    uint32
	name string
}

func (t *afterBlockTrigger) String() string                        { return t.name }
func (t *afterBlockTrigger) Arm(context.Context, bench.Fire) error { return nil }
func (t *afterBlockTrigger) Sent(uint32, time.Time)                {}
func (t *afterBlockTrigger) Acked(num uint32, _ time.Time) bool    { return num == t.n }
func (t *afterBlockTrigger) Disarm()                               {}
func (t *afterBlockTrigger) AckBlock() uint32                      { return t.n }
