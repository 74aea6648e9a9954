package bench

import (
	"context"
	"time"

	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// SetImages replaces the image the next cycles start from and the image
// they push, and forgets the digests computed from the old ones: a chain
// of images (each cycle updating from the image of the cycle before to a
// new one) moves the strategy on with it before every cycle. The images
// report the versions in their headers (BaselineVersion and
// UpdateVersion are cleared).
func (s *Strategy) SetImages(baseline, update []byte) {
	s.Baseline, s.Update = baseline, update
	s.BaselineVersion, s.UpdateVersion = "", ""
	s.baseDigest, s.updDigest = [32]byte{}, [32]byte{}
}

// DeviceUpdated reports whether the last cycle left the device running
// the update, as the device was classified before the cycle was judged
// against its plan: a cycle whose cut missed is recorded missed-cut, but
// its device may well run the new image.
func (s *Strategy) DeviceUpdated() bool { return s.cost.outcome == results.Updated }

// cycleCost is what one cycle cost the board's probe and flash, and how
// its device ended.
type cycleCost struct {
	probeUses int
	probeTime time.Duration
	probeAt   time.Time // start of the probe write under way; zero when none
	before    power.FlashStats
	metered   bool
	outcome   results.Outcome
}

// begin starts a cycle's accounting: the device's flash counters before
// anything of the cycle is done.
func (a *cycleCost) begin(ctx context.Context, b *Board) {
	*a = cycleCost{}
	a.before, a.metered = b.flashStats(ctx)
}

// probeStart counts a write over the probe starting at t; probeStop ends
// it (once, whatever calls it again).
func (a *cycleCost) probeStart(t time.Time) {
	a.probeStop()
	a.probeUses++
	a.probeAt = t
}

func (a *cycleCost) probeStop() {
	if !a.probeAt.IsZero() {
		a.probeTime += time.Since(a.probeAt)
		a.probeAt = time.Time{}
	}
}

// end puts the cycle's probe uses and, when the device counts them, its
// sector erases on the cycle's record.
func (a *cycleCost) end(ctx context.Context, b *Board, c *results.Cycle) {
	a.probeStop()
	c.ProbeUses, c.ProbeTime = a.probeUses, a.probeTime
	if !a.metered {
		return
	}
	after, ok := b.flashStats(context.WithoutCancel(ctx))
	if !ok {
		return
	}
	n := sectorErases(a.before, after)
	c.Erases = &n
}

// sectorErases is the sum over the sectors of each one's erases between
// two readings of a device's counters.
func sectorErases(before, after power.FlashStats) int {
	n := 0
	for i, e := range after.Erases {
		var was uint32
		if i < len(before.Erases) {
			was = before.Erases[i]
		}
		if e > was {
			n += int(e - was)
		}
	}
	return n
}
