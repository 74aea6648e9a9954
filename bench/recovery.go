package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/results"
)

// This file follows a device from the power cut to the point where the
// transfer can go on: the device's own record of the cut, the off-time,
// power back, the recovery milestones, and the block to continue from.

// witness reads the device's own record of the cut that just happened,
// when the board keeps one. The device is off: nothing here is on a
// clock that matters.
func (s *session) witness(ctx context.Context) {
	if s.b.Witness == nil || s.res.Cut == nil || s.res.Cut.Device != nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rec, ok, err := s.b.Witness.LastCut(wctx)
	if err != nil || !ok || rec.Seq <= s.witnessed {
		return
	}
	s.res.Cut.Device = &results.DeviceCut{Writing: rec.Writing, LastAcked: rec.LastAcked, Flash: rec.Flash}
	e := s.b.Event(results.Note)
	e.Text = fmt.Sprintf("device's record of the cut: writing block %d, last acknowledged %d, flash %s", rec.Writing, rec.LastAcked, rec.Flash)
	s.b.Emit(e)
}

// recover powers the board back on after the off-time and follows it
// until the transfer can continue; it returns the block to continue from.
func (s *session) recover(ctx context.Context) (uint32, error) {
	name := s.b.Name
	if s.u.Brownout != nil {
		// The supply is back at its nominal voltage already: the device
		// reset (below its brownout threshold) or ran on. Recovery counts
		// from the restore; console lines since then are its evidence.
		s.witness(ctx)
		s.b.Phase(results.PhaseRecovery)
		s.powerOn = s.restored
	} else {
		s.b.Phase(results.PhaseOff)
		offEnd := time.Now().Add(s.u.OffTime)
		s.witness(ctx)
		if wait := time.Until(offEnd); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	lines, stopWatch := s.b.hub.Watch(func(e *results.Event) bool { return e.Kind == results.ConsoleLine && e.Board == name })
	defer stopWatch()
	if s.u.Brownout == nil {
		s.b.Phase(results.PhaseRecovery)
		if err := s.b.PowerOn(ctx); err != nil {
			return 0, s.infra(err)
		}
		s.powerOn = s.b.Event(results.PowerOn)
	}
	s.expectState()
	if s.secured() && s.res.Secure == nil {
		s.awaitFirst, s.recBytes = true, s.b.sec.bytes()
	}
	// Console milestones carry the instant their line's first byte was
	// read, whenever this goroutine gets to look at them: a device whose
	// console comes up long before its network must not have its console
	// figures stamped when CoAP answers.
	drain := func() {
		for {
			select {
			case e := <-lines:
				s.mark(MilestoneConsole, e.Wall)
				if s.b.Patterns.Recovery != nil && s.b.Patterns.Recovery.MatchString(e.Text) {
					s.mark(MilestoneBanner, e.Wall)
				}
			default:
				return
			}
		}
	}
	defer drain()
	var boot fwproto.Boot
	var answeredAt time.Time
	err := s.p.until(ctx, s.u.RecoveryTimeout, "no usable answer on CoAP after power-on", func(ctx context.Context, c *fwclient.Client) error {
		drain()
		var err error
		boot, err = c.Boot(ctx)
		answeredAt = time.Now()
		if err != nil && answered(err) && s.u.Profile == boards.ProfileBlock1 {
			// Any answer means a plain block1 device is up.
			boot = fwproto.Boot{}
			return nil
		}
		return err
	})
	drain()
	if err != nil {
		return 0, err
	}
	s.mark(MilestoneCoAP, answeredAt)
	s.res.Answering = true
	c, err := s.p.Client(ctx)
	if err != nil {
		return 0, s.infra(err)
	}
	switch {
	case s.u.Profile == boards.ProfileResumable && boot.Mode == fwproto.ModeRecovery:
	case s.u.Profile == boards.ProfileResumable && boot.Mode == fwproto.ModeApp:
		// Cut before the record was written, or after the new image
		// booted: see what runs.
		var ver fwproto.Version
		err := s.again(ctx, "GET /fw/version", func() (err error) { ver, err = c.Version(ctx); return err })
		if err != nil {
			return 0, fmt.Errorf("board %s: read version after power-on: %w", s.b.Name, err)
		}
		if bytes.Equal(ver.Digest, s.digest[:]) || s.delivered {
			// The new image runs, or the device chose what runs after a cut
			// in its own update work: waitNewVersion tells which.
			return s.res.Blocks, nil
		}
		s.mark(MilestoneAppUp, time.Now())
		if err := s.again(ctx, "the prepare", func() error { return c.Prepare(ctx, s.prep()) }); err != nil {
			return 0, fmt.Errorf("board %s: prepare again: %w", s.b.Name, err)
		}
	default:
		// block1 has no resume: start again from block 0, unless the new
		// image already runs.
		if s.delivered {
			return s.res.Blocks, nil
		}
		var ver fwproto.Version
		if err := s.again(ctx, "the version check", func() (err error) { ver, err = s.b.readVersion(ctx, c); return err }); err == nil && s.b.runs(ver, s.want(), false) {
			return s.res.Blocks, nil
		}
		s.mark(MilestoneAppUp, time.Now())
		s.mark(MilestoneResumed, time.Now())
		s.b.Phase(results.PhaseTransfer)
		return 0, nil
	}
	st, err := s.waitRecovery(ctx)
	if err != nil {
		return 0, err
	}
	s.res.Resumes = append(s.res.Resumes, st.Next)
	s.mark(MilestoneResumed, time.Now())
	s.b.Phase(results.PhaseTransfer)
	return st.Next, nil
}

// mark records a milestone seen at the instant at, once per update.
func (s *session) mark(name string, at time.Time) {
	if name == MilestoneResumed || name == MilestoneVersion {
		s.meter.recovered(at)
	}
	if _, ok := s.res.Milestones[name]; ok {
		return
	}
	if s.powerOn.Wall.IsZero() || at.Before(s.powerOn.Wall) {
		return // milestones count from power coming back after a cut
	}
	since := at.Sub(s.powerOn.Wall)
	s.res.Milestones[name] = since
	s.emit(results.Recovery, -1, name, since)
}

// secured reports whether the board's link is secured (DTLS or OSCORE).
func (s *session) secured() bool {
	return s.b.Endpoint.PSK != nil || s.b.Endpoint.OSCORE != nil
}

// profileName names the board's security for the record.
func (s *session) profileName() string {
	switch ep := s.b.Endpoint; {
	case ep.OSCORE != nil:
		return "oscore"
	case ep.PSK != nil && ep.PSK.Cache != nil:
		return "dtls/" + ep.PSK.Cache.Mode()
	case ep.PSK != nil:
		return "dtls"
	}
	return ""
}

// replay sends the last block request the device acknowledged before the
// cut once more, exactly as it went on the wire, once the device has
// accepted its first block after the cut: a device that acts on it has
// lost its replay protection with its RAM. Refused, ignored or challenged
// with Echo is right.
func (s *session) replay(ctx context.Context, c *fwclient.Client) {
	if ctx.Err() != nil {
		return
	}
	cp := s.captured
	if cp == nil || s.res.Secure != nil && s.res.Secure.Replay != "" {
		return
	}
	s.captured = nil
	wait := min(max(4*s.b.Endpoint.poll(), 100*time.Millisecond), time.Second)
	verdict, err := c.Replay(ctx, cp, wait)
	if err != nil {
		e := s.b.Event(results.Note)
		e.Text = "replay of a request from before the cut not sent: " + err.Error()
		s.b.Emit(e)
		return
	}
	if s.res.Secure == nil {
		s.res.Secure = &results.SecureRecovery{Profile: s.profileName()}
	}
	s.res.Secure.Replay = verdict
	e := s.b.Event(results.Note)
	e.Text = "request from before the cut sent again: " + verdict
	s.b.Emit(e)
	if verdict == coap.ReplayAccepted {
		detail := fmt.Sprintf("after the cut the device acted on a block request captured before it (%s)", cp)
		if s.b.sec.finding(results.FindingReplayAccepted, detail) {
			e := s.b.Event(results.Security)
			e.Text = results.FindingReplayAccepted + ": " + detail
			s.b.Emit(e)
		}
	}
}

// firstBlock records what getting back to the secured transfer cost:
// power-on to the first block the device accepted after the cut.
func (s *session) firstBlock(at time.Time) {
	s.awaitFirst = false
	if s.powerOn.Wall.IsZero() {
		return
	}
	if s.res.Secure == nil {
		s.res.Secure = &results.SecureRecovery{Profile: s.profileName()}
	}
	sr := s.res.Secure
	sr.FirstBlock = at.Sub(s.powerOn.Wall)
	sr.Bytes = int(s.b.sec.bytes() - s.recBytes)
	sr.Handshakes, sr.Echo = s.b.sec.since(s.powerOn.Wall)
}
