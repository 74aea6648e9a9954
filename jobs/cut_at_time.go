package jobs

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// at_time: T | {from, to, step}
//
// Power goes T after the transfer starts: after its first block is sent
// (after prepare and the reboot into recovery, for the resumable
// profile).
func init() {
	registerCut(&cutKind{
		name: "at_time",
		decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
			r, err := durRange(d, f.Val, w, MaxAtTime, false)
			return atTimeSpec{r}, err
		},
		draw: &drawer{byTime: true, cut: func(_ int64, _, at time.Duration) bench.Cut { return AtTime(at) }},
	})
}

type atTimeSpec struct{ times DurRange }

func (s atTimeSpec) count(*Job, uint32, string) (int64, error) {
	return int64(len(s.times.values())), nil
}

func (s atTimeSpec) expand(_ *Job, _ uint32, _ string, _ *rand.Rand, add func(bench.Cut)) error {
	for _, t := range s.times.values() {
		add(AtTime(t))
	}
	return nil
}

func (atTimeSpec) check(*Job, *boards.Board, string) error { return nil }

// AtTime is the cut t after the transfer starts.
func AtTime(t time.Duration) bench.Cut { return atTime{t} }

type atTime struct{ t time.Duration }

func (c atTime) String() string { return fmt.Sprintf("at_time %v", c.t) }
func (c atTime) Block() int64   { return -1 }

func (c atTime) Trigger(*bench.Board) (bench.Trigger, error) {
	// The clock starts at the first block: triggers are armed when the
	// update starts, before the resumable profile's prepare.
	return &sentTimer{n: -1, delay: c.t, name: c.String()}, nil
}

func (c atTime) Missed(cut *results.CutInfo) string {
	if cut == nil {
		return fmt.Sprintf("the cut never fired: the update was over before %v", c.t)
	}
	return ""
}
