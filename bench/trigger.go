package bench

import (
	"context"
	"time"

	"github.com/fudbench/fudbench/results"
)

// Fire cuts the board's power now, in the calling goroutine, and stops
// the transfer. at is the instant of the event that triggered the cut:
// the cut's latency is measured from it. why names the trigger.
type Fire func(at time.Time, why string)

// A Trigger decides when, during a transfer, the board loses power. The
// session calls Sent and Acked from its own goroutine between blocks;
// triggers that wait on something else (a timer, the console, an input's
// edge) start goroutines in Arm and call fire from there.
type Trigger interface {
	// Arm is called when the transfer starts. An error means the cut
	// could never fire (an input that cannot be set up): the update is
	// not started, and the cycle is the bench's failure.
	Arm(ctx context.Context, fire Fire) error
	// Sent is called right after block num was sent, at at.
	Sent(num uint32, at time.Time)
	// Acked is called when block num's acknowledgement arrived at at;
	// true cuts power now, before the next block is sent.
	Acked(num uint32, at time.Time) bool
	// Disarm stops the trigger's goroutines; it must be safe to call twice.
	Disarm()
	// String describes the cut, e.g. "after_block 17".
	String() string
}

// An AckTrigger is a Trigger that fires once a given block is
// acknowledged (after_block). A transfer in bursts (Q-Block1) ends a burst
// at that block and waits for the device's answer to it, so that nothing
// after it is on the wire when power goes.
type AckTrigger interface {
	Trigger
	AckBlock() uint32
}

// A WorkTrigger is a Trigger that stays armed after the device has taken
// the last block, through the device's own update work (verifying, copying
// or swapping slots, confirming the new image) until the new image runs:
// a cut placed in a bootloader's copy or swap. Other triggers are disarmed
// with the last block.
type WorkTrigger interface {
	Trigger
	ThroughDeviceWork()
}

// A Cut is one planned power cut: it describes itself, makes the cycle's
// trigger on a bound board, and judges where the cut landed. Package jobs
// defines one per cut kind.
type Cut interface {
	// String describes the plan: "after_block 17", "random during_block 3
	// +1ms", "none".
	String() string
	// Block is the planned block, -1 when the cut is not placed by block.
	Block() int64
	// Trigger makes the cycle's trigger for b; nil when no cut is planned.
	Trigger(b *Board) (Trigger, error)
	// Missed judges the cut that happened (nil: none fired) against the
	// plan: "" when it landed where planned (or, with no cut planned, when
	// none fired), otherwise why not, in a sentence.
	Missed(c *results.CutInfo) string
}
