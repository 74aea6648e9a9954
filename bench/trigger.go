package bench

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/fudbench/fudbench/results"
)

// A Trigger decides when, during a transfer, the board loses power. The
// session calls Sent and Acked from its own goroutine between blocks;
// triggers that wait on something else (a timer, the console, a GPIO
// edge) start goroutines in Arm and call fire from there. fire switches
// the power off directly in the calling goroutine and records the latency
// from at — the instant of the triggering event — to the switch call
// returning.
type Trigger interface {
	String() string
	// Arm is called when the transfer starts.
	Arm(ctx context.Context, fire func(at time.Time, why string))
	// Sent is called right after block num was sent, at at.
	Sent(num uint32, at time.Time)
	// Acked is called when block num's acknowledgement arrived at at;
	// true cuts power now, before the next block is sent.
	Acked(num uint32, at time.Time) bool
	// Disarm stops the trigger's goroutines; it must be safe to call twice.
	Disarm()
}

// AfterBlock cuts power once block N is acknowledged, before block N+1 is
// sent.
type AfterBlock struct{ N uint32 }

func (t *AfterBlock) String() string                               { return fmt.Sprintf("after_block %d", t.N) }
func (t *AfterBlock) Arm(context.Context, func(time.Time, string)) {}
func (t *AfterBlock) Sent(uint32, time.Time)                       {}
func (t *AfterBlock) Acked(num uint32, _ time.Time) bool           { return num == t.N }
func (t *AfterBlock) Disarm()                                      {}

// DuringBlock cuts power Delay after block N was sent, while the device
// is (with a suitable delay) writing it.
type DuringBlock struct {
	N     uint32
	Delay time.Duration
	fire  func(time.Time, string)
	timer *time.Timer
}

func (t *DuringBlock) String() string { return fmt.Sprintf("during_block %d +%v", t.N, t.Delay) }
func (t *DuringBlock) Arm(_ context.Context, fire func(time.Time, string)) {
	t.fire = fire
}
func (t *DuringBlock) Sent(num uint32, at time.Time) {
	if num != t.N || t.fire == nil || t.timer != nil {
		return
	}
	planned := at.Add(t.Delay)
	if t.Delay <= 0 {
		t.fire(at, t.String())
		return
	}
	t.timer = time.AfterFunc(time.Until(planned), func() { t.fire(planned, t.String()) })
}
func (t *DuringBlock) Acked(uint32, time.Time) bool { return false }
func (t *DuringBlock) Disarm() {
	if t.timer != nil {
		t.timer.Stop()
	}
}

// AtTime cuts power T after the transfer started.
type AtTime struct {
	T     time.Duration
	timer *time.Timer
}

func (t *AtTime) String() string { return fmt.Sprintf("at_time %v", t.T) }
func (t *AtTime) Arm(_ context.Context, fire func(time.Time, string)) {
	planned := time.Now().Add(t.T)
	t.timer = time.AfterFunc(t.T, func() { fire(planned, t.String()) })
}
func (t *AtTime) Sent(uint32, time.Time)       {}
func (t *AtTime) Acked(uint32, time.Time) bool { return false }
func (t *AtTime) Disarm() {
	if t.timer != nil {
		t.timer.Stop()
	}
}

// OnConsole cuts power when a console line of the board matches Pattern.
// The latency is measured from the instant the line was read.
type OnConsole struct {
	Pattern *regexp.Regexp
	Board   *Board
	Delay   time.Duration // after the matching line
	stop    func()
}

func (t *OnConsole) String() string { return fmt.Sprintf("on_console %q", t.Pattern) }
func (t *OnConsole) Arm(ctx context.Context, fire func(time.Time, string)) {
	name := t.Board.Name
	ch, stop := t.Board.hub.Watch(func(e *results.Event) bool {
		return e.Kind == results.ConsoleLine && e.Board == name && t.Pattern.MatchString(e.Text)
	})
	done := make(chan struct{})
	t.stop = func() { stop(); close(done) }
	go func() {
		select {
		case e := <-ch:
			at := e.Wall
			if t.Delay > 0 {
				at = at.Add(t.Delay)
				select {
				case <-time.After(time.Until(at)):
				case <-done:
					return
				case <-ctx.Done():
					return
				}
			}
			fire(at, fmt.Sprintf("%s: %q", t, e.Text))
		case <-done:
		case <-ctx.Done():
		}
	}()
}
func (t *OnConsole) Sent(uint32, time.Time)       {}
func (t *OnConsole) Acked(uint32, time.Time) bool { return false }
func (t *OnConsole) Disarm() {
	if t.stop != nil {
		t.stop()
		t.stop = nil
	}
}

// OnGPIO cuts power Delay after the Nth edge (from 1) of an input wired to
// the board's flash-busy signal: the most precise cut a real bench can
// make, timed to the device's own flash activity.
type OnGPIO struct {
	Pin   gpio.PinIn
	Edge  gpio.Edge // default RisingEdge
	Nth   int
	Delay time.Duration
	stop  chan struct{}
}

func (t *OnGPIO) String() string {
	return fmt.Sprintf("on_gpio %s edge %d +%v", t.Pin, t.Nth, t.Delay)
}

func (t *OnGPIO) Arm(ctx context.Context, fire func(time.Time, string)) {
	edge := t.Edge
	if edge == gpio.NoEdge {
		edge = gpio.RisingEdge
	}
	if err := t.Pin.In(gpio.PullNoChange, edge); err != nil {
		return
	}
	t.stop = make(chan struct{})
	stop := t.stop
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			if !t.Pin.WaitForEdge(20 * time.Millisecond) {
				continue
			}
			at := time.Now()
			n++
			if n < max(t.Nth, 1) {
				continue
			}
			if t.Delay > 0 {
				select {
				case <-time.After(t.Delay):
				case <-stop:
					return
				}
				at = at.Add(t.Delay)
			}
			fire(at, t.String())
			return
		}
	}()
}
func (t *OnGPIO) Sent(uint32, time.Time)       {}
func (t *OnGPIO) Acked(uint32, time.Time) bool { return false }
func (t *OnGPIO) Disarm() {
	if t.stop != nil {
		close(t.stop)
		t.stop = nil
	}
}
