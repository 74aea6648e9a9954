// Package bench binds one board's wiring into a live Board that a job can
// drive (labgrid's "target"): the run's timeline clock, power through a
// power.Switch whose every transition becomes an event, the console's lines
// as events, and the CoAP update session with its cut triggers.
//
// Every event goes through a Hub, which forwards it to the run's sink and
// lets triggers and recovery waits watch the timeline as it happens.
package bench

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fudbench/fudbench/bench/console"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// Hub is a results.Sink that also lets parts of the bench watch events as
// they are emitted.
type Hub struct {
	out   results.Sink
	clock *results.Clock
	mu    sync.Mutex
	subs  map[int]*watch
	next  int
}

type watch struct {
	match func(*results.Event) bool
	ch    chan results.Event
}

// NewHub makes a hub forwarding to out (nil: discard) on clock.
func NewHub(clock *results.Clock, out results.Sink) *Hub {
	if out == nil {
		out = results.Discard
	}
	return &Hub{out: out, clock: clock, subs: map[int]*watch{}}
}

// Clock is the run's clock.
func (h *Hub) Clock() *results.Clock { return h.clock }

// Emit forwards e and hands it to every watcher whose filter matches. A
// watcher that does not keep up loses events rather than stall the bench.
func (h *Hub) Emit(e results.Event) {
	h.out.Emit(e)
	h.mu.Lock()
	for _, w := range h.subs {
		if w.match(&e) {
			select {
			case w.ch <- e:
			default:
			}
		}
	}
	h.mu.Unlock()
}

// Watch returns events matching match from now on, and a function that
// stops watching.
func (h *Hub) Watch(match func(*results.Event) bool) (<-chan results.Event, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.next
	h.next++
	w := &watch{match: match, ch: make(chan results.Event, 256)}
	h.subs[id] = w
	return w.ch, func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
	}
}

// Patterns recognise a board's console lines.
type Patterns struct {
	Boot     *regexp.Regexp // any boot banner
	App      *regexp.Regexp // the application is up
	Recovery *regexp.Regexp // the recovery bootloader is up
}

// SimPatterns match the simulated board's console.
var SimPatterns = Patterns{
	Boot:     regexp.MustCompile(`^BL .*bootloader`),
	App:      regexp.MustCompile(`^APP .* ready$`),
	Recovery: regexp.MustCompile(`^RECOVERY ready`),
}

// Board is one board bound to a run.
type Board struct {
	Name     string
	Power    power.Switch
	Console  *console.Console // nil when not wired or not opened
	Endpoint Endpoint
	Patterns Patterns
	// PowerTimeout bounds every call to the power switch (On, Off, the
	// safe state); 0 is DefaultPowerTimeout. A driver that does not
	// return in time is abandoned and the call fails with
	// power.ErrTimeout: a hung relay driver never stalls the run.
	PowerTimeout time.Duration
	hub          *Hub
	cycle        atomic.Int64
	powered      atomic.Bool // what the bench last did, for the safe state on abort
	touched      atomic.Bool
}

// DefaultPowerTimeout bounds a power switch call when Board.PowerTimeout
// is not set.
const DefaultPowerTimeout = 10 * time.Second

// ErrPower marks a failure of a board's power switch (an error or no
// answer within the power timeout): the bench no longer knows whether
// the board is powered.
var ErrPower = errors.New("power switch failed")

// powerCall runs one switch call bounded by the power timeout (and at
// most limit when limit > 0); a power.Bounded switch is called directly. A driver that honours its context returns
// its own error at the deadline; one that does not is left behind and
// the call fails with power.ErrTimeout.
func (b *Board) powerCall(ctx context.Context, limit time.Duration, call func(context.Context) error) error {
	to := b.PowerTimeout
	if to <= 0 {
		to = DefaultPowerTimeout
	}
	if limit > 0 {
		to = min(to, limit)
	}
	if d, ok := b.Power.(power.Bounded); ok && d.Bounded() {
		// Nothing to watch: a goroutine and a timer would triple the
		// trigger latency of a GPIO cut.
		return call(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, to)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	// Give a driver that watches its context a moment to say why.
	grace := time.NewTimer(100 * time.Millisecond)
	defer grace.Stop()
	select {
	case err := <-done:
		return err
	case <-grace.C:
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("no answer within %v: %w", to, power.ErrTimeout)
	}
	return ctx.Err()
}

// Endpoint is how the bench reaches a device over CoAP.
type Endpoint struct {
	Addr string    // host:port
	PSK  *coap.PSK // nil: plain UDP
	Tx   coap.Transmission
	// Poll bounds each attempt while waiting for a device to answer after
	// power-on; it sets the resolution of the recovery times (default
	// 20 ms; raise it for slow links such as 6LoWPAN).
	Poll time.Duration
}

func (e Endpoint) poll() time.Duration {
	if e.Poll > 0 {
		return e.Poll
	}
	return 20 * time.Millisecond
}

// NewBoard binds a board to the run's hub.
func NewBoard(name string, sw power.Switch, ep Endpoint, pat Patterns, hub *Hub) *Board {
	return &Board{Name: name, Power: sw, Endpoint: ep, Patterns: pat, hub: hub}
}

// Hub is the run's event hub.
func (b *Board) Hub() *Hub { return b.hub }

// SetCycle sets the cycle number stamped on the board's events.
func (b *Board) SetCycle(n int) { b.cycle.Store(int64(n)) }

// Cycle is the current cycle number.
func (b *Board) Cycle() int { return int(b.cycle.Load()) }

// Event stamps an event of kind k for this board now.
func (b *Board) Event(k results.Kind) results.Event {
	return b.hub.clock.Stamp(b.Name, b.Cycle(), k)
}

// Emit sends e to the run's hub.
func (b *Board) Emit(e results.Event) { b.hub.Emit(e) }

// PoweredOn reports whether the bench last switched the board on.
func (b *Board) PoweredOn() bool { return b.powered.Load() }

// PowerOn switches the board on; the event is stamped when the driver
// call returned.
func (b *Board) PowerOn(ctx context.Context) error {
	b.touched.Store(true)
	if err := b.powerCall(ctx, 0, b.Power.On); err != nil {
		e := b.Event(results.PowerError)
		e.Text = err.Error()
		b.Emit(e)
		return fmt.Errorf("board %s: power on (%s): %w: %w", b.Name, b.Power, ErrPower, err)
	}
	b.powered.Store(true)
	b.Emit(b.Event(results.PowerOn))
	return nil
}

// PowerOff switches the board off; the returned event carries the instant
// the driver call returned.
func (b *Board) PowerOff(ctx context.Context) (results.Event, error) {
	b.touched.Store(true)
	if err := b.powerCall(ctx, 0, b.Power.Off); err != nil {
		e := b.Event(results.PowerError)
		e.Text = err.Error()
		b.Emit(e)
		return e, fmt.Errorf("board %s: power off (%s): %w: %w", b.Name, b.Power, ErrPower, err)
	}
	b.powered.Store(false)
	e := b.Event(results.PowerOff)
	b.Emit(e)
	return e, nil
}

// Safe puts a board the bench has touched into its safe state (the
// driver's Halt, or off). It is what every abort path calls, Ctrl-C
// included; it uses its own short deadline because the run's context is
// usually already cancelled.
func (b *Board) Safe() error {
	if !b.touched.Load() {
		return nil
	}
	err := b.powerCall(context.Background(), 5*time.Second, func(ctx context.Context) error { return power.Safe(ctx, b.Power) })
	if err != nil {
		e := b.Event(results.PowerError)
		e.Text = "safe state: " + err.Error()
		b.Emit(e)
		return fmt.Errorf("board %s: safe state (%s): %w: %w", b.Name, b.Power, ErrPower, err)
	}
	b.powered.Store(false)
	e := b.Event(results.PowerOff)
	e.Text = "safe state"
	b.Emit(e)
	return nil
}

// Dial opens a CoAP client to the board.
func (b *Board) Dial(ctx context.Context) (*coap.Client, error) {
	c, err := coap.Dial(ctx, b.Endpoint.Addr, b.Endpoint.PSK, b.Endpoint.Tx)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	return c, nil
}
