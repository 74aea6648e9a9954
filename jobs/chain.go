package jobs

import (
	"fmt"
	"math"
	"strconv"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/results"
)

// A chain job (baseline: chain) does not restore one baseline before
// every cycle: cycle n updates the device from the image of cycle n−1 to
// a new image, so the probe is only used to recover a board. The images
// are the links of a chain, built from the job's image: {build: …} spec:
// link k has sequence number image.seq − 1 + k, the version
// "<image.version>+c<k>" and the seed image.seed + k, so every link
// differs from the others and has a higher sequence number than every
// link before it (anti-rollback never refuses the next one).
//
// Per board the executor keeps the link the device is believed to run
// (current) and the next link never pushed. Before each attempt of a
// cycle — a missed cut's second run and every repeat included — the
// strategy gets current as its baseline and the next link as its update.
// After it: the device updated (even when the cycle is recorded
// missed-cut) → current is the update; anything else → current stays,
// and the next cycle's baseline step restores it over the probe if the
// device does not run it (a brick is reflashed with it at once when the
// job reflashes). Only current and the next link are held in memory.
//
// A resumed chain run cannot know what its boards run: each board goes
// on past every link its recorded cycles may have used (their attempts,
// and two more for a cycle interrupted in its second run), with current
// the link before, which its first cycle's baseline step restores over
// the probe unless the device already runs it.

// Chain builds the links of a chain job's images.
type Chain struct {
	spec BuildSpec
}

// maxChainLinks bounds the links a chain job of planned cycles may use,
// with room for each cycle run twice and for resumed runs: the versions
// and sequence numbers Prepare checks.
func maxChainLinks(planned int) int { return 4*planned + 16 }

// chainLinkSpec is link k's build spec.
func (j *Job) chainLinkSpec(k int) BuildSpec {
	b := *j.Image.Build
	return BuildSpec{Version: chainVersion(b.Version, k), Seq: b.Seq - 1 + uint32(k), Size: b.Size, Seed: b.Seed + int64(k)}
}

func chainVersion(v string, k int) string { return v + "+c" + strconv.Itoa(k) }

// checkChainImage refuses at decode what a chain cannot be built from:
// an image file (the bench builds every link), a sequence number below
// 2 (link 0, the image the chain starts from, has image.seq − 1, and
// anti-rollback needs it to be at least 1).
func (j *Job) checkChainImage() error {
	switch {
	case j.Image.Build == nil:
		return j.errAt(j.Image.At, "image: baseline: chain (at line %d) builds each cycle's image from image: {build: {version, seq, …}}, not from a file", j.chainAt.Line)
	case j.Image.Build.Seq < 2:
		return j.errAt(j.Image.At, "image.build.seq %d: baseline: chain starts from an image with seq %d − 1: want seq 2 or more (cycle n updates to seq n + seq − 1)", j.Image.Build.Seq, j.Image.Build.Seq)
	}
	return nil
}

// checkChain refuses at Prepare a chain whose links cannot all be built
// for planned cycles: a version that cannot carry the link number, a
// sequence number past 2³²−1.
func (j *Job) checkChain(planned int) error {
	b := j.Image.Build
	last := maxChainLinks(planned)
	if v := chainVersion(b.Version, last); len(v) > fwimage.MaxVersionLen {
		return j.errAt(j.Image.At, "image.build.version %q: baseline: chain versions link k as %q, and with %d cycles planned the links go up to %q, %d bytes: the image header holds %d; shorten the version",
			b.Version, chainVersion(b.Version, 0), planned, v, len(v), fwimage.MaxVersionLen)
	}
	if uint64(b.Seq)-1+uint64(last) > math.MaxUint32 {
		return j.errAt(j.Image.At, "image.build.seq %d: baseline: chain raises it by one per cycle, and with %d cycles planned it would pass %d", b.Seq, planned, uint32(math.MaxUint32))
	}
	return nil
}

// Link builds link k of the chain (signed with the development key).
func (c *Chain) Link(k int) ([]byte, error) {
	if k < 0 {
		return nil, fmt.Errorf("chain: link %d", k)
	}
	if uint64(c.spec.Seq)-1+uint64(k) > math.MaxUint32 {
		return nil, fmt.Errorf("chain: link %d: the sequence number would pass %d", k, uint32(math.MaxUint32))
	}
	j := Job{Image: ImageSpec{Build: &c.spec}}
	s := j.chainLinkSpec(k)
	img, err := fwimage.Build(fwimage.Spec{Version: s.Version, Seq: s.Seq, Size: s.Size, Seed: s.Seed}, fwimage.DevKey())
	if err != nil {
		return nil, fmt.Errorf("chain: link %d: %w", k, err)
	}
	return img, nil
}

// chainState is one board's place in the chain.
type chainState struct {
	c        *Chain
	next     int    // the link the next attempt pushes
	cur, upd []byte // the image the device is believed to run; the one being pushed
}

// newChainState starts a board at link 0, or, resuming, past every link
// its recorded cycles may have used.
func newChainState(c *Chain, recorded []results.Cycle) *chainState {
	st := &chainState{c: c, next: 1}
	if len(recorded) > 0 {
		used := 0
		for _, rc := range recorded {
			used += max(rc.Attempts, 1)
		}
		st.next = used + 3
	}
	return st
}

// step gives the strategy the image the device should run and the next
// link, built now: the only two images held.
func (st *chainState) step(s *bench.Strategy) error {
	if st.cur == nil {
		cur, err := st.c.Link(st.next - 1)
		if err != nil {
			return err
		}
		st.cur = cur
	}
	upd, err := st.c.Link(st.next)
	if err != nil {
		return err
	}
	st.next++
	st.upd = upd
	s.SetImages(st.cur, st.upd)
	return nil
}

// after moves current on when the attempt left the device running the
// update.
func (st *chainState) after(s *bench.Strategy) {
	if s.DeviceUpdated() {
		st.cur = st.upd
	}
	st.upd = nil
}
