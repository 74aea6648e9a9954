// Package results holds the event model of the timeline and, as the bench
// grows, the stores and exporters built on it. It imports nothing else of
// fudbench: every other package emits events into it.
//
// Every event carries the time since its run started on one monotonic
// clock, the wall time, the board, the cycle and a kind. Recovery and
// timing figures are derived from events, never measured twice.
package results

import (
	"sync"
	"time"
)

// Kind names what happened.
type Kind string

// Event kinds.
const (
	PowerOn    Kind = "power.on"  // switch call returned, board powered
	PowerOff   Kind = "power.off" // switch call returned, board unpowered
	PowerError Kind = "power.error"
	// PowerReading is one reading of a measuring supply; Attrs "volts"
	// and "amps".
	PowerReading Kind = "power.reading"
	// Brownout is the supply dropped to a brownout level (a brownout
	// cut); Text says to what and for how long, Attrs "volts" the level.
	// The power.on event that follows is the level restored.
	Brownout      Kind = "power.brownout"
	ConsoleLine   Kind = "console.line"
	ConsoleGap    Kind = "console.gap"    // port vanished; Dur is how long it was gone once back
	ConsoleReopen Kind = "console.reopen" // port found again (possibly under a new name)
	BlockSent     Kind = "block.sent"
	BlockAcked    Kind = "block.acked" // Dur: round-trip time
	BlockRetry    Kind = "block.retry"
	Resync        Kind = "update.resync" // device asked to continue at Block
	UpdateStart   Kind = "update.start"
	UpdateDone    Kind = "update.done"
	UpdateError   Kind = "update.error"
	CutTrigger    Kind = "cut.trigger" // a cut trigger fired; Dur: trigger event to switch call returned
	Recovery      Kind = "recovery"    // a recovery milestone; Text names it
	FlashProgress Kind = "flash.progress"
	CycleStart    Kind = "cycle.start" // Text: the planned cut; Attrs "planned": the board's cycles
	Phase         Kind = "phase"       // a board enters a phase of its cycle; Text is one of the Phase… names
	CycleOutcome  Kind = "cycle.outcome"
	DTLSHandshake Kind = "dtls.handshake" // a DTLS session set up; Text: full, abbreviated or none; Dur; Attrs "bytes"
	EchoChallenge Kind = "echo.challenge" // the device asked for proof of freshness (RFC 9175 Echo)
	Security      Kind = "security"       // a security finding (nonce reuse, accepted replay); Text says which
	Note          Kind = "note"

	// DeviceInfo describes a board, once, at its first cycle. Text is
	// the board's update strategy ("inplace-recovery", "naive-inplace",
	// "ab-overwrite", "ab-swap", "ab-direct", or the label of a real
	// board's bench file); Attrs "strategy" repeats it and, when the
	// device reports them, "space" is the bytes of flash beyond the
	// bootloader the strategy needs for the run's image and "cache" the
	// bytes the device keeps in flash so that an interrupted update
	// completes on its own (recovery record and journal, or trailer and
	// swap status). Reports group boards by the strategy.
	DeviceInfo Kind = "device"
	// FlashCost is what an update cost the device's flash, for devices
	// that count it, measured on an update that ran without a cut (its
	// Cycle may still plan a cut: the bench measures the device once
	// before such cycles). Attrs "programmed" and "erased" are bytes,
	// "max_erases" the most erases any one sector took during the update
	// (wear), "boot_ops" the device's flash operations from the last block
	// sent to the new image running.
	FlashCost Kind = "flash.cost"
	// LinkDrop is a datagram the impaired link between the bench and the
	// board dropped (docs/bench.md, coap.link), stamped when it reached
	// the link. Text is why: "loss", "mtu" or "queue"; Block is the Block1
	// number when the datagram is a plain CoAP message with one (-1
	// otherwise: a DTLS record, an OSCORE message, a GET); Attrs "dir" is
	// "to-device" or "from-device", "bytes" its size and, for CoAP,
	// "coap" its type, code and message ID.
	LinkDrop Kind = "link.drop"
	// LinkDup is a datagram the link delivered twice; LinkReorder one it
	// held back behind the next of its direction. Same fields as
	// LinkDrop. Drops, duplicates and reorders together are at most
	// MaxLinkEvents a cycle; the summary counts the rest.
	LinkDup     Kind = "link.dup"
	LinkReorder Kind = "link.reorder"
	// LinkSummary closes each cycle on a board with an impaired link:
	// Text is the link's configuration; Attrs, for each direction
	// ("to_device.", "from_device."): "datagrams", "delivered",
	// "dropped" (of which "lost", "mtu", "queue"), "duplicated",
	// "reordered", "mean_delay" (arrival at the link to delivery, as
	// measured on the bench host); "events_suppressed" the events over
	// MaxLinkEvents. Dur is the mean delay towards the device.
	LinkSummary Kind = "link.summary"
	// UpdateVerified marks an update that ended with the new image
	// running; Dur is update.start to the new version answering (on a
	// cycle without a cut: the time to the new version, no cut).
	UpdateVerified Kind = "update.verified"
)

// MaxLinkEvents bounds the link.drop, link.dup and link.reorder events
// of one board in one cycle, so a link that loses everything cannot
// flood the run's sinks.
const MaxLinkEvents = 1000

// Phases of a cycle, as the Text of Phase events.
const (
	PhaseBaseline = "baseline" // making sure the baseline image runs
	PhaseTransfer = "transfer" // sending blocks (block.sent events say which)
	PhaseOff      = "off"      // power cut, waiting out the off-time
	PhaseRecovery = "recovery" // power back, following the device's recovery
	PhaseVerify   = "verify"   // waiting for the new image to run
	PhaseReflash  = "reflash"  // writing the baseline over the probe
	PhaseClassify = "classify" // asking the device how the cycle ended
)

// Event is one point on the timeline.
type Event struct {
	T     time.Duration `json:"t"` // since the run started (monotonic)
	Wall  time.Time     `json:"wall"`
	Board string        `json:"board,omitempty"`
	Cycle int           `json:"cycle"`
	Kind  Kind          `json:"kind"`
	// Block is the block number an event is about; -1 when none.
	Block int64 `json:"block"`
	// Dur is a duration the event measured (round trip, latency, gap).
	Dur  time.Duration `json:"dur,omitempty"`
	Text string        `json:"text,omitempty"`
	// Attrs are further details, kind-specific.
	Attrs map[string]string `json:"attrs,omitempty"`
}

// Sink receives events. Emit must not block for long: it is called from
// the bench's hot paths (between blocks, after a cut).
type Sink interface {
	Emit(Event)
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(Event)

// Emit calls f.
func (f SinkFunc) Emit(e Event) { f(e) }

// Discard drops every event.
var Discard Sink = SinkFunc(func(Event) {})

// Memory keeps events in memory; for tests and small runs.
type Memory struct {
	mu     sync.Mutex
	events []Event
}

// Emit appends e.
func (m *Memory) Emit(e Event) {
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
}

// Events returns a copy of what was emitted.
func (m *Memory) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Event(nil), m.events...)
}

// OfKind returns the events of kind k.
func (m *Memory) OfKind(k Kind) []Event {
	var out []Event
	for _, e := range m.Events() {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// Clock is a run's monotonic clock.
type Clock struct {
	start time.Time
}

// NewClock starts a clock now.
func NewClock() *Clock { return &Clock{start: time.Now()} }

// Since returns the time since the clock started.
func (c *Clock) Since() time.Duration { return time.Since(c.start) }

// Start is the wall time the clock started.
func (c *Clock) Start() time.Time { return c.start }

// Stamp returns an event at the current instant for board and cycle.
func (c *Clock) Stamp(board string, cycle int, k Kind) Event {
	now := time.Now()
	return Event{T: now.Sub(c.start), Wall: now, Board: board, Cycle: cycle, Kind: k, Block: -1}
}
