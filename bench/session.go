package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/results"
)

// Profile is how an image is pushed.
type Profile string

// Profiles.
const (
	// Block1 is a plain RFC 7959 PUT (or POST) from block 0 to any path.
	Block1 Profile = "block1"
	// Resumable is the protocol of package fwproto: prepare, recovery,
	// resume from the device's next block.
	Resumable Profile = "resumable"
)

// Recovery milestones, recorded as results.Recovery events and in
// Result.Milestones (time since power came back).
const (
	MilestoneConsole  = "first-console-byte"
	MilestoneBanner   = "recovery-banner"
	MilestoneCoAP     = "coap-reachable"
	MilestoneResumed  = "transfer-resumed"
	MilestoneVersion  = "new-version-running"
	MilestoneAppUp    = "app-running"
	MilestoneStuck    = "stuck"
	defaultRecoveryTO = 30 * time.Second
)

// Update is one update of one board, possibly with a power cut.
type Update struct {
	Profile Profile
	Image   []byte
	SZX     uint8
	Tag     []byte // resumable; default derived from the cycle
	Path    string // block1: default /fw
	Method  codes.Code
	Trigger Trigger // nil: no cut
	OffTime time.Duration
	// RecoveryTimeout bounds each wait for the device after power comes
	// back, and the wait for the new version.
	RecoveryTimeout time.Duration
	// NoVerify ends the update when the last block is taken, without
	// waiting for the device to run the new image: for any CoAP server
	// that is not a device (block1 to a URL).
	NoVerify bool
	// MaxRestarts bounds how often a block1 transfer restarts from block 0
	// and how often a resumable transfer resynchronises (a device that
	// answers 4.08 forever cannot hang the bench).
	MaxRestarts int
}

// Cut describes the cut a trigger fired.
type Cut struct {
	Trigger string        `json:"trigger"`
	T       time.Duration `json:"t"`       // on the run's clock, switch call returned
	Latency time.Duration `json:"latency"` // triggering event to switch call returned
	// LastAcked is the last block acknowledged before the cut (-1 none);
	// InFlight the block sent and not yet acknowledged (-1 none).
	LastAcked int64 `json:"last_acked"`
	InFlight  int64 `json:"in_flight"`
}

// Result is what an update did.
type Result struct {
	Cut          *Cut                     `json:"cut,omitempty"`
	Resumes      []uint32                 `json:"resumes,omitempty"` // next reported by recovery, per resume
	BlocksSent   int                      `json:"blocks_sent"`
	BlocksResent int                      `json:"blocks_resent"` // sends of a block already acknowledged
	Blocks       uint32                   `json:"blocks"`
	Transfer     time.Duration            `json:"transfer"` // time spent sending blocks
	Milestones   map[string]time.Duration `json:"milestones,omitempty"`
	Final        *fwproto.Version         `json:"final,omitempty"` // what runs at the end
	Answering    bool                     `json:"answering"`       // the device answered after the cut
	Recovery     *fwproto.State           `json:"recovery,omitempty"`
	// Infra is set when the bench itself failed (power driver, socket):
	// never the device's fault.
	Infra bool  `json:"infra,omitempty"`
	Err   error `json:"-"`
}

// session is the state of one Update run.
type session struct {
	b       *Board
	u       Update
	digest  [32]byte
	res     *Result
	mu      sync.Mutex
	cutOnce sync.Once
	pending bool // a cut fired and recovery has not run yet
	firing  bool // fire has started (it may still be switching power)
	firedCh chan struct{}
	cancel  context.CancelFunc // cancels the in-flight transfer
	acked   int64
	sent    int64 // block in flight, -1 none
	maxAck  int64
	cutErr  error
	powerOn results.Event
	// pollWait bounds the next poll attempt: Endpoint.Poll, doubled
	// after each attempt that timed out, up to maxPollWait.
	pollWait time.Duration
}

// maxPollWait caps the backed-off bound of a poll attempt.
const maxPollWait = time.Second

// Run pushes u.Image to the board, firing u.Trigger's cut, recovering and
// finishing the update. It returns what happened; Result.Err is set when
// the update did not end with the new image running.
func (b *Board) Run(ctx context.Context, u Update) *Result {
	if u.RecoveryTimeout == 0 {
		u.RecoveryTimeout = defaultRecoveryTO
	}
	if u.MaxRestarts == 0 {
		u.MaxRestarts = 8
	}
	if u.Path == "" {
		u.Path = fwproto.PathFW
	}
	if u.Method == 0 {
		u.Method = codes.PUT
	}
	if u.Tag == nil {
		u.Tag = []byte(strconv.Itoa(b.Cycle() & 0xffffff))
	}
	s := &session{b: b, u: u, digest: sha256.Sum256(u.Image), res: &Result{Milestones: map[string]time.Duration{}},
		firedCh: make(chan struct{}), acked: -1, sent: -1, maxAck: -1}
	s.res.Blocks = fwproto.Blocks(uint32(len(u.Image)), u.SZX)
	if err := s.run(ctx); err != nil {
		s.res.Err = err
	}
	if u.Trigger != nil {
		u.Trigger.Disarm()
	}
	return s.res
}

func (s *session) emit(k results.Kind, block int64, text string, dur time.Duration) {
	e := s.b.Event(k)
	e.Block, e.Text, e.Dur = block, text, dur
	s.b.Emit(e)
}

func (s *session) infra(err error) error {
	s.res.Infra = true
	return err
}

// fire is the trigger's callback: power off now, from the caller's
// goroutine, then stop the transfer.
func (s *session) fire(at time.Time, why string) {
	s.cutOnce.Do(func() {
		defer close(s.firedCh)
		s.mu.Lock()
		s.firing = true
		s.mu.Unlock()
		ev, err := s.b.PowerOff(context.Background())
		ret := ev.Wall // stamped when the switch call returned, before the event is written
		s.mu.Lock()
		cut := &Cut{Trigger: why, T: ev.T, Latency: ret.Sub(at), LastAcked: s.acked, InFlight: s.sent}
		s.res.Cut = cut
		s.cutErr = err
		cancel := s.cancel
		s.pending = true
		s.mu.Unlock()
		e := s.b.Event(results.CutTrigger)
		e.Block, e.Dur, e.Text = cut.LastAcked, cut.Latency, why
		e.Attrs = map[string]string{"in_flight": strconv.FormatInt(cut.InFlight, 10)}
		s.b.Emit(e)
		if cancel != nil {
			cancel()
		}
	})
}

// cutFired reports whether a cut is pending. A transfer error seen while
// the trigger is still switching power (the device vanishing is what
// caused the error) waits for the switch, so it is not taken for a
// failure of the update.
func (s *session) cutFired() bool {
	s.mu.Lock()
	firing := s.firing
	s.mu.Unlock()
	if firing {
		<-s.firedCh
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

func (s *session) run(ctx context.Context) error {
	c, err := s.b.Dial(ctx)
	if err != nil {
		return s.infra(err)
	}
	defer func() { c.Close() }()

	s.emit(results.UpdateStart, -1, string(s.u.Profile), 0)
	next := uint32(0)
	szx := s.u.SZX
	if s.u.Profile == Resumable {
		if err := s.prepare(ctx, &c); err != nil {
			return err
		}
		st, err := s.waitRecovery(ctx, &c, false)
		if err != nil {
			return err
		}
		next = st.Next
	}
	if s.u.Trigger != nil {
		s.u.Trigger.Arm(ctx, s.fire)
	}
	restarts := 0
	for {
		done, n, newSZX, err := s.transfer(ctx, c, next, szx)
		szx = newSZX
		if done {
			if s.u.Trigger != nil {
				s.u.Trigger.Disarm()
			}
			if !s.cutFired() {
				break
			}
			// The cut landed after the last block (a timed trigger that
			// outlived a fast transfer): recover like any other cut.
			if s.cutErr != nil {
				return s.infra(s.cutErr)
			}
			if next, err = s.recover(ctx, &c); err != nil {
				return err
			}
			s.resetCut()
			if next >= s.res.Blocks {
				break
			}
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !s.cutFired() {
			var rs *coap.ResyncError
			if errors.As(err, &rs) {
				err = s.checkResync(rs.State, restarts)
				if err == nil {
					restarts++
					s.res.Resumes = append(s.res.Resumes, rs.State.Next)
					s.emit(results.Resync, int64(rs.State.Next), "", 0)
					next = rs.State.Next
					continue
				}
			}
			if err != nil {
				s.emit(results.UpdateError, int64(n), err.Error(), 0)
			}
			return err
		}
		// The cut came: power back after the off-time, follow recovery.
		if s.u.Trigger != nil {
			s.u.Trigger.Disarm()
		}
		if s.cutErr != nil {
			return s.infra(s.cutErr)
		}
		if restarts >= s.u.MaxRestarts {
			return fmt.Errorf("board %s: gave up after %d restarts", s.b.Name, restarts)
		}
		restarts++
		next, err = s.recover(ctx, &c)
		if err != nil {
			return err
		}
		s.resetCut()
	}
	if s.u.NoVerify {
		return nil
	}
	return s.waitNewVersion(ctx, &c)
}

// checkResync decides whether a 4.08 answer's state may be followed: it
// must describe this transfer (a device is not trusted to name a block
// beyond the image), and a device that asks again and again is given up
// on after MaxRestarts resynchronisations, so it cannot hold the bench in
// a loop.
func (s *session) checkResync(st fwproto.State, restarts int) error {
	if s.u.Profile != Resumable {
		return fmt.Errorf("board %s: device answered 4.08 with a resume state to a block1 transfer", s.b.Name)
	}
	p := fwproto.Prepare{Size: uint32(len(s.u.Image)), Digest: s.digest[:], SZX: s.u.SZX, Tag: s.u.Tag}
	if !fwproto.SameTransfer(st, p) {
		return fmt.Errorf("board %s: device asked to resynchronise another transfer (size %d szx %d, state %s)", s.b.Name, st.Size, st.SZX, st.State)
	}
	if st.Next > s.res.Blocks {
		return fmt.Errorf("board %s: device asked to resynchronise at block %d, beyond the %d blocks of the image", s.b.Name, st.Next, s.res.Blocks)
	}
	if restarts >= s.u.MaxRestarts {
		return fmt.Errorf("board %s: gave up after %d resynchronisations (device asks for block %d again)", s.b.Name, restarts, st.Next)
	}
	return nil
}

// resetCut lets the transfer continue after a cut; the trigger has fired
// and is disarmed, so it cannot fire again.
func (s *session) resetCut() {
	s.mu.Lock()
	s.sent = -1
	s.pending = false
	s.mu.Unlock()
}

// prepare checks the running version and posts the transfer parameters.
func (s *session) prepare(ctx context.Context, c **coap.Client) error {
	v, err := (*c).Version(ctx)
	if err != nil {
		return s.deviceOrInfra(err, "read version before the update")
	}
	s.emit(results.Note, -1, "running "+v.Version, 0)
	p := fwproto.Prepare{Size: uint32(len(s.u.Image)), Digest: s.digest[:], SZX: s.u.SZX, Tag: s.u.Tag}
	if err := (*c).Prepare(ctx, p); err != nil {
		return s.deviceOrInfra(err, "prepare")
	}
	return nil
}

// deviceOrInfra labels an error: a CoAP status is the device's answer, a
// transport error after the device answered before is the device's too
// (it stopped answering); only local failures are the bench's.
func (s *session) deviceOrInfra(err error, what string) error {
	return fmt.Errorf("board %s: %s: %w", s.b.Name, what, err)
}

// waitRecovery polls /fw/state until the device reports recovery mode.
func (s *session) waitRecovery(ctx context.Context, c **coap.Client, afterCut bool) (fwproto.State, error) {
	deadline := time.Now().Add(s.u.RecoveryTimeout)
	p := fwproto.Prepare{Size: uint32(len(s.u.Image)), Digest: s.digest[:], SZX: s.u.SZX, Tag: s.u.Tag}
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return fwproto.State{}, ctx.Err()
		}
		st, err := s.poll(ctx, c, func(cl *coap.Client, ctx context.Context) (any, error) { return cl.State(ctx) })
		if err == nil {
			st := st.(fwproto.State)
			if st.State == fwproto.StateFailed && st.Size == 0 {
				return st, fmt.Errorf("board %s: recovery has no transfer (prepare lost)", s.b.Name)
			}
			if !fwproto.SameTransfer(st, p) {
				return st, fmt.Errorf("board %s: recovery reports another transfer (size %d szx %d)", s.b.Name, st.Size, st.SZX)
			}
			s.res.Recovery = &st
			return st, nil
		}
		last = err
		var se *coap.StatusError
		if errors.As(err, &se) && se.Code == codes.NotFound {
			// Still the app: the reboot into recovery has not happened yet.
			time.Sleep(5 * time.Millisecond)
			continue
		}
	}
	return fwproto.State{}, fmt.Errorf("board %s: no recovery within %v: %w", s.b.Name, s.u.RecoveryTimeout, last)
}

// poll runs one request with a short timeout, redialling on transport
// errors: after a power cycle the old socket may be dead.
func (s *session) poll(ctx context.Context, c **coap.Client, f func(*coap.Client, context.Context) (any, error)) (any, error) {
	base := s.b.Endpoint.poll()
	s.pollWait = max(s.pollWait, base)
	pctx, cancel := context.WithTimeout(ctx, s.pollWait)
	defer cancel()
	v, err := f(*c, pctx)
	if err == nil {
		s.pollWait = base
		return v, nil
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		// No answer within the bound: a device (or a host) too busy to
		// answer in time gets a longer one next, rather than a flood of
		// requests and fresh sockets that only add to the load.
		s.pollWait = min(2*s.pollWait, maxPollWait)
	}
	var se *coap.StatusError
	if errors.As(err, &se) {
		return nil, err
	}
	if nc, derr := s.b.Dial(ctx); derr == nil {
		(*c).Close()
		*c = nc
	}
	return nil, err
}

func (s *session) mark(name string) {
	if _, ok := s.res.Milestones[name]; ok {
		return
	}
	if s.powerOn.Wall.IsZero() {
		return // milestones count from power coming back after a cut
	}
	since := time.Since(s.powerOn.Wall)
	s.res.Milestones[name] = since
	s.emit(results.Recovery, -1, name, since)
}

// transfer sends blocks from next until the last one is taken (done), the
// cut fires, or an error. It returns the block it stopped at.
func (s *session) transfer(ctx context.Context, c *coap.Client, next uint32, szx uint8) (done bool, at uint32, newSZX uint8, err error) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	if s.cutFired() {
		return false, next, szx, nil
	}
	tag := s.u.Tag
	if s.u.Profile == Block1 {
		tag = nil
	}
	n := fwproto.Blocks(uint32(len(s.u.Image)), szx)
	start := time.Now()
	defer func() { s.res.Transfer += time.Since(start) }()
	// Each retransmission of a block (RFC 7252 §4.2: no acknowledgement
	// within the timeout) is on the timeline; the client calls this on
	// this goroutine, inside SendBlock.
	var cur uint32
	c.OnRetransmit = func(k int) {
		s.emit(results.BlockRetry, int64(cur), fmt.Sprintf("retransmission %d", k), 0)
	}
	defer func() { c.OnRetransmit = nil }()
	for num := next; num < n; num++ {
		cur = num
		s.mu.Lock()
		s.sent = int64(num)
		resent := int64(num) <= s.maxAck
		s.mu.Unlock()
		s.res.BlocksSent++
		if resent {
			s.res.BlocksResent++
		}
		sentAt := time.Now()
		s.emit(results.BlockSent, int64(num), "", 0)
		if s.u.Trigger != nil {
			s.u.Trigger.Sent(num, sentAt)
		}
		resp, err := c.SendBlock(tctx, s.u.Path, s.u.Image, num, szx, tag)
		ackAt := time.Now()
		if s.cutFired() {
			return false, num, szx, nil
		}
		if err != nil {
			var se *coap.StatusError
			if resp != nil && resp.Code == codes.RequestEntityTooLarge && num == 0 && s.u.Profile == Block1 {
				if resp.Block1 != nil && resp.Block1.SZX < szx {
					// The device asked for smaller blocks: start again with them.
					s.emit(results.Note, 0, fmt.Sprintf("device asked for %d-byte blocks", fwproto.BlockSize(resp.Block1.SZX)), 0)
					szx, n, num = resp.Block1.SZX, fwproto.Blocks(uint32(len(s.u.Image)), resp.Block1.SZX), ^uint32(0)
					continue
				}
				if resp.Size1 != 0 && int64(resp.Size1) < int64(len(s.u.Image)) {
					return false, num, szx, fmt.Errorf("board %s: device takes at most %d bytes (4.13), image is %d: %w", s.b.Name, resp.Size1, len(s.u.Image), err)
				}
				if resp.Size1 != 0 {
					return false, num, szx, fmt.Errorf("board %s: device refused the %d-byte image with 4.13 although it announces room for %d bytes: %w", s.b.Name, len(s.u.Image), resp.Size1, err)
				}
			}
			if errors.As(err, &se) {
				return false, num, szx, fmt.Errorf("board %s: %w", s.b.Name, err)
			}
			var rs *coap.ResyncError
			if errors.As(err, &rs) {
				return false, num, szx, err
			}
			return false, num, szx, fmt.Errorf("board %s: block %d: %w", s.b.Name, num, err)
		}
		if resp.Block1 != nil && resp.Block1.SZX == szx && resp.Block1.Num != num {
			// An acknowledgement of another block is not one of this block.
			return false, num, szx, fmt.Errorf("board %s: block %d: device acknowledged block %d", s.b.Name, num, resp.Block1.Num)
		}
		s.mu.Lock()
		s.acked = int64(num)
		s.sent = -1
		s.maxAck = max(s.maxAck, int64(num))
		s.mu.Unlock()
		s.emit(results.BlockAcked, int64(num), "", ackAt.Sub(sentAt))
		if resp.Block1 != nil && resp.Block1.SZX < szx && s.u.Profile == Block1 && num < n-1 {
			// RFC 7959 §2.5: continue at the next offset in the smaller size.
			off := (num + 1) * uint32(fwproto.BlockSize(szx))
			szx = resp.Block1.SZX
			n = fwproto.Blocks(uint32(len(s.u.Image)), szx)
			num = off/uint32(fwproto.BlockSize(szx)) - 1
			continue
		}
		if s.u.Trigger != nil && s.u.Trigger.Acked(num, ackAt) {
			s.fire(ackAt, s.u.Trigger.String())
			return false, num, szx, nil
		}
	}
	s.emit(results.UpdateDone, int64(n-1), "", 0)
	return true, n, szx, nil
}

// recover powers the board back on after the off-time and follows it
// until the transfer can continue; it returns the block to continue from.
func (s *session) recover(ctx context.Context, c **coap.Client) (uint32, error) {
	if s.u.OffTime > 0 {
		select {
		case <-time.After(s.u.OffTime):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	name := s.b.Name
	lines, stop := s.b.hub.Watch(func(e *results.Event) bool { return e.Kind == results.ConsoleLine && e.Board == name })
	defer stop()
	if err := s.b.PowerOn(ctx); err != nil {
		return 0, s.infra(err)
	}
	s.powerOn = s.b.Event(results.PowerOn)
	// Console milestones come from the timeline as the lines arrive.
	stopConsole := make(chan struct{})
	defer close(stopConsole)
	milestones := make(chan string, 4)
	go func() {
		for {
			select {
			case e := <-lines:
				milestones <- MilestoneConsole
				if s.b.Patterns.Recovery != nil && s.b.Patterns.Recovery.MatchString(e.Text) {
					milestones <- MilestoneBanner
				}
			case <-stopConsole:
				return
			}
		}
	}()
	drain := func() {
		for {
			select {
			case m := <-milestones:
				s.mark(m)
			default:
				return
			}
		}
	}
	deadline := time.Now().Add(s.u.RecoveryTimeout)
	var last error
	for time.Now().Before(deadline) {
		drain()
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		v, err := s.poll(ctx, c, func(cl *coap.Client, ctx context.Context) (any, error) { return cl.Boot(ctx) })
		if err != nil {
			last = err
			time.Sleep(2 * time.Millisecond)
			continue
		}
		boot := v.(fwproto.Boot)
		s.mark(MilestoneCoAP)
		s.res.Answering = true
		drain()
		switch {
		case s.u.Profile == Resumable && boot.Mode == fwproto.ModeRecovery:
			st, err := s.waitRecovery(ctx, c, true)
			if err != nil {
				return 0, err
			}
			s.res.Resumes = append(s.res.Resumes, st.Next)
			s.mark(MilestoneResumed)
			return st.Next, nil
		case s.u.Profile == Resumable && boot.Mode == fwproto.ModeApp:
			// Cut before the record was written, or after the new image
			// booted: see what runs.
			ver, err := (*c).Version(ctx)
			if err != nil {
				continue
			}
			if bytes.Equal(ver.Digest, s.digest[:]) {
				return s.res.Blocks, nil
			}
			s.mark(MilestoneAppUp)
			if err := s.prepare(ctx, c); err != nil {
				return 0, err
			}
			st, err := s.waitRecovery(ctx, c, true)
			if err != nil {
				return 0, err
			}
			s.res.Resumes = append(s.res.Resumes, st.Next)
			s.mark(MilestoneResumed)
			return st.Next, nil
		default:
			// block1 has no resume: start again from block 0, unless the
			// new image already runs.
			if ver, err := (*c).Version(ctx); err == nil && bytes.Equal(ver.Digest, s.digest[:]) {
				return s.res.Blocks, nil
			}
			s.mark(MilestoneAppUp)
			s.mark(MilestoneResumed)
			return 0, nil
		}
	}
	drain()
	if last != nil {
		return 0, fmt.Errorf("board %s: no usable answer on CoAP within %v after power-on: %w", s.b.Name, s.u.RecoveryTimeout, last)
	}
	return 0, fmt.Errorf("board %s: no answer on CoAP within %v after power-on", s.b.Name, s.u.RecoveryTimeout)
}

// waitNewVersion waits until the new image runs.
func (s *session) waitNewVersion(ctx context.Context, c **coap.Client) error {
	deadline := time.Now().Add(s.u.RecoveryTimeout)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		v, err := s.poll(ctx, c, func(cl *coap.Client, ctx context.Context) (any, error) { return cl.Version(ctx) })
		if err == nil {
			ver := v.(fwproto.Version)
			s.res.Final = &ver
			if bytes.Equal(ver.Digest, s.digest[:]) {
				s.mark(MilestoneVersion)
				return nil
			}
			last = fmt.Errorf("running %s, not the new image", ver.Version)
		} else {
			last = err
			var se *coap.StatusError
			if errors.As(err, &se) && se.Code == codes.NotFound {
				if st, err := (*c).State(ctx); err == nil {
					s.res.Recovery = &st
					if st.State == fwproto.StateFailed {
						return fmt.Errorf("board %s: recovery failed the new image", s.b.Name)
					}
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	return fmt.Errorf("board %s: new version not running within %v: %w", s.b.Name, s.u.RecoveryTimeout, last)
}
