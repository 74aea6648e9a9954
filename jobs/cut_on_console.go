package jobs

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
)

// on_console: {pattern: REGEXP, delay: D | {from, to, step}}
//
// Power goes delay after a line of the board's console matches pattern.
// The board needs a console in the bench file.
func init() {
	registerCut(&cutKind{
		name: "on_console",
		decode: func(d *config.Decoder, f config.Field, w string) (cutSpec, error) {
			fs, err := d.Fields(f.Val, w, "pattern", "delay")
			if err != nil {
				return nil, err
			}
			pf, ok := fs["pattern"]
			if !ok {
				return nil, d.Errf(f.Key, "%s: pattern is required", w)
			}
			s := onConsoleSpec{at: config.PosOf(f.Key)}
			pat, err := d.Str(pf.Val, w+".pattern")
			if err != nil {
				return nil, err
			}
			if pat == "" {
				return nil, d.Errf(pf.Val, "%s.pattern: empty (it would match every line)", w)
			}
			if s.pattern, err = regexp.Compile(pat); err != nil {
				return nil, d.Errf(pf.Val, "%s.pattern: %v", w, err)
			}
			if df, ok := fs["delay"]; ok {
				s.delay, err = durRange(d, df.Val, w+".delay", MaxDelay, false)
			}
			return s, err
		},
	})
}

type onConsoleSpec struct {
	pattern *regexp.Regexp
	delay   DurRange
	at      config.Pos
}

func (s onConsoleSpec) count(*Job, uint32, string) (int64, error) {
	return int64(len(s.delay.values())), nil
}

func (s onConsoleSpec) expand(_ *Job, _ uint32, _ string, _ *rand.Rand, add func(bench.Cut)) error {
	for _, dl := range s.delay.values() {
		add(onConsole{s.pattern, dl})
	}
	return nil
}

func (s onConsoleSpec) check(j *Job, bd *boards.Board, what string) error {
	if bd.Console == nil {
		return j.errAt(s.at, "%s: board %s has no console in %s: a console cut needs one", what, bd.Name, bd.File)
	}
	return nil
}

// OnConsole is the cut delay after a console line of the board matches
// pattern.
func OnConsole(pattern *regexp.Regexp, delay time.Duration) bench.Cut {
	return onConsole{pattern, delay}
}

type onConsole struct {
	pattern *regexp.Regexp
	delay   time.Duration
}

func (c onConsole) String() string {
	s := fmt.Sprintf("on_console %q", c.pattern)
	if c.delay > 0 {
		s += fmt.Sprintf(" +%v", c.delay)
	}
	return s
}

func (c onConsole) Block() int64 { return -1 }

func (c onConsole) Trigger(b *bench.Board) (bench.Trigger, error) {
	if b.Console == nil {
		return nil, fmt.Errorf("board %s: no console open", b.Name)
	}
	return &onConsoleTrigger{c: c, board: b}, nil
}

func (c onConsole) Missed(cut *results.CutInfo) string {
	if cut == nil {
		return fmt.Sprintf("the cut never fired: no console line matched %q while the update ran", c.pattern)
	}
	return ""
}

// onConsoleTrigger watches the board's console lines on the timeline; the
// latency is measured from the instant the line's first byte was read.
type onConsoleTrigger struct {
	c     onConsole
	board *bench.Board
	stop  func()
}

func (t *onConsoleTrigger) String() string { return t.c.String() }

func (t *onConsoleTrigger) Arm(ctx context.Context, fire bench.Fire) error {
	name := t.board.Name
	ch, stop := t.board.Hub().Watch(func(e *results.Event) bool {
		return e.Kind == results.ConsoleLine && e.Board == name && t.c.pattern.MatchString(e.Text)
	})
	done := make(chan struct{})
	t.stop = func() { stop(); close(done) }
	go func() {
		select {
		case e := <-ch:
			at := e.Wall
			if t.c.delay > 0 {
				at = at.Add(t.c.delay)
				select {
				case <-time.After(time.Until(at)):
				case <-done:
					return
				case <-ctx.Done():
					return
				}
			}
			fire(at, fmt.Sprintf("%s: %q", t.c, e.Text))
		case <-done:
		case <-ctx.Done():
		}
	}()
	return nil
}

func (t *onConsoleTrigger) Sent(uint32, time.Time)       {}
func (t *onConsoleTrigger) Acked(uint32, time.Time) bool { return false }

func (t *onConsoleTrigger) Disarm() {
	if t.stop != nil {
		t.stop()
		t.stop = nil
	}
}
