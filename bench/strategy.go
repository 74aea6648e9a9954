package bench

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
)

// Strategy takes one bound board through the cycles of a campaign: from
// whatever state it is in to the baseline image, through the update with
// the cycle's planned cut and the device's recovery, to an outcome —
// checked against the cut that really happened — and back to a working
// board by reflashing it over its probe when it bricked.
type Strategy struct {
	Board *Board
	// Baseline is the image every cycle starts from; Update the image
	// pushed with a cut.
	Baseline, Update []byte
	SZX              uint8
	// Profile overrides the board's update profile ("" keeps it).
	Profile         string
	OffTime         time.Duration
	RecoveryTimeout time.Duration
	// Reflash: a bricked board is reflashed over its probe.
	Reflash bool
	// Accepted are the outcomes that pass for this board.
	Accepted []results.Outcome
	// Run names the run in the cycle records.
	Run string
	// Brownout makes every cut a brownout (nil: power off); Sample is how
	// often a measuring supply is read during the update (0: never).
	Brownout *Brownout
	Sample   time.Duration
	// BaselineVersion and UpdateVersion are the version strings the
	// images report, for a board whose version check reads one
	// (boards.VersionCheck); "" takes them from the images' headers.
	BaselineVersion, UpdateVersion string

	baseDigest, updDigest [32]byte
	baseImg, updImg       Image
	described             bool
	cost                  cycleCost // the cycle's probe uses and erases (chain.go)
}

func (s *Strategy) digests() {
	if s.baseDigest == ([32]byte{}) {
		s.baseDigest, s.updDigest = sha256.Sum256(s.Baseline), sha256.Sum256(s.Update)
		s.baseImg = Image{Digest: s.baseDigest[:], Version: cmp.Or(s.BaselineVersion, headerVersion(s.Baseline))}
		s.updImg = Image{Digest: s.updDigest[:], Version: cmp.Or(s.UpdateVersion, headerVersion(s.Update))}
	}
}

func (s *Strategy) profile() string {
	if s.Profile != "" {
		return s.Profile
	}
	return s.Board.Profile
}

// PlanText describes a cycle's planned cut as its record names it: the
// cut, and how power is cut when it is not switched off.
func PlanText(cut Cut, bo *Brownout) string {
	if bo != nil && cut.String() != "none" {
		return cut.String() + ", " + bo.String()
	}
	return cut.String()
}

// Cycle runs cycle n with the planned cut and classifies it. A non-nil
// fault means the bench can no longer vouch for the board (its power
// switch failed, or the baseline could not be restored): the caller takes
// the board out of the run. An interrupted cycle (ctx ended) returns a
// zero record and no fault.
func (s *Strategy) Cycle(ctx context.Context, n int, cut Cut) (_ results.Cycle, fault error) {
	s.digests()
	b := s.Board
	start := b.hub.Clock().Since()
	c := results.Cycle{
		Run: s.Run, Board: b.Name, Cycle: n, Plan: PlanText(cut, s.Brownout), PlannedBlock: cut.Block(),
		Blocks: int(fwproto.Blocks(uint32(len(s.Update)), s.SZX)), BlockSize: fwproto.BlockSize(s.SZX), ImageSize: len(s.Update),
		Start: start, Attempts: 1,
	}
	s.cost.begin(ctx, b)
	b.sec.start()
	b.linkCycle(n)
	finish := func(o results.Outcome, reason string) results.Cycle {
		b.linkSummary()
		c.Outcome, c.Reason = o, reason
		c.Accepted = slices.Contains(s.Accepted, o) && o != results.MissedCut && o != results.InfraError
		// Security findings fail the cycle whatever its outcome; the
		// nonces the device used are kept with it, for the rest of the
		// campaign and a --resume.
		c.Findings = b.sec.take()
		if b.Nonces != nil {
			c.Nonces = b.Nonces.Drain()
		}
		s.cost.end(ctx, b, &c)
		c.End = b.hub.Clock().Since()
		if b.Console != nil {
			for _, l := range b.Console.Last(20) {
				c.LastConsole = append(c.LastConsole, l.Text)
			}
		}
		return c
	}
	if err := s.EnsureBaseline(ctx); err != nil {
		if ctx.Err() != nil {
			return results.Cycle{}, nil
		}
		// Every later cycle would start from an unknown image.
		return finish(results.InfraError, "baseline: "+err.Error()), fmt.Errorf("baseline: %w", err)
	}
	s.describe(ctx)
	if _, ok := cut.(WorkCut); ok && b.BootOps == 0 {
		if err := s.measureWork(ctx); err != nil {
			if ctx.Err() != nil {
				return results.Cycle{}, nil
			}
			return finish(results.InfraError, fmt.Sprintf("cut %s: %v", cut, err)), nil
		}
		if err := s.EnsureBaseline(ctx); err != nil {
			if ctx.Err() != nil {
				return results.Cycle{}, nil
			}
			return finish(results.InfraError, "baseline: "+err.Error()), fmt.Errorf("baseline: %w", err)
		}
	}
	trig, err := cut.Trigger(b)
	if err != nil {
		return finish(results.InfraError, fmt.Sprintf("cut %s: %v", cut, err)), nil
	}
	before, metered := s.flashStats(ctx)
	res := b.Run(ctx, Update{
		Profile: s.profile(), Image: s.Update, Version: s.updImg.Version, SZX: s.SZX, Trigger: trig,
		OffTime: s.OffTime, RecoveryTimeout: s.RecoveryTimeout, Brownout: s.Brownout, Sample: s.Sample,
	})
	if ctx.Err() != nil {
		return results.Cycle{}, nil
	}
	c.Energy = res.Energy
	if metered && trig == nil && res.Err == nil {
		s.flashCost(ctx, before, res)
	}
	c.BlocksSent, c.BlocksResent, c.Resumes, c.Transfer = res.BlocksSent, res.BlocksResent, res.Resumes, res.Transfer
	c.Cut = res.Cut
	c.Secure = res.Secure
	c.RecoveryAnswer = res.Milestones[MilestoneCoAP]
	c.RecoveryVersion = res.Milestones[MilestoneVersion]
	c.Missed = cut.Missed(res.Cut)
	if res.Infra {
		if errors.Is(res.Err, ErrPower) {
			fault = res.Err
		}
		return finish(results.InfraError, res.Err.Error()), fault
	}
	outcome, reason := results.Updated, ""
	if res.Err != nil {
		var lost bool
		outcome, reason, lost = s.Classify(ctx, res)
		if lost {
			// The device went silent and its power switch is gone too: the
			// bench lost the board.
			return finish(outcome, reason), errors.New(reason)
		}
	}
	s.cost.outcome = outcome
	if c.Missed != "" {
		// A cut that did not happen where planned tested nothing the plan
		// names: an outcome the job would accept is not evidence of
		// surviving it. A failure stands, with where the cut really was.
		if slices.Contains(s.Accepted, outcome) {
			outcome, reason = results.MissedCut, c.Missed
		} else {
			reason += " (the planned cut missed: " + c.Missed + ")"
		}
	}
	if outcome == results.Bricked && s.Reflash {
		if err := s.reflash(ctx, "reflash"); err != nil {
			// The device's outcome stands; the next cycle tries to restore
			// the baseline once more and takes the board out of the run if
			// that fails too.
			reason += "; reflash failed: " + err.Error()
		} else {
			c.Reflashed = true
		}
	}
	return finish(outcome, reason), nil
}

// Classify looks at a device whose update did not finish. lost is set
// when the device is silent and its power switch is gone or reads off:
// the bench, not the device, lost the board.
func (s *Strategy) Classify(ctx context.Context, res *Result) (_ results.Outcome, _ string, lost bool) {
	s.digests()
	b := s.Board
	b.Phase(results.PhaseClassify)
	why := res.Err.Error()
	// The session already waited the recovery timeout for an answer; a
	// device that never answered gets one more short look.
	wait := min(s.RecoveryTimeout, 2*time.Second)
	if !res.Answering {
		wait = 300 * time.Millisecond
	}
	p := b.poll(nil)
	defer p.Close()
	var outcome results.Outcome
	var reason string
	err := p.until(ctx, wait, "no answer", func(ctx context.Context, c *fwclient.Client) error {
		v, verr := b.readVersion(ctx, c)
		if verr == nil {
			switch {
			case !b.checksVersion():
				// version: none cannot tell what runs; an update that did
				// not finish is not taken for one that did.
				outcome, reason = results.StuckRecovery, "the device answers, but the update did not finish and its version is not checked (version: none): "+why
			case b.runs(v, s.updImg, false):
				outcome, reason = results.Updated, ""
			case b.runs(v, s.baseImg, false):
				outcome, reason = results.RolledBack, "the old image runs: "+why
			default:
				outcome, reason = results.RolledBack, fmt.Sprintf("another image runs (%s): %s", versionName(v), why)
			}
			return nil
		}
		if b.VersionCheck != nil {
			if answered(verr) {
				outcome, reason = results.StuckRecovery, fmt.Sprintf("the device answers, but not with a version (%v): %s", verr, why)
				return pending(verr)
			}
			return verr
		}
		st, serr := c.State(ctx)
		if serr == nil {
			outcome, reason = results.StuckRecovery, fmt.Sprintf("recovery state %s next %d/%d: %s", st.State, st.Next, fwproto.Blocks(st.Size, st.SZX), why)
			return nil
		}
		if answered(verr) || answered(serr) {
			// Answering but neither app nor recovery state yet: it may
			// still be booting.
			outcome, reason = results.StuckRecovery, fmt.Sprintf("device answers %v: %s", errors.Join(verr, serr), why)
			return pending(verr)
		}
		return verr
	})
	if err == nil || outcome != "" {
		return outcome, reason, false
	}
	if ctx.Err() != nil {
		return results.InfraError, ctx.Err().Error(), false
	}
	if lost := s.switchLost(); lost != "" {
		return results.InfraError, lost + ": " + why, true
	}
	if res.Answering {
		return results.StuckRecovery, "device stopped answering: " + why, false
	}
	return results.Bricked, "no answer on CoAP within the recovery timeout: " + why, false
}

// switchLost asks a board's power switch, when it can be read back,
// whether it is still there and on: a device that stopped answering is
// bricked only if the bench still powers it. It returns "" when the
// switch answers on (or cannot be read back).
func (s *Strategy) switchLost() string {
	b := s.Board
	if !b.PoweredOn() {
		return ""
	}
	on, known, err := b.PowerState(context.Background(), 5*time.Second)
	switch {
	case err != nil:
		return fmt.Sprintf("board %s: no answer on CoAP and its power switch (%s) fails too: %v", b.Name, b.Power, err)
	case known && !on:
		return fmt.Sprintf("board %s: no answer on CoAP and its power switch (%s) reads off although the bench switched it on", b.Name, b.Power)
	}
	return ""
}

// EnsureBaseline powers the board and makes sure the baseline image runs:
// flashed over the probe when it does not and the board has one,
// otherwise pushed over CoAP.
func (s *Strategy) EnsureBaseline(ctx context.Context) error {
	s.digests()
	b := s.Board
	b.Phase(results.PhaseBaseline)
	if err := b.PowerOn(ctx); err != nil {
		return err
	}
	ver, err := s.waitApp(ctx)
	if err == nil && b.runs(ver, s.baseImg, false) {
		return nil
	}
	if b.Probe != nil {
		return s.reflash(ctx, "baseline")
	}
	switch {
	case err == nil:
	case b.VersionCheck == nil:
		return fmt.Errorf("board %s does not run an application and has no probe: %w", b.Name, err)
	case !answered(err) && !errors.Is(err, errNotYet):
		return fmt.Errorf("board %s does not answer and has no probe: %w", b.Name, err)
	}
	// A plain CoAP device that answers, but not with the baseline's
	// version (or whose version is not checked), is given the baseline.
	res := b.Run(ctx, Update{Profile: s.profile(), Image: s.Baseline, Version: s.baseImg.Version, SZX: s.SZX, RecoveryTimeout: s.RecoveryTimeout})
	if res.Err != nil {
		return fmt.Errorf("restoring the baseline over CoAP (the board has no probe): %w", res.Err)
	}
	return nil
}

// waitApp waits until the application answers /fw/version.
func (s *Strategy) waitApp(ctx context.Context) (fwproto.Version, error) {
	p := s.Board.poll(nil)
	defer p.Close()
	var v fwproto.Version
	err := p.until(ctx, s.RecoveryTimeout, "no application answer", func(ctx context.Context, c *fwclient.Client) error {
		var err error
		if v, err = s.Board.readVersion(ctx, c); answered(err) {
			return stop(err) // answering, but not an app
		}
		return err
	})
	return v, err
}

// reflash writes the baseline over the probe: erase what the board's
// flash entry names (records, journal, counters and the app slot), write
// the image at the app address, reset, and wait for the app.
func (s *Strategy) reflash(ctx context.Context, why string) error {
	b := s.Board
	if b.Probe == nil {
		return fmt.Errorf("board %s has no probe", b.Name)
	}
	f := b.Flash
	if f == nil {
		return fmt.Errorf("board %s: flash: app_address is needed to flash over the probe", b.Name)
	}
	b.Phase(results.PhaseReflash)
	start := time.Now()
	s.cost.probeStart(start)
	defer s.cost.probeStop() // a write that failed counts up to its failure
	if !b.PoweredOn() {
		if err := b.PowerOn(ctx); err != nil {
			return err
		}
	}
	if er, ok := b.Probe.(probes.Eraser); ok && f.EraseFrom != 0 {
		end := f.Base + uint32(f.Size)
		if err := er.Erase(ctx, f.EraseFrom, end-f.EraseFrom); err != nil {
			return fmt.Errorf("%s over %s: %w", why, b.Probe, err)
		}
	}
	if err := b.Probe.Flash(ctx, f.AppAddr, s.Baseline, nil); err != nil {
		return fmt.Errorf("%s over %s: %w", why, b.Probe, err)
	}
	reset := time.Now()
	if err := b.Probe.Reset(ctx); err != nil {
		return fmt.Errorf("%s over %s: reset: %w", why, b.Probe, err)
	}
	b.bootAt.Store(reset.UnixNano()) // the reset is a boot
	s.cost.probeStop()
	e := b.Event(results.FlashProgress)
	e.Text, e.Dur = why, time.Since(start)
	b.Emit(e)
	v, err := s.waitApp(ctx)
	if err != nil {
		return fmt.Errorf("after %s: %w", why, err)
	}
	if !b.runs(v, s.baseImg, true) {
		return fmt.Errorf("after %s the board runs %s, not the baseline", why, versionName(v))
	}
	return nil
}

// A WorkCut is a Cut placed in the device's own update work, after the
// last block (its trigger is a WorkTrigger). Before the first one on a
// board the bench measures that work (Board.BootOps) with one update
// without a cut.
type WorkCut interface {
	Cut
	DeviceWork()
}

// describe puts the board's update strategy on the timeline once per
// run: the label of its bench entry, or what the device says of itself,
// with the flash it needs and what it caches for an interrupted update.
func (s *Strategy) describe(ctx context.Context) {
	if s.described {
		return
	}
	s.described = true
	b := s.Board
	attrs := map[string]string{}
	label := ""
	if b.Entry != nil {
		label = b.Entry.Strategy
	}
	if m, ok := b.Witness.(power.FlashMeter); ok {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		c, err := m.UpdateCost(wctx, len(s.Update), fwproto.BlockSize(s.SZX))
		cancel()
		if err == nil {
			if label == "" {
				label = c.Strategy
			}
			attrs["space"] = strconv.Itoa(c.Space)
			attrs["cache"] = strconv.Itoa(c.Cache)
		}
	}
	if label == "" {
		return
	}
	attrs["strategy"] = label
	e := b.Event(results.DeviceInfo)
	e.Text, e.Attrs = label, attrs
	b.Emit(e)
}

// flashStats reads the device's flash counters, when it keeps them.
func (s *Strategy) flashStats(ctx context.Context) (power.FlashStats, bool) {
	return s.Board.flashStats(ctx)
}

// flashStats reads the device's flash counters, when it keeps them
// (power.FlashMeter).
func (b *Board) flashStats(ctx context.Context) (power.FlashStats, bool) {
	m, ok := b.Witness.(power.FlashMeter)
	if !ok {
		return power.FlashStats{}, false
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := m.FlashStats(wctx)
	return st, err == nil
}

// flashCost records what an update without a cut cost the device's
// flash, and the length of its own update work (Board.BootOps).
func (s *Strategy) flashCost(ctx context.Context, before power.FlashStats, res *Result) {
	after, ok := s.flashStats(ctx)
	if !ok || after.Ops < before.Ops {
		return
	}
	b := s.Board
	maxErases := uint32(0)
	for i := range min(len(after.Erases), len(before.Erases)) {
		maxErases = max(maxErases, after.Erases[i]-before.Erases[i])
	}
	attrs := map[string]string{
		"programmed": strconv.FormatInt(after.Programmed-before.Programmed, 10),
		"erased":     strconv.FormatInt(after.Erased-before.Erased, 10),
		"max_erases": strconv.FormatUint(uint64(maxErases), 10),
	}
	if res.OpsAtLastOK && after.Ops >= res.OpsAtLast {
		ops := after.Ops - res.OpsAtLast
		attrs["boot_ops"] = strconv.FormatUint(ops, 10)
		if b.BootOps == 0 {
			b.BootOps = ops
		}
	}
	e := b.Event(results.FlashCost)
	e.Attrs = attrs
	b.Emit(e)
}

// measureWork runs one update without a cut to count the flash
// operations of the device's own update work, which cuts placed in it
// are spread over.
func (s *Strategy) measureWork(ctx context.Context) error {
	b := s.Board
	before, ok := s.flashStats(ctx)
	if !ok {
		return fmt.Errorf("board %s does not count its flash operations, which a cut in the device's own update work is placed by (a simulated board does; on real hardware cut on the flash-busy line: on_gpio)", b.Name)
	}
	e := b.Event(results.Note)
	e.Text = "measuring the device's own update work: one update without a cut"
	b.Emit(e)
	res := b.Run(ctx, Update{Profile: s.profile(), Image: s.Update, SZX: s.SZX, OffTime: s.OffTime, RecoveryTimeout: s.RecoveryTimeout})
	if res.Err != nil {
		return fmt.Errorf("the update without a cut that measures the device's own update work failed: %w", res.Err)
	}
	s.flashCost(ctx, before, res)
	if b.BootOps == 0 {
		return fmt.Errorf("board %s: the device's own update work could not be measured (no flash operations after the last block)", b.Name)
	}
	return nil
}

// headerVersion is the version in an image's header when it is in
// fudbench's format, else "".
func headerVersion(img []byte) string {
	if h, err := fwimage.ParseHeader(img); err == nil {
		return h.Version
	}
	return ""
}
