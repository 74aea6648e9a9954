package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/results"
)

// Recovery milestones, recorded as results.Recovery events and in
// Result.Milestones: time from power coming back to the evidence (a
// console line's first byte, a CoAP answer).
const (
	MilestoneConsole  = "first-console-byte"
	MilestoneBanner   = "recovery-banner"
	MilestoneCoAP     = "coap-reachable"
	MilestoneResumed  = "transfer-resumed"
	MilestoneVersion  = "new-version-running"
	MilestoneAppUp    = "app-running"
	defaultRecoveryTO = 30 * time.Second
)

// Update is one update of one board, possibly with a power cut.
type Update struct {
	// Profile is boards.ProfileResumable or boards.ProfileBlock1; "" is
	// the board's.
	Profile string
	Image   []byte
	// Version is the version string the image reports when it runs, for
	// a board whose version check reads one (boards.VersionCheck).
	Version string
	SZX     uint8
	Tag     []byte // resumable; default derived from the cycle
	Path    string // block1: default the board's, else /fw
	Method  codes.Code
	Trigger Trigger // nil: no cut
	OffTime time.Duration
	// RecoveryTimeout bounds each wait for the device after power comes
	// back, and the wait for the new version.
	RecoveryTimeout time.Duration
	// Connect bounds the first contact with the device before the update
	// (0: RecoveryTimeout). A device that never answers is Unreachable.
	Connect time.Duration
	// NoVerify ends the update when the last block is taken, without
	// waiting for the device to run the new image: for any CoAP server
	// that is not a device (block1 to a URL).
	NoVerify bool
	// Brownout makes the cut a brownout (the supply dropped to a level
	// for a while) instead of off; nil cuts power off. It needs a supply
	// that sets its voltage (power.Supply).
	Brownout *Brownout
	// Sample is how often a measuring supply (power.Meter) is read during
	// the update; 0 does not read it.
	Sample time.Duration
	// MaxRestarts bounds how often a block1 transfer restarts from block 0
	// and how often a resumable transfer resynchronises (a device that
	// answers 4.08 forever cannot hang the bench).
	MaxRestarts int
}

// Result is what an update did.
type Result struct {
	Cut          *results.CutInfo         `json:"cut,omitempty"`
	Resumes      []uint32                 `json:"resumes,omitempty"` // next reported by recovery, per resume
	BlocksSent   int                      `json:"blocks_sent"`
	BlocksResent int                      `json:"blocks_resent"` // sends of a block already acknowledged
	Blocks       uint32                   `json:"blocks"`
	Transfer     time.Duration            `json:"transfer"` // time spent sending blocks
	Milestones   map[string]time.Duration `json:"milestones,omitempty"`
	Start        *fwproto.Boot            `json:"start,omitempty"` // what the device said before the update
	Final        *fwproto.Version         `json:"final,omitempty"` // what runs at the end
	Answering    bool                     `json:"answering"`       // the device answered after the cut
	// Secure is what the first recovery after a cut cost on a secured
	// link (nil over plain CoAP, or when no cut fired).
	Secure   *results.SecureRecovery `json:"secure,omitempty"`
	Recovery *fwproto.State          `json:"recovery,omitempty"`
	// OpsAtLast is the device's flash operation count when the last block
	// was first sent, on a device that counts them (power.FlashMeter);
	// OpsAtLastOK says it was read.
	OpsAtLast   uint64 `json:"-"`
	OpsAtLastOK bool   `json:"-"`
	// Verified is the time from the start of the update to the new image
	// answering; zero when it never did.
	Verified time.Duration `json:"verified,omitempty"`
	// Infra is set when the bench itself failed (power driver, socket, a
	// trigger that could not arm): never the device's fault.
	Infra bool `json:"infra,omitempty"`
	// Energy is what the board drew during the update, from its supply's
	// readings (nil without them).
	Energy *results.Energy `json:"energy,omitempty"`
	// Unreachable is set when the device never answered at all.
	Unreachable bool  `json:"unreachable,omitempty"`
	Err         error `json:"-"`
}

// maxLostExchanges bounds how often one block (or one other request) is
// sent again as a new request after every retransmission of an exchange
// went unanswered.
const maxLostExchanges = 4

// silenceBound is how long a device may stay silent, in lost exchanges,
// before the bench stops sending again: the recovery timeout (the job's
// bound on a device's silence), but at least three times as long as one
// exchange with all its retransmissions lasts, so that on a lossy link a
// block always gets two more chances. A device that died is declared so
// after about three exchanges' time.
func silenceBound(recovery, exchange time.Duration) time.Duration {
	return max(recovery, 3*exchange)
}

// again runs one exchange f, and runs it again as a new request when every
// retransmission of it went unanswered, up to maxLostExchanges times and
// within silenceBound: on a lossy link a lost exchange is the link's, not
// the device's. Only
// requests a device may receive twice go through it (reads, and the
// prepare, which an application and a recovery bootloader both accept
// again).
func (s *session) again(ctx context.Context, what string, f func() error) error {
	start := time.Now()
	for lost := 0; ; lost++ {
		t := time.Now()
		err := f()
		if err == nil || !errors.Is(err, coap.ErrNoResponse) || ctx.Err() != nil || lost >= maxLostExchanges || time.Since(start) >= silenceBound(s.u.RecoveryTimeout, time.Since(t)) {
			return err
		}
		s.emit(results.Note, -1, fmt.Sprintf("no answer to %s after every retransmission: sent again as a new request (%d of %d)", what, lost+1, maxLostExchanges), 0)
	}
}

// session is the state of one Update run.
type session struct {
	b       *Board
	u       Update
	digest  [32]byte
	res     *Result
	p       *poller
	mu      sync.Mutex
	cutOnce sync.Once
	pending bool // a cut fired and recovery has not run yet
	firing  bool // fire has started (it may still be switching power)
	// browning is set while a brownout cut is under way: blocks go on,
	// an error waits for the verdict on whether the device reset.
	browning bool
	firedCh  chan struct{}
	cancel   context.CancelFunc // cancels the in-flight transfer
	acked    int64
	sent     int64 // block in flight, -1 none
	maxAck   int64
	cutErr   error
	// witnessed is the device's cut count before the transfer, when the
	// board keeps a record of its cuts.
	witnessed int
	powerOn   results.Event
	// restored is the instant a brownout cut's supply was back at its
	// nominal voltage (zero for an off cut).
	restored results.Event
	// meter reads a measuring supply during the update (nil: none).
	meter *sampler
	// captured is the last block request the device acknowledged, as it
	// went on the wire: sent again after a cut, it must be refused.
	captured *coap.Captured
	// awaitFirst is set from power-on after a cut until the first block
	// the device accepts; recBytes is the wire count at power-on.
	awaitFirst bool
	recBytes   int64
	// delivered is set when a cut came after the device had taken the
	// last block, during its own update work: whatever image it then runs
	// is its verdict, and the transfer is not started again.
	delivered bool
	started   time.Time // update.start
}

// Run pushes u.Image to the board, firing u.Trigger's cut, recovering and
// finishing the update. It returns what happened; Result.Err is set when
// the update did not end with the new image running.
func (b *Board) Run(ctx context.Context, u Update) *Result {
	if u.RecoveryTimeout == 0 {
		u.RecoveryTimeout = defaultRecoveryTO
	}
	if u.Connect == 0 {
		u.Connect = u.RecoveryTimeout
	}
	if u.MaxRestarts == 0 {
		u.MaxRestarts = 8
	}
	if u.Profile == "" {
		u.Profile = b.Profile
	}
	if u.Path == "" {
		u.Path = b.Path
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
		firedCh: make(chan struct{}), acked: -1, sent: -1, maxAck: -1, p: b.poll(nil)}
	defer s.p.Close()
	s.res.Blocks = fwproto.Blocks(uint32(len(u.Image)), u.SZX)
	s.meter = b.startSampler(ctx, u.Sample)
	if err := s.run(ctx); err != nil {
		s.res.Err = err
	}
	if u.Trigger != nil {
		u.Trigger.Disarm()
	}
	s.res.Energy = s.meter.finish()
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
// goroutine, then stop the transfer. A brownout cut instead lets the
// transfer go on while the supply sags, as an update server that knows
// nothing of it would; it becomes a cut the bench recovers from only when
// the device reset (see brownoutReset).
func (s *session) fire(at time.Time, why string) {
	s.cutOnce.Do(func() {
		defer close(s.firedCh)
		bo := s.u.Brownout
		s.mu.Lock()
		if bo == nil {
			s.firing = true
		} else {
			s.browning = true
		}
		// Where the transfer was when the trigger fired: during a
		// brownout it goes on.
		acked, sent := s.acked, s.sent
		s.mu.Unlock()
		var ev results.Event
		var err error
		reset := true
		if bo != nil {
			why += ", " + bo.String()
			watch := s.watchReset()
			ev, s.restored, err = s.b.brownout(context.Background(), *bo)
			if err == nil {
				reset = watch.decide(*bo)
			}
			watch.stop()
		} else {
			ev, err = s.b.PowerOff(context.Background())
		}
		ret := ev.Wall // stamped when the switch call returned, before the event is written
		s.mu.Lock()
		if bo == nil {
			acked, sent = s.acked, s.sent
		}
		cut := &results.CutInfo{Trigger: why, T: ev.T, Latency: ret.Sub(at), LastAcked: acked, InFlight: sent}
		s.res.Cut = cut
		s.cutErr = err
		cancel := s.cancel
		s.firing, s.browning = true, false
		s.pending = reset
		s.mu.Unlock()
		if reset && err == nil {
			s.meter.cut(ev.Wall)
		}
		e := s.b.Event(results.CutTrigger)
		e.Block, e.Dur, e.Text = cut.LastAcked, cut.Latency, why
		e.Attrs = map[string]string{"in_flight": strconv.FormatInt(cut.InFlight, 10)}
		if bo != nil {
			e.Attrs["device_reset"] = strconv.FormatBool(reset)
		}
		s.b.Emit(e)
		if reset && cancel != nil {
			cancel()
		}
	})
}

// sagging reports whether a brownout cut is under way: a block the
// device answered then is taken as any other.
func (s *session) sagging() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.browning
}

// fired reports whether the update's cut has fired (it fires once per
// update): a trigger is not asked again once it has, even when the
// transfer passes its point once more after a restart.
func (s *session) fired() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.firing
}

// cutFired reports whether a cut is pending. A transfer error seen while
// the trigger is still switching power (the device vanishing is what
// caused the error) waits for the switch, so it is not taken for a
// failure of the update.
func (s *session) cutFired() bool {
	s.mu.Lock()
	firing := s.firing || s.browning
	s.mu.Unlock()
	if firing {
		<-s.firedCh
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}

func (s *session) run(ctx context.Context) error {
	e := s.b.Event(results.UpdateStart)
	s.started = e.Wall
	e.Text = s.u.Profile
	e.Attrs = map[string]string{"blocks": strconv.FormatUint(uint64(s.res.Blocks), 10)}
	s.b.Emit(e)
	next := uint32(0)
	szx := s.u.SZX
	if s.b.Witness != nil {
		// The device's cut count now, so the record of this cycle's cut is
		// told from older ones. A witness that does not answer only costs
		// the device's view of the cut.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if rec, ok, err := s.b.Witness.LastCut(wctx); err == nil && ok {
			s.witnessed = rec.Seq
		}
		cancel()
	}
	// The trigger is armed from the start of the update: a cut timed to
	// the console or to the flash-busy line may come while the device
	// writes its recovery record or reboots into recovery, the moments an
	// in-place scheme most needs tested. Block and time cuts count from
	// the transfer.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	s.mu.Lock()
	s.cancel = pcancel
	s.mu.Unlock()
	if s.u.Trigger != nil {
		if err := s.u.Trigger.Arm(ctx, s.fire); err != nil {
			return s.infra(fmt.Errorf("board %s: arming the cut (%s): %w", s.b.Name, s.u.Trigger, err))
		}
	}
	var err error
	if s.u.Profile == boards.ProfileResumable {
		var st fwproto.State
		if err = s.prepare(pctx); err == nil {
			st, err = s.waitRecovery(pctx)
		}
		next = st.Next
	} else {
		err = s.contact(pctx)
	}
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	case !s.cutFired():
		return err
	default:
		// The cut came before the transfer (prepare, the reboot into
		// recovery): what failed was the device being cut, not the
		// device or the bench.
		s.res.Infra, s.res.Unreachable = false, false
		if s.u.Trigger != nil {
			s.u.Trigger.Disarm()
		}
		if s.cutErr != nil {
			return s.infra(s.cutErr)
		}
		if next, err = s.recover(ctx); err != nil {
			return err
		}
		s.resetCut()
	}
	s.b.Phase(results.PhaseTransfer)
	restarts := 0
	for {
		c, err := s.p.Client(ctx)
		if err != nil {
			return s.infra(err)
		}
		done, n, newSZX, err := s.transfer(ctx, c, next, szx)
		szx = newSZX
		if done {
			work, isWork := s.u.Trigger.(WorkTrigger)
			if s.u.Trigger != nil && (!isWork || s.fired()) {
				s.u.Trigger.Disarm()
			}
			if isWork && !s.fired() {
				// The cut is placed in the device's own update work: wait for
				// the new image with the trigger armed.
				err := s.waitWork(ctx)
				if !s.cutFired() {
					work.Disarm()
					return err
				}
				work.Disarm()
			}
			if isWork && s.cutFired() {
				// The device had the whole image when its power went.
				s.delivered = true
			}
			if !s.cutFired() {
				break
			}
			// The cut landed after the last block (a timed trigger that
			// outlived a fast transfer): recover like any other cut.
			if s.cutErr != nil {
				return s.infra(s.cutErr)
			}
			if next, err = s.recover(ctx); err != nil {
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
		if !s.cutFired() && err == nil {
			// Nothing may end a transfer short of its last block but a cut
			// or an error: taking it for a finished update would be a
			// false pass.
			return s.infra(fmt.Errorf("board %s: the transfer stopped at block %d of %d with no cut and no error", s.b.Name, n, s.res.Blocks))
		}
		if !s.cutFired() {
			var rs *fwclient.ResyncError
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
			if s.corruptAfterCut(err, n) && restarts < s.u.MaxRestarts {
				// The device kept its promise (it verified the image and
				// refused it): what the cut corrupted is sent again, as
				// an update server would, with a new prepare.
				restarts++
				s.emit(results.Note, int64(n), fmt.Sprintf("the device refused the image after the cut (%v): the update starts over with a new prepare", err), 0)
				if err = s.prepare(ctx); err == nil {
					var st fwproto.State
					st, err = s.waitRecovery(ctx)
					next = st.Next
				}
				if err == nil {
					s.res.Resumes = append(s.res.Resumes, next)
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
		if _, isWork := s.u.Trigger.(WorkTrigger); isWork && s.restartedWithImage(ctx, n) {
			s.delivered = true
		}
		restarts++
		next, err = s.recover(ctx)
		if err != nil {
			return err
		}
		s.resetCut()
		if s.delivered {
			break
		}
	}
	if s.u.NoVerify {
		return nil
	}
	return s.waitNewVersion(ctx)
}

// contact makes sure the device answers before a block1 transfer starts:
// GET /boot, and any CoAP answer at all (a plain CoAP server answers 4.04)
// counts. A device that never answers is Unreachable.
func (s *session) contact(ctx context.Context) error {
	err := s.p.until(ctx, s.u.Connect, "first answer", func(ctx context.Context, c *fwclient.Client) error {
		if s.b.VersionCheck != nil {
			// A plain CoAP device: what runs, by its check; any answer
			// will do.
			v, err := s.b.readVersion(ctx, c)
			if err == nil && v.Version != "" {
				s.emit(results.Note, -1, "running "+v.Version, 0)
			}
			if err == nil || answered(err) || errors.Is(err, errNotYet) {
				return nil
			}
			return err
		}
		boot, err := c.Boot(ctx)
		if err == nil {
			s.res.Start = &boot
			if v, err := c.Version(ctx); err == nil {
				s.emit(results.Note, -1, "running "+v.Version, 0)
			}
			return nil
		}
		if answered(err) {
			return nil // answering, if not as a fwproto device
		}
		return err
	})
	if err != nil && ctx.Err() == nil {
		return s.unreachable(err)
	}
	return err
}

// unreachable says a device did not answer: the bench's matter when
// nothing at all came back, the device's when it sent something the
// client could not take for an answer.
func (s *session) unreachable(err error) error {
	if errors.Is(err, coap.ErrRefused) {
		return s.infra(err)
	}
	if s.p.Heard() {
		return fmt.Errorf("board %s: read version before the update: the device sends, but no answer to the request: %w", s.b.Name, err)
	}
	s.res.Unreachable = true
	return s.infra(fmt.Errorf("board %s unreachable at %s: %w", s.b.Name, s.b.Endpoint.DeviceAddr(), err))
}

// corruptAfterCut reports whether err, the answer to block at, is a
// resumable device refusing the received image by its digest (4.00 to
// the last block) in an update where a cut came first: the cut,
// typically a brownout, left wrong bits in flash, and the device's own
// check caught them.
func (s *session) corruptAfterCut(err error, at uint32) bool {
	var de *fwclient.DeviceError
	if s.res.Cut == nil || s.u.Profile != boards.ProfileResumable || at+1 != s.res.Blocks || !errors.As(err, &de) {
		return false
	}
	return de.Code == codes.BadRequest
}

// checkResync decides whether a 4.08 answer's state may be followed: it
// must describe this transfer (a device is not trusted to name a block
// beyond the image), and a device that asks again and again is given up
// on after MaxRestarts resynchronisations, so it cannot hold the bench in
// a loop.
func (s *session) checkResync(st fwproto.State, restarts int) error {
	if s.u.Profile != boards.ProfileResumable {
		return fmt.Errorf("board %s: device answered 4.08 with a resume state to a block1 transfer", s.b.Name)
	}
	if !fwproto.SameTransfer(st, s.prep()) {
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

// want is what the device reports when the new image runs.
func (s *session) want() Image { return Image{Digest: s.digest[:], Version: s.u.Version} }

func (s *session) prep() fwproto.Prepare {
	return fwproto.Prepare{Size: uint32(len(s.u.Image)), Digest: s.digest[:], SZX: s.u.SZX, Tag: s.u.Tag}
}

// prepare asks the device where it is and posts the transfer parameters.
// Both modes accept them: an application reboots into recovery, a
// recovery bootloader (left there by an interrupted update) replaces its
// transfer and restarts.
func (s *session) prepare(ctx context.Context) error {
	var v fwproto.Version
	err := s.p.until(ctx, s.u.Connect, "first answer", func(ctx context.Context, c *fwclient.Client) error {
		var err error
		if v, err = c.Version(ctx); answered(err) {
			// An answer that is not a version will not become one by
			// waiting: the device is in recovery, or misbehaves.
			return stop(err)
		}
		return err
	})
	if err != nil && ctx.Err() != nil {
		return err
	}
	c, cerr := s.p.Client(ctx)
	if cerr != nil {
		return s.infra(cerr)
	}
	var se *coap.StatusError
	switch {
	case err == nil:
		s.res.Start = &fwproto.Boot{Mode: fwproto.ModeApp, Version: v.Version}
		s.emit(results.Note, -1, "running "+v.Version, 0)
	case errors.As(err, &se) && se.Code == codes.NotFound:
		// No application: a recovery bootloader answers /fw/state.
		var st fwproto.State
		serr := s.again(ctx, "GET /fw/state", func() (err error) { st, err = c.State(ctx); return err })
		if serr != nil {
			return fmt.Errorf("board %s: read version before the update: %w (and /fw/state: %v)", s.b.Name, err, serr)
		}
		s.res.Start = &fwproto.Boot{Mode: fwproto.ModeRecovery}
		s.emit(results.Note, -1, fmt.Sprintf("in recovery (state %s, next %d/%d): preparing the update there", st.State, st.Next, fwproto.Blocks(st.Size, st.SZX)), 0)
	case answered(err):
		return fmt.Errorf("board %s: read version before the update: %w", s.b.Name, err)
	default:
		return s.unreachable(err)
	}
	// The device reboots into recovery with the session's state, when it
	// caches it.
	s.expectState()
	if err := s.again(ctx, "the prepare", func() error { return c.Prepare(ctx, s.prep()) }); err != nil {
		return fmt.Errorf("board %s: prepare: %w", s.b.Name, err)
	}
	return nil
}

// expectState tells the DTLS cache that the device is about to boot with
// the session's state restored: an unanswered continued session is the
// device still booting, not a device that lost the state, for half the
// recovery timeout.
func (s *session) expectState() {
	if psk := s.b.Endpoint.PSK; psk != nil {
		psk.Cache.ExpectState(time.Now().Add(min(s.u.RecoveryTimeout/2, 10*time.Second)))
	}
}

// waitRecovery polls /fw/state until the device reports recovery mode
// with this transfer.
func (s *session) waitRecovery(ctx context.Context) (fwproto.State, error) {
	var st fwproto.State
	p := s.prep()
	err := s.p.until(ctx, s.u.RecoveryTimeout, "no recovery", func(ctx context.Context, c *fwclient.Client) error {
		var err error
		if st, err = c.State(ctx); err != nil {
			return err // still the app (4.04) until it reboots into recovery
		}
		if st.State == fwproto.StateFailed && st.Size == 0 {
			return stop(fmt.Errorf("board %s: recovery has no transfer (prepare lost)", s.b.Name))
		}
		if !fwproto.SameTransfer(st, p) {
			// A recovery left from before the prepare took effect answers
			// with its old transfer until it reboots.
			return pending(fmt.Errorf("board %s: recovery reports another transfer (size %d szx %d)", s.b.Name, st.Size, st.SZX))
		}
		return nil
	})
	if err != nil {
		return st, err
	}
	s.res.Recovery = &st
	return st, nil
}

// transfer sends blocks from next until the last one is taken (done), the
// cut fires, or an error. It returns the block it stopped at.
func (s *session) transfer(ctx context.Context, c *fwclient.Client, next uint32, szx uint8) (done bool, at uint32, newSZX uint8, err error) {
	if s.b.QBlock != nil {
		return s.qtransfer(ctx, c, next, szx)
	}
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	if s.cutFired() {
		return false, next, szx, nil
	}
	tag := s.u.Tag
	if s.u.Profile == boards.ProfileBlock1 {
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
	// lost counts the exchanges of this block that got no answer at all;
	// heard is when the device last answered. A block goes again as a new
	// request while the device's silence is within silenceBound.
	lost, heard := 0, time.Now()
	for num := next; num < n; num++ {
		cur = num
		if num == n-1 && !s.res.OpsAtLastOK {
			s.opsAtLast(ctx)
		}
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
		if s.u.Trigger != nil && !s.fired() {
			s.u.Trigger.Sent(num, sentAt)
		}
		resp, err := c.SendBlock(tctx, s.u.Path, s.u.Image, num, szx, tag)
		ackAt := time.Now()
		if (err != nil || !s.sagging()) && s.cutFired() {
			if err == nil && num == n-1 && resp.Code == codes.Changed {
				// The device took the last block before the cut: the cut
				// came in its own work after it, however fast that was.
				s.emit(results.UpdateDone, int64(num), "", 0)
				return true, n, szx, nil
			}
			return false, num, szx, nil
		}
		if err != nil {
			if resp != nil && resp.Code == codes.RequestEntityTooLarge && num == 0 && s.u.Profile == boards.ProfileBlock1 {
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
			var rs *fwclient.ResyncError
			if errors.As(err, &rs) {
				return false, num, szx, err
			}
			if num == n-1 && answered(err) && (lost > 0 || resp != nil && resp.Retransmits > 0) {
				// The last block went again (retransmitted, or as a new
				// request) because its answer never came, and what answers
				// now refuses it: the device took it and moved on, a new
				// image that no longer knows the transfer. Whether the new
				// image runs is checked next.
				s.emit(results.Note, int64(num), fmt.Sprintf("the last block, sent again, is answered %v: the device had taken it", err), 0)
				s.emit(results.UpdateDone, int64(num), "", 0)
				return true, n, szx, nil
			}
			if answered(err) {
				return false, num, szx, fmt.Errorf("board %s: %w", s.b.Name, err)
			}
			if errors.Is(err, coap.ErrNoResponse) && ctx.Err() == nil && lost < maxLostExchanges && time.Since(heard) < silenceBound(s.u.RecoveryTimeout, ackAt.Sub(sentAt)) {
				// Every retransmission of the request or of its answer was
				// lost: on a lossy link that is the link, not the device.
				// The block goes again as a new request (a device answers a
				// block it already has again without writing it).
				lost++
				s.emit(results.BlockRetry, int64(num), fmt.Sprintf("no answer to block %d after every retransmission: sent again as a new request (%d of %d)", num, lost, maxLostExchanges), 0)
				num--
				continue
			}
			return false, num, szx, fmt.Errorf("board %s: block %d: %w", s.b.Name, num, err)
		}
		lost, heard = 0, ackAt
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
		if s.secured() {
			if s.awaitFirst {
				// Back to a secured transfer after the cut: what it cost,
				// then the replay check (after, so that its wait is not
				// counted).
				s.firstBlock(ackAt)
				s.replay(tctx, c)
			}
			s.captured = c.Capture()
		}
		if resp.Block1 != nil && resp.Block1.SZX < szx && s.u.Profile == boards.ProfileBlock1 && num < n-1 {
			// RFC 7959 §2.5: continue at the next offset in the smaller size.
			off := (num + 1) * uint32(fwproto.BlockSize(szx))
			szx = resp.Block1.SZX
			n = fwproto.Blocks(uint32(len(s.u.Image)), szx)
			num = off/uint32(fwproto.BlockSize(szx)) - 1
			continue
		}
		if s.u.Trigger != nil && !s.fired() && s.u.Trigger.Acked(num, ackAt) {
			s.fire(ackAt, s.u.Trigger.String())
			return false, num, szx, nil
		}
	}
	s.emit(results.UpdateDone, int64(n-1), "", 0)
	return true, n, szx, nil
}

// restartedWithImage tells, for a cut that came while the last block
// (num) was in flight, whether the device had taken it and restarted on
// its own before power went: its record of the cut then shows no transfer
// at all (nothing written, nothing acknowledged), as a device that reboots
// once it has the last block leaves it. Its answer may have been on the
// wire when the cut stopped the transfer.
func (s *session) restartedWithImage(ctx context.Context, num uint32) bool {
	if num != s.res.Blocks-1 || s.res.Cut == nil || s.res.Cut.InFlight != int64(num) {
		return false
	}
	s.witness(ctx)
	d := s.res.Cut.Device
	return d != nil && d.Writing == -1 && d.LastAcked == -1
}

// opsAtLast reads the device's flash operation count as the last block
// is about to be sent, on a device that counts them: the start of the
// device's own update work that boot_op cuts are placed in.
func (s *session) opsAtLast(ctx context.Context) {
	if st, ok := s.b.flashStats(ctx); ok {
		s.res.OpsAtLast, s.res.OpsAtLastOK = st.Ops, true
	}
}

// waitWork waits for the new image with a WorkTrigger still armed: the
// cut, when it comes, ends the wait.
func (s *session) waitWork(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	pending := s.pending || s.firing
	s.mu.Unlock()
	if pending {
		return nil
	}
	err := s.waitNewVersion(wctx)
	if s.cutFired() {
		return nil
	}
	return err
}

// waitNewVersion waits until the new image runs.
func (s *session) waitNewVersion(ctx context.Context) error {
	s.b.Phase(results.PhaseVerify)
	return s.p.until(ctx, s.u.RecoveryTimeout, "new version not running", func(ctx context.Context, c *fwclient.Client) error {
		ver, err := s.b.readVersion(ctx, c)
		if err == nil {
			s.res.Final = &ver
			if s.b.runs(ver, s.want(), true) {
				now := time.Now()
				s.mark(MilestoneVersion, now)
				s.res.Verified = now.Sub(s.started)
				e := s.b.Event(results.UpdateVerified)
				e.Dur = s.res.Verified
				s.b.Emit(e)
				return nil
			}
			if s.delivered {
				// Power came back after a cut in the device's own update
				// work, and the device chose the image it runs.
				return stop(fmt.Errorf("board %s: after a cut during the device's own update work it runs %s, not the new image", s.b.Name, versionName(ver)))
			}
			return pending(fmt.Errorf("running %s, not the new image", versionName(ver)))
		}
		var se *coap.StatusError
		if errors.As(err, &se) && se.Code == codes.NotFound && s.b.VersionCheck == nil {
			if st, serr := c.State(ctx); serr == nil {
				s.res.Recovery = &st
				if st.State == fwproto.StateFailed {
					return stop(fmt.Errorf("board %s: recovery failed the new image", s.b.Name))
				}
			}
		}
		return err
	})
}
