// Package sim is the simulated board: a device under test that stands in
// for a small microcontroller (think nRF52 or STM32, NOR flash) running a
// never-updated bootloader and one of five update strategies:
//
//   - inplace-recovery: the app's setup step (POST /fw/prepare) writes a
//     power-safe recovery record caching the transfer parameters and the
//     network/security context, then reboots into recovery, which writes
//     blocks in place, journals each one, and resumes after any power cut
//     from the first block not yet durably written. It never bricks.
//   - naive-inplace: the app accepts a plain RFC 7959 Block1 PUT to /fw from
//     block 0 and writes it straight over itself with no record. A cut
//     mid-write leaves no bootable image and no recovery: bricked until
//     reflashed over the probe port.
//   - ab-overwrite, ab-swap, ab-direct: double-buffered (A/B) updates as
//     MCUboot does them. The app takes a plain Block1 PUT into the slot it
//     does not run from and marks it pending; the bootloader copies it
//     over the primary slot (overwrite-only), swaps the two slots through
//     a scratch sector with a test boot and a revert (swap), or boots the
//     newest valid slot in place (direct-XIP with revert). A cut at any
//     point leaves an image that boots (see ab.go and docs/sim.md).
//
// A board is reached only through real interfaces: CoAP over UDP (IPv4 and
// IPv6) and DTLS-PSK on loopback, a console on a pseudo-terminal, a GDB
// remote serial protocol port, and GPIO pins registered in periph.io's
// gpioreg (a power input driven like a relay, a "flash busy" output). The
// board keeps its own record of every power cut — the flash operation in
// progress and the block being written — so a bench's planned cut point can
// be compared with the real one.
//
// Production code (bench, jobs) never imports this package; the CLI and
// tests start boards and talk to them through those interfaces.
package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fudbench/fudbench/coap/oscore"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim/coapsrv"
	"github.com/fudbench/fudbench/sim/flash"
	"github.com/fudbench/fudbench/sim/simconsole"
)

// Strategy is a board's update strategy.
type Strategy string

// Strategies.
const (
	InplaceRecovery Strategy = "inplace-recovery"
	NaiveInplace    Strategy = "naive-inplace"
	// ABOverwrite is MCUboot's overwrite-only upgrade: the secondary slot
	// is copied over the primary one, with no way back.
	ABOverwrite Strategy = "ab-overwrite"
	// ABSwap is MCUboot's swap using a scratch sector: the slots are
	// swapped, the new image is booted once in test mode, and swapped
	// back (reverted) unless it confirms itself.
	ABSwap Strategy = "ab-swap"
	// ABDirect is MCUboot's direct-XIP with revert: two executable
	// slots, the newest valid one boots where it is.
	ABDirect Strategy = "ab-direct"
)

// Strategies lists every strategy a board can run.
var Strategies = []Strategy{InplaceRecovery, NaiveInplace, ABOverwrite, ABSwap, ABDirect}

// AB reports whether s is one of the double-buffered (A/B) strategies.
func (s Strategy) AB() bool { return s == ABOverwrite || s == ABSwap || s == ABDirect }

// strategyList is "a, b, c or d" of every strategy.
func strategyList() string {
	var b strings.Builder
	for i, s := range Strategies {
		switch {
		case i == len(Strategies)-1:
			b.WriteString(" or ")
		case i > 0:
			b.WriteString(", ")
		}
		b.WriteString(string(s))
	}
	return b.String()
}

// Confirm settings: what an image booted in test mode (ab-swap,
// ab-direct) does.
const (
	// ConfirmBoot: the image confirms itself (programs its trailer's
	// image_ok) before it reports ready.
	ConfirmBoot = "boot"
	// ConfirmNever: the image fails its self-test and resets at once, as
	// a watchdog would; the bootloader then reverts to the previous one.
	ConfirmNever = "never"
)

// Modes a board is in, as Mode reports them.
const (
	ModeOff      = "off"
	ModeBooting  = "booting"
	ModeApp      = fwproto.ModeApp
	ModeRecovery = fwproto.ModeRecovery
	ModeHalted   = "halted" // no bootable image and no recovery: bricked
)

// Config describes one simulated board. Zero values take the defaults
// noted, modelled on an nRF52-class part.
type Config struct {
	Name     string
	Strategy Strategy // default inplace-recovery

	FlashSize   int    // default 512 KiB
	SectorSize  int    // default 4 KiB (uniform layouts)
	Layout      string // "uniform" (default) or "stm32f4" (16/64/128 KiB)
	WriteAlign  int    // 1, 4 (default) or 8
	ErasedZero  bool   // erased value 0x00 instead of 0xFF
	FlashBase   uint32 // address of flash on the probe port; default 0
	ProgramTime time.Duration
	EraseTime   time.Duration
	// TimeScale multiplies flash times, the boot delay and the network
	// delay; 0 is instant.
	TimeScale float64
	BootDelay time.Duration // default 20 ms (before scaling)
	// NetDelay is how long after its console says it is ready (the
	// "APP … ready" or "RECOVERY ready" line) the board starts answering
	// CoAP; until then requests are dropped silently, as while it boots.
	// Real devices often bring their console up well before their network.
	// Default 0 (before scaling).
	NetDelay time.Duration

	// StateDir keeps the flash file and the console link; "" keeps flash
	// in memory and puts the link in a temporary directory.
	StateDir string

	UDPAddrs []string // default 127.0.0.1:0 and [::1]:0; ports stay fixed across reboots
	// OSCORE is the device's OSCORE security context (its sender ID is
	// the device's); nil serves no OSCORE endpoint. OSCOREAddr is where
	// the endpoint listens, default 127.0.0.1:0.
	OSCORE     *oscore.Params
	OSCOREAddr string
	// DTLSCache is what the recovery record keeps of the DTLS session
	// that prepared an update: DTLSCacheNone (default), DTLSCacheSession
	// or DTLSCacheState.
	DTLSCache string
	// SSNPersist is how sender sequence numbers (OSCORE) and record
	// sequence numbers (a restored DTLS record layer) survive a cut:
	// SSNWindow (default) or the bug SSNNone. SSNWindowSize is the
	// window (default 32).
	SSNPersist    string
	SSNWindowSize int
	// ReplayAfterBoot is what the device does with a secured request it
	// cannot tell fresh after a boot: ReplayChallenge (default) or the bug
	// ReplayAccept.
	ReplayAfterBoot string
	// Confirm is what an image booted in test mode does (ab-swap and
	// ab-direct): ConfirmBoot (default) or ConfirmNever.
	Confirm     string
	DTLSAddr    string // default 127.0.0.1:0; "-" disables DTLS
	PSKIdentity string // default "fudbench"
	PSK         []byte // default DevPSK
	GDBAddr     string // default 127.0.0.1:0; "-" disables the probe port

	ConsoleLink string // stable symlink to the console pty; default StateDir/NAME.console
	Reenumerate bool   // a power-on brings a new pty behind ConsoleLink
	// SerialRecovery is when the bootloader serves MCUmgr SMP on the
	// console (serialrecovery.go): SerialRecoveryHalted (default) while
	// halted, SerialRecoveryOff never, or "wait DURATION" also for that
	// long after each reset.
	SerialRecovery string

	PublicKey ed25519.PublicKey // default the development key's
	Seed      uint64
	Logger    *slog.Logger
	// MaxPayloads is the Q-Block1 MAX_PAYLOADS (RFC 9177 §7.2): blocks in
	// one set, and blocks held in RAM ahead of the next one to write
	// (default 10). NonReceiveTimeout is how long the firmware waits for
	// the next block of a non-confirmable Q-Block1 body before it asks
	// for the missing ones (default 4 s; not scaled by TimeScale).
	MaxPayloads       int
	NonReceiveTimeout time.Duration
	// Pins registers the power input and busy output in gpioreg as
	// "<NAME>-PWR" and "<NAME>-BUSY" (upper case).
	Pins bool

	// The electrical model (electrical.go), in volts: the supply's level
	// at power-on (default 3.3), the brownout-reset threshold (1.8) and
	// the flash's minimum programming voltage (2.4); WeakProgram is the
	// probability that a bit to program stays erased between BOR and
	// FlashMin (0.2). Current is what the board draws (DefaultCurrent).
	NominalVoltage float64
	BOR            float64
	FlashMin       float64
	WeakProgram    float64
	Current        CurrentModel
	// Supply starts a SCPI bench supply emulator (sim/supply) whose output
	// is the board's power input, on TCP at SupplyAddr (default
	// 127.0.0.1:0) and, with SupplySerial, on a pseudo-terminal too.
	Supply       bool
	SupplyAddr   string
	SupplySerial bool
}

// DevPSK is the built-in development pre-shared key of simulated boards.
// It is public: never use it on a real device.
var DevPSK = []byte("fudbench-dev-psk-NOT-SECRET")

// CutRecord is the board's own account of one power cut.
type CutRecord struct {
	At   time.Time `json:"at"`
	Mode string    `json:"mode"`
	// Flash is the flash operation under way (Kind "idle" if none).
	Flash flash.Cut `json:"flash"`
	// Block is the block being written when power went (-1 if none);
	// LastAcked the last block the board acknowledged (-1 if none).
	Block     int64 `json:"block"`
	LastAcked int64 `json:"last_acked"`
	// Cause is "power-input" for a cut from the power input, "flash-op"
	// for a cut armed at a flash operation number, "brownout" for a supply
	// that fell below the brownout-reset threshold (SetVoltage).
	Cause string `json:"cause"`
}

// Board is one simulated device.
type Board struct {
	cfg    Config
	log    *slog.Logger
	fl     *flash.Flash
	lay    Layout
	pub    ed25519.PublicKey
	tmpDir string

	cpu sync.Mutex // firmware execution is single-threaded

	// rail serialises what drives the board's supply: the power input
	// (SetPower) and its level (SetVoltage).
	rail  sync.Mutex
	meter *meter // the current drawn (electrical.go)
	bench *benchSupply

	detached chan struct{} // closed when the last power-off's console detach is done
	netDone  chan struct{} // closed when the last power-off's network teardown is done

	netMu sync.Mutex // serialises starting, stopping and parking the network
	// socks are the board's UDP sockets (its UDP addresses in order, then
	// the DTLS one), bound at the first boot and kept until Close: the
	// CoAP servers of each boot serve on them, and while the board is off
	// they are parked (read and dropped), so the board's ports are never
	// free for another socket to take. b.netMu guards them.
	socks   []*net.UDPConn
	parked  bool
	drained sync.WaitGroup

	mu         sync.Mutex // guards the fields below
	powered    bool
	input      bool    // the power input is on (powered, or held in brownout reset)
	volts      float64 // the supply's level
	browned    bool    // off by a brownout, the input still on
	causeNote  string  // the reset cause the console prints instead of cause ("brownout")
	epoch      uint64
	mode       string
	ram        *ram
	boots      uint32
	cause      string
	servers    []*coapsrv.Server
	udpAddrs   []string
	dtlsAddr   string
	oscoreAddr string
	changed    chan struct{}
	cuts       []CutRecord
	closed     bool

	ks keystore // protected storage: survives cuts and reflashing

	wear0 []uint32 // the flash's wear counters when the board was made
	arm   armed    // the cut ArmCut armed

	console *simconsole.Console
	// The bootloader's SMP serial recovery (serialrecovery.go): console
	// input, the wait after a reset, and the epoch whose wait window is
	// open (b.mu).
	smpIn     chan []byte
	smpStop   chan struct{}
	smpDone   chan struct{}
	smpWait   time.Duration
	smpWindow uint64
	gdbLn     net.Listener
	gdbStop   context.CancelFunc
	gdbDone   chan struct{}
	powerPin  *PowerPin
	busyPin   *BusyPin
}

// ram is what the firmware holds in RAM: lost at every reset.
type ram struct {
	epoch      uint64
	mode       string
	app        *fwimage.Header
	appDigest  [32]byte
	rec        *record
	next       uint32
	state      string
	failure    string
	writing    atomic.Int64 // block being written, -1 none
	lastAcked  atomic.Int64
	naiveNext  uint32
	naiveSZX   uint8
	naiveSize  uint32 // bytes written so far
	naiveBusy  bool
	naiveTotal uint32 // Size1 announced, 0 unknown
	// A/B strategies: the slot the app runs from (0 primary or slot A, 1
	// secondary or slot B) and whether it was booted in test mode.
	slot     int
	testMode bool
	sec      secRAM
	q        qrx // a Q-Block1 body being received
}

func (c *Config) defaults() error {
	if c.Name == "" {
		return errors.New("sim: board needs a name")
	}
	if c.Strategy == "" {
		c.Strategy = InplaceRecovery
	}
	if !slices.Contains(Strategies, c.Strategy) {
		return fmt.Errorf("sim: board %s: unknown strategy %q (want %s)", c.Name, c.Strategy, strategyList())
	}
	if c.Strategy.AB() && c.Layout != "" && c.Layout != "uniform" {
		return fmt.Errorf("sim: board %s: strategy %s needs the uniform sector layout, not %s (its two slots must have sectors of one size)", c.Name, c.Strategy, c.Layout)
	}
	if c.FlashSize == 0 {
		c.FlashSize = 512 << 10
	}
	if c.SectorSize == 0 {
		c.SectorSize = 4 << 10
	}
	if c.WriteAlign == 0 {
		c.WriteAlign = 4
	}
	if c.ProgramTime == 0 {
		c.ProgramTime = 41 * time.Microsecond // nRF52: one 32-bit word
	}
	if c.EraseTime == 0 {
		c.EraseTime = 85 * time.Millisecond // nRF52: one 4 KiB page
	}
	if c.BootDelay == 0 {
		c.BootDelay = 20 * time.Millisecond
	}
	if c.UDPAddrs == nil {
		c.UDPAddrs = []string{"127.0.0.1:0", "[::1]:0"}
	}
	if c.DTLSAddr == "" {
		c.DTLSAddr = "127.0.0.1:0"
	}
	if c.PSKIdentity == "" {
		c.PSKIdentity = "fudbench"
	}
	if len(c.PSKIdentity) > maxPSKIdentity {
		return fmt.Errorf("sim: board %s: PSK identity of %d bytes: the recovery record caches at most %d", c.Name, len(c.PSKIdentity), maxPSKIdentity)
	}
	if c.PSK == nil {
		c.PSK = DevPSK
	}
	if c.GDBAddr == "" {
		c.GDBAddr = "127.0.0.1:0"
	}
	if c.OSCORE != nil && c.OSCOREAddr == "" {
		c.OSCOREAddr = "127.0.0.1:0"
	}
	if c.DTLSCache == "" {
		c.DTLSCache = DTLSCacheNone
	}
	if c.SSNPersist == "" {
		c.SSNPersist = SSNWindow
	}
	if c.ReplayAfterBoot == "" {
		c.ReplayAfterBoot = ReplayChallenge
	}
	if c.Confirm == "" {
		c.Confirm = ConfirmBoot
	}
	if c.SerialRecovery == "" {
		c.SerialRecovery = SerialRecoveryHalted
	}
	if _, err := ParseSerialRecovery(c.SerialRecovery); err != nil {
		return fmt.Errorf("sim: board %s: %w", c.Name, err)
	}
	switch {
	case c.DTLSCache != DTLSCacheNone && c.DTLSCache != DTLSCacheSession && c.DTLSCache != DTLSCacheState:
		return fmt.Errorf("sim: board %s: dtls_cache %q: want none, session or state", c.Name, c.DTLSCache)
	case c.SSNPersist != SSNWindow && c.SSNPersist != SSNNone:
		return fmt.Errorf("sim: board %s: ssn_persist %q: want window or none", c.Name, c.SSNPersist)
	case c.ReplayAfterBoot != ReplayChallenge && c.ReplayAfterBoot != ReplayAccept:
		return fmt.Errorf("sim: board %s: replay_after_boot %q: want challenge or accept", c.Name, c.ReplayAfterBoot)
	case c.Confirm != ConfirmBoot && c.Confirm != ConfirmNever:
		return fmt.Errorf("sim: board %s: confirm %q: want boot or never", c.Name, c.Confirm)
	}
	if c.PublicKey == nil {
		c.PublicKey = fwimage.DevKey().Public().(ed25519.PublicKey)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.SupplyAddr == "" {
		c.SupplyAddr = "127.0.0.1:0"
	}
	return c.electricalDefaults()
}

// New makes a board, unpowered. Its flash is erased (or loaded from
// StateDir) and holds a bootloader; put an application on it with
// FactoryProgram or over the probe port, then power it with SetPower.
func New(cfg Config) (*Board, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	b := &Board{cfg: cfg, log: cfg.Logger.With("board", cfg.Name), pub: cfg.PublicKey, mode: ModeOff, changed: make(chan struct{}),
		meter: newMeter(cfg.Current), volts: cfg.NominalVoltage}
	var sectors []int
	switch cfg.Layout {
	case "", "uniform":
		if cfg.FlashSize%cfg.SectorSize != 0 {
			return nil, fmt.Errorf("sim: board %s: flash size %d is not a multiple of sector size %d", cfg.Name, cfg.FlashSize, cfg.SectorSize)
		}
		sectors = flash.Uniform(cfg.FlashSize, cfg.SectorSize)
	case "stm32f4":
		sectors = flash.STM32F4Like(cfg.FlashSize)
	default:
		return nil, fmt.Errorf("sim: board %s: unknown flash layout %q (want uniform or stm32f4)", cfg.Name, cfg.Layout)
	}
	fcfg := flash.Config{
		Sectors: sectors, WriteAlign: cfg.WriteAlign, Erased: 0xFF,
		ProgramTime: cfg.ProgramTime, EraseTime: cfg.EraseTime, TimeScale: cfg.TimeScale,
		Seed: cfg.Seed,
	}
	if cfg.ErasedZero {
		fcfg.Erased = 0x00
	}
	dir := cfg.StateDir
	if dir == "" {
		d, err := os.MkdirTemp("", "fudbench-sim-")
		if err != nil {
			return nil, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
		}
		b.tmpDir, dir = d, d
	} else {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
		}
		fcfg.Path = filepath.Join(dir, cfg.Name+".flash")
	}
	// Lay out first with a scratch device so the protected length is known.
	probe, err := flash.New(fcfg)
	if err != nil {
		b.cleanupTmp()
		return nil, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
	}
	lay, err := computeLayout(probe, cfg.Strategy)
	probe.Close()
	if err != nil {
		b.cleanupTmp()
		return nil, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
	}
	fcfg.Protected = lay.BootEnd
	b.fl, err = flash.New(fcfg)
	if err != nil {
		b.cleanupTmp()
		return nil, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
	}
	b.lay = lay
	b.wear0 = b.fl.Wear()
	// The bootloader itself: recognisable bytes in the protected region.
	boot := make([]byte, lay.BootEnd)
	copy(boot, "fudbench-sim bootloader v1 (never updated)")
	if err := b.fl.Load(0, boot); err != nil {
		b.Close()
		return nil, err
	}
	b.fl.OnBusy(func(on bool) {
		if b.busyPin != nil {
			b.busyPin.set(on)
		}
	})
	b.fl.OnOp(b.meter.setOp)
	link := cfg.ConsoleLink
	if link == "" {
		link = filepath.Join(dir, cfg.Name+".console")
	}
	b.smpWait, _ = ParseSerialRecovery(cfg.SerialRecovery)
	b.startSerialRecovery()
	b.console, err = simconsole.New(simconsole.Options{Link: link, Reenumerate: cfg.Reenumerate, Logger: b.log, Input: b.smpInput})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("sim: board %s: console: %w", cfg.Name, err)
	}
	if cfg.Reenumerate {
		b.console.Detach()
	}
	if cfg.GDBAddr != "-" {
		if err := b.startGDB(); err != nil {
			b.Close()
			return nil, err
		}
	}
	if cfg.Pins {
		if err := b.registerPins(); err != nil {
			b.Close()
			return nil, err
		}
	}
	if cfg.Supply {
		if err := b.startSupply(); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

func (b *Board) cleanupTmp() {
	if b.tmpDir != "" {
		os.RemoveAll(b.tmpDir)
	}
}

// Name is the board's name.
func (b *Board) Name() string { return b.cfg.Name }

// Strategy is the board's update strategy.
func (b *Board) Strategy() Strategy { return b.cfg.Strategy }

// Layout is the board's flash layout.
func (b *Board) Layout() Layout { return b.lay }

// Flash gives tests and benchmarks the flash model (wear, operation count).
func (b *Board) Flash() *flash.Flash { return b.fl }

// Config returns the board's configuration with defaults filled in.
func (b *Board) Config() Config { return b.cfg }

// Close powers the board off and releases its ports, pty and pins.
func (b *Board) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	errs := []error{b.stopSupply()} // no client drives the power from here on
	b.SetPower(false)
	b.mu.Lock()
	detached := b.detached
	b.mu.Unlock()
	if detached != nil {
		<-detached
	}
	b.mu.Lock()
	netDone := b.netDone
	b.mu.Unlock()
	if netDone != nil {
		<-netDone
	}
	b.netMu.Lock()
	b.closeSocks()
	b.netMu.Unlock()
	if b.gdbStop != nil {
		b.gdbStop()
		b.gdbLn.Close()
		<-b.gdbDone
	}
	b.unregisterPins()
	if b.console != nil {
		errs = append(errs, b.console.Close())
	}
	b.stopSerialRecovery()
	if b.fl != nil {
		errs = append(errs, b.fl.Close())
	}
	b.cleanupTmp()
	return errors.Join(errs...)
}

// FactoryProgram writes an image into the app slot as a factory
// programmer would after a mass erase: records, journal and the
// anti-rollback counter are blank, the bootloader is kept. On an A/B
// layout the image goes into the primary slot (slot A) and everything
// else after the bootloader is blank: no update pending, no swap under
// way. No timing, no cuts. The board must be unpowered.
func (b *Board) FactoryProgram(img []byte) error {
	b.mu.Lock()
	on := b.powered
	b.mu.Unlock()
	if on {
		return fmt.Errorf("sim: board %s: factory programming needs the board unpowered", b.cfg.Name)
	}
	if len(img) > b.lay.AppSize() {
		return fmt.Errorf("sim: board %s: image of %d bytes does not fit the %d-byte app slot", b.cfg.Name, len(img), b.lay.AppSize())
	}
	erased := b.fl.Config().Erased
	blank := func(off, n int) error {
		e := make([]byte, n)
		for i := range e {
			e[i] = erased
		}
		if err := b.fl.Load(off, e); err != nil {
			return fmt.Errorf("sim: board %s: factory programming: %w", b.cfg.Name, err)
		}
		return nil
	}
	if b.lay.AB() {
		if err := blank(b.lay.BootEnd, b.fl.Size()-b.lay.BootEnd); err != nil {
			return err
		}
		if err := b.fl.Load(b.lay.AppStart, img); err != nil {
			return fmt.Errorf("sim: board %s: factory programming: %w", b.cfg.Name, err)
		}
		return nil
	}
	buf := make([]byte, b.lay.AppSize())
	for i := range buf {
		buf[i] = erased
	}
	copy(buf, img)
	if err := b.fl.Load(b.lay.AppStart, buf); err != nil {
		return err
	}
	// No update in progress: both records and the journal erased.
	return errors.Join(
		blank(b.lay.recAOff, b.fl.Config().Sectors[b.lay.RecA]),
		blank(b.lay.recBOff, b.fl.Config().Sectors[b.lay.RecB]),
		blank(b.lay.journalOff, b.lay.journalLen),
		blank(b.lay.counterOff, b.lay.counterLen),
	)
}
