package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fudbench/fudbench/bench/console"
	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/inputs"
	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
)

// Patterns recognise a board's console lines.
type Patterns struct {
	Boot     *regexp.Regexp // any boot banner
	App      *regexp.Regexp // the application is up
	Recovery *regexp.Regexp // the recovery bootloader is up
}

// SimPatterns match the simulated board's console; a board whose bench
// entry gives no patterns is read with them.
var SimPatterns = Patterns{
	Boot:     regexp.MustCompile(`^BL .*bootloader`),
	App:      regexp.MustCompile(`^APP .* ready$`),
	Recovery: regexp.MustCompile(`^RECOVERY ready`),
}

// Board is one board bound to a run: its drivers, opened, and the run's
// timeline.
type Board struct {
	Name    string
	Power   power.Switch     // nil when not wired
	Probe   probes.Flasher   // nil when not wired or not opened
	Console *console.Console // nil when not wired or not opened
	// Inputs are the board's trigger inputs, opened, by name.
	Inputs   map[string]inputs.Input
	Endpoint Endpoint
	// Profile is the update profile of the board's endpoint
	// (boards.ProfileResumable or boards.ProfileBlock1); Path the block1
	// resource.
	Profile string
	Path    string
	// QBlock sends the image with Q-Block1 (RFC 9177) in bursts with
	// these parameters (nil: Block1, one confirmable block at a time).
	QBlock  *coap.QBlock
	qprobed bool // the device answered the Q-Block probe
	// Flash is the board's flash as the bench file describes it (nil:
	// not described).
	Flash    *boards.Flash
	Patterns Patterns
	// VersionCheck is how a plain CoAP device is asked which image runs
	// (nil: fudbench's GET /fw/version); see version.go.
	VersionCheck *boards.VersionCheck
	// Witness is the device's own account of its power cuts, for boards
	// that keep one (nil otherwise): a simulated board's power input.
	Witness power.CutWitness
	// PowerTimeout bounds every call to the power switch (On, Off, the
	// safe state); 0 is DefaultPowerTimeout. A driver that does not
	// return in time is abandoned and the call fails with
	// power.ErrTimeout: a hung relay driver never stalls the run.
	PowerTimeout time.Duration
	// Entry is the board's bench file entry (nil for a board made in
	// code, such as a bare CoAP URL).
	Entry *boards.Board

	// BootOps is the number of flash operations the device does from the
	// moment the last block of an update is sent until the new image runs
	// (the last block's write, then the device's own update work: verify
	// marks, copy or swap, confirm), measured by the bench on an update
	// without a cut on a device that counts them (power.FlashMeter); 0
	// until measured. Cuts placed in that work (boot_op) are placed by it.
	BootOps uint64

	// Link is the impaired link between the bench and the device (nil:
	// none): Bind starts a forwarder for it, and Endpoint.Addr is the
	// forwarder's.
	Link *link.Config
	link *linkState
	log  *slog.Logger

	// Nonces keeps every AEAD nonce the device used over the campaign
	// (nil: not checked); Bind makes one for a secured endpoint.
	Nonces *NonceLedger
	sec    secWatch

	hub     *Hub
	cycle   atomic.Int64
	powered atomic.Bool // what the bench last did, for the safe state on abort
	// bootAt is when the bench last switched the board on from off (unix
	// nanoseconds): console lines since then name what runs.
	bootAt  atomic.Int64
	touched atomic.Bool
	// safe is set once the safe state was reached and nothing has
	// driven the power since: a second Safe does nothing.
	safe atomic.Bool
	// inflight is closed when the last driver call started in its own
	// goroutine returns: a call the bench gave up on (its context
	// cancelled) may still be in the driver, and the safe state lets it
	// land first (for a while), so that a power-on on its way cannot
	// arrive after the safe state's off.
	inflight atomic.Pointer[chan struct{}]
}

// DefaultPowerTimeout bounds a power switch call when Board.PowerTimeout
// is not set.
const DefaultPowerTimeout = 10 * time.Second

// ErrPower marks a failure of a board's power switch (an error or no
// answer within the power timeout): the bench no longer knows whether
// the board is powered.
var ErrPower = errors.New("power switch failed")

// Endpoint is how the bench reaches a device over CoAP.
type Endpoint struct {
	Addr string // host:port the bench sends to
	// Device is the device's own address when Addr is an impaired
	// link's forwarder ("": Addr is the device's).
	Device string
	PSK    *coap.PSK // nil: plain UDP
	// OSCORE protects every request end to end (nil: none); it goes with
	// plain UDP.
	OSCORE *coap.OSCORE
	DTLS   *boards.DTLS // where the identity is configured, for errors about it
	Tx     coap.Transmission
	// Poll bounds each attempt while waiting for a device to answer after
	// power-on; it sets the resolution of the recovery times (default
	// 20 ms; raise it for slow links such as 6LoWPAN).
	Poll time.Duration
}

// DeviceAddr is the device's address, through a link or not.
func (e Endpoint) DeviceAddr() string {
	if e.Device != "" {
		return e.Device
	}
	return e.Addr
}

func (e Endpoint) poll() time.Duration {
	if e.Poll > 0 {
		return e.Poll
	}
	return 20 * time.Millisecond
}

// NewBoard binds a board made in code (a device reached by URL) to a hub.
func NewBoard(name string, sw power.Switch, ep Endpoint, profile string, hub *Hub) *Board {
	if profile == "" {
		profile = boards.ProfileResumable
	}
	return &Board{Name: name, Power: sw, Endpoint: ep, Profile: profile, Patterns: SimPatterns, hub: hub}
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

// Phase marks the board entering a phase of its cycle (results.Phase…).
func (b *Board) Phase(name string) {
	e := b.Event(results.Phase)
	e.Text = name
	b.Emit(e)
}

// touch records that the bench drives the board's power: the safe state
// is due again at the end.
func (b *Board) touch() {
	b.touched.Store(true)
	b.safe.Store(false)
}

// PoweredOn reports whether the bench last switched the board on.
func (b *Board) PoweredOn() bool { return b.powered.Load() }

// powerCall runs one switch call bounded by the power timeout (and at
// most limit when limit > 0); a power.Bounded switch is called directly.
// A driver that honours its context returns its own error at the
// deadline; one that does not is left behind and the call fails with
// power.ErrTimeout.
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
	fin := make(chan struct{})
	b.inflight.Store(&fin)
	go func() {
		defer close(fin)
		done <- call(ctx)
	}()
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

// PowerOn switches the board on; the event is stamped when the driver
// call returned.
func (b *Board) PowerOn(ctx context.Context) error {
	if err := b.NeedPower(); err != nil {
		return err
	}
	b.touch()
	// A device may print its first line before the switch call returns.
	asked := time.Now()
	if err := b.powerCall(ctx, 0, b.Power.On); err != nil {
		e := b.Event(results.PowerError)
		e.Text = err.Error()
		b.Emit(e)
		return fmt.Errorf("board %s: power on (%s): %w: %w", b.Name, b.Power, ErrPower, err)
	}
	if !b.powered.Swap(true) {
		b.bootAt.Store(asked.UnixNano())
	}
	b.Emit(b.Event(results.PowerOn))
	return nil
}

// PowerOff switches the board off; the returned event carries the instant
// the driver call returned.
func (b *Board) PowerOff(ctx context.Context) (results.Event, error) {
	if err := b.NeedPower(); err != nil {
		return results.Event{}, err
	}
	b.touch()
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

// PowerState reads the switch back, within a short bound: (on, true, nil)
// when it could; (false, false, nil) when the switch cannot read back.
func (b *Board) PowerState(ctx context.Context, limit time.Duration) (on, known bool, err error) {
	sr, ok := b.Power.(power.StateReader)
	if !ok {
		return false, false, nil
	}
	err = b.powerCall(ctx, limit, func(ctx context.Context) error {
		var serr error
		on, serr = sr.State(ctx)
		return serr
	})
	if errors.Is(err, errors.ErrUnsupported) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("board %s: power state (%s): %w: %w", b.Name, b.Power, ErrPower, err)
	}
	return on, true, nil
}

// safeWait bounds how long the safe state waits for a driver call the
// bench gave up on to return.
const safeWait = 2 * time.Second

// Safe puts a board the bench has touched into its safe state (the
// driver's Halt, or off). It is what every abort path calls, Ctrl-C
// included; it uses its own short deadline because the run's context is
// usually already cancelled. A driver call the bench gave up on that is
// still under way goes first (up to PowerTimeout, at most 2 s). A board
// already in its safe state, its power not driven since, is left alone:
// the driver sees one safe-state call per board however many paths end
// the run.
func (b *Board) Safe() error {
	if !b.touched.Load() || b.Power == nil || b.safe.Load() {
		return nil
	}
	if fin := b.inflight.Load(); fin != nil {
		// A call given up on may still be in the driver: let it land
		// before the safe state, unless it hangs.
		wait := b.PowerTimeout
		if wait <= 0 || wait > safeWait {
			wait = safeWait
		}
		t := time.NewTimer(wait)
		select {
		case <-*fin:
		case <-t.C:
		}
		t.Stop()
	}
	err := b.powerCall(context.Background(), 5*time.Second, func(ctx context.Context) error { return power.Safe(ctx, b.Power) })
	if err != nil {
		e := b.Event(results.PowerError)
		e.Text = "safe state: " + err.Error()
		b.Emit(e)
		return fmt.Errorf("board %s: safe state (%s): %w: %w", b.Name, b.Power, ErrPower, err)
	}
	b.powered.Store(false)
	b.safe.Store(true)
	e := b.Event(results.PowerOff)
	e.Text = "safe state"
	b.Emit(e)
	return nil
}

// Dial opens a firmware-protocol client to the board.
func (b *Board) Dial(ctx context.Context) (*fwclient.Client, error) {
	if err := b.NeedCoAP(); err != nil {
		return nil, err
	}
	c, err := fwclient.Dial(ctx, b.Endpoint.Addr, b.Endpoint.PSK, b.Endpoint.Tx)
	if err != nil {
		return nil, fmt.Errorf("board %s: %w", b.Name, err)
	}
	if b.Endpoint.OSCORE != nil {
		c.UseOSCORE(b.Endpoint.OSCORE)
	}
	if b.Endpoint.PSK != nil || b.Endpoint.OSCORE != nil {
		b.watchSecurity(c.Client)
	}
	return c, nil
}

// watchSecurity has a client report to the board's security watch: the
// DTLS set-ups, the device's Echo challenges, the bytes on the wire and
// every nonce the device used.
func (b *Board) watchSecurity(c *coap.Client) {
	c.OnHandshake = func(h coap.Handshake) {
		rh := results.Handshake{Kind: h.Kind, Dur: h.Duration, Bytes: h.Sent + h.Received}
		b.sec.handshake(rh)
		b.sec.wire(h.Sent, h.Received)
		e := b.Event(results.DTLSHandshake)
		e.Text, e.Dur = h.Kind, h.Duration
		e.Attrs = map[string]string{"bytes": strconv.Itoa(rh.Bytes), "datagrams": strconv.Itoa(h.Datagrams)}
		b.Emit(e)
	}
	c.OnEcho = func() {
		b.sec.echo()
		b.Emit(b.Event(results.EchoChallenge))
	}
	c.OnWire = b.sec.wire
	c.OnRecord = func(r coap.RecordSeen) {
		b.seeNonce("dtls", r.KeyFP[:], dtlsNonce(r.Epoch, r.Seq), r.CTHash, fmt.Sprintf("epoch %d, sequence number %d", r.Epoch, r.Seq))
	}
	c.OnNonce = func(n coap.NonceSeen) {
		b.seeNonce(n.Proto, n.KeyFP[:], n.Nonce, n.CTHash, n.Label)
	}
}

// ErrNotWired marks a board that lacks what an operation needs (no power
// switch, no CoAP endpoint, no probe): a configuration error.
var ErrNotWired = errors.New("not wired")

// NeedPower returns ErrNotWired unless the board has a power switch.
func (b *Board) NeedPower() error {
	if b.Power == nil {
		return fmt.Errorf("board %s has no power switch: %w", b.Name, ErrNotWired)
	}
	return nil
}

// NeedCoAP returns ErrNotWired unless the board has a CoAP endpoint.
func (b *Board) NeedCoAP() error {
	if b.Endpoint.Addr == "" {
		return fmt.Errorf("board %s has no coap endpoint: %w", b.Name, ErrNotWired)
	}
	return nil
}

// Close releases the board's console, probe, inputs and link forwarder.
// It does not touch power: callers use Safe for that.
func (b *Board) Close() error {
	var errs []error
	if b.link != nil && b.link.f != nil {
		errs = append(errs, b.link.f.Close())
	}
	if b.Console != nil {
		errs = append(errs, b.Console.Close())
	}
	if b.Probe != nil {
		errs = append(errs, b.Probe.Close())
	}
	for _, in := range b.Inputs {
		if h, ok := in.(inputs.Halter); ok {
			errs = append(errs, h.Halt())
		}
	}
	return errors.Join(errs...)
}
