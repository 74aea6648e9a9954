// Package bench binds one board's wiring into a live Board that a run can
// drive (labgrid's "target"), and holds the per-board strategy that takes
// it through a cycle:
//
//	bind      open the board's drivers — power, probe, console, trigger
//	          inputs — and read its keys, powering nothing (Bind)
//	baseline  power it and make sure the baseline image runs, reflashing
//	          over the probe when it does not (Strategy.EnsureBaseline)
//	update    push the update with the cycle's planned cut, power back,
//	          follow recovery and finish the transfer (Board.Run)
//	classify  ask the device how the cycle ended, compare the cut that
//	          happened with the one planned, reflash a brick
//	          (Strategy.Cycle)
//
// Every action lands on the run's timeline through a Hub, which forwards
// events to the run's sinks and lets triggers and recovery waits watch
// them as they happen. The device is reached only through real interfaces:
// CoAP (package coap, and bench/fwclient for the update protocol), the
// console (bench/console), the power switch, the probe and inputs.
package bench

import (
	"sync"

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
