// Package sim is the simulated board: a device under test that stands in
// for a small microcontroller (think nRF52 or STM32, NOR flash) running a
// never-updated bootloader and one of two update strategies:
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
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

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
	// TimeScale multiplies flash times and the boot delay; 0 is instant.
	TimeScale float64
	BootDelay time.Duration // default 20 ms (before scaling)

	// StateDir keeps the flash file and the console link; "" keeps flash
	// in memory and puts the link in a temporary directory.
	StateDir string

	UDPAddrs    []string // default 127.0.0.1:0 and [::1]:0; ports stay fixed across reboots
	DTLSAddr    string   // default 127.0.0.1:0; "-" disables DTLS
	PSKIdentity string   // default "fudbench"
	PSK         []byte   // default DevPSK
	GDBAddr     string   // default 127.0.0.1:0; "-" disables the probe port

	ConsoleLink string // stable symlink to the console pty; default StateDir/NAME.console
	Reenumerate bool   // a power-on brings a new pty behind ConsoleLink

	PublicKey ed25519.PublicKey // default the development key's
	Seed      uint64
	Logger    *slog.Logger
	// Pins registers the power input and busy output in gpioreg as
	// "<NAME>-PWR" and "<NAME>-BUSY" (upper case).
	Pins bool
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
	// for a cut armed at a flash operation number.
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

	mu       sync.Mutex // guards the fields below
	powered  bool
	epoch    uint64
	mode     string
	ram      *ram
	boots    uint32
	cause    string
	servers  []*coapsrv.Server
	udpAddrs []string
	dtlsAddr string
	changed  chan struct{}
	cuts     []CutRecord
	closed   bool

	console  *simconsole.Console
	gdbLn    net.Listener
	gdbStop  context.CancelFunc
	gdbDone  chan struct{}
	powerPin *PowerPin
	busyPin  *BusyPin
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
}

func (c *Config) defaults() error {
	if c.Name == "" {
		return errors.New("sim: board needs a name")
	}
	if c.Strategy == "" {
		c.Strategy = InplaceRecovery
	}
	if c.Strategy != InplaceRecovery && c.Strategy != NaiveInplace {
		return fmt.Errorf("sim: board %s: unknown strategy %q (want %s or %s)", c.Name, c.Strategy, InplaceRecovery, NaiveInplace)
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
	if c.PSK == nil {
		c.PSK = DevPSK
	}
	if c.GDBAddr == "" {
		c.GDBAddr = "127.0.0.1:0"
	}
	if c.PublicKey == nil {
		c.PublicKey = fwimage.DevKey().Public().(ed25519.PublicKey)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// New makes a board, unpowered. Its flash is erased (or loaded from
// StateDir) and holds a bootloader; put an application on it with
// FactoryProgram or over the probe port, then power it with SetPower.
func New(cfg Config) (*Board, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	b := &Board{cfg: cfg, log: cfg.Logger.With("board", cfg.Name), pub: cfg.PublicKey, mode: ModeOff, changed: make(chan struct{})}
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
	lay, err := computeLayout(probe)
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
	link := cfg.ConsoleLink
	if link == "" {
		link = filepath.Join(dir, cfg.Name+".console")
	}
	b.console, err = simconsole.New(simconsole.Options{Link: link, Reenumerate: cfg.Reenumerate, Logger: b.log})
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
	var errs []error
	if b.console != nil {
		errs = append(errs, b.console.Close())
	}
	if b.fl != nil {
		errs = append(errs, b.fl.Close())
	}
	b.cleanupTmp()
	return errors.Join(errs...)
}

// FactoryProgram writes an image into the app slot as a factory
// programmer would after a mass erase: records, journal and the
// anti-rollback counter are blank, the bootloader is kept. No timing, no
// cuts. The board must be unpowered.
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
	buf := make([]byte, b.lay.AppSize())
	for i := range buf {
		buf[i] = erased
	}
	copy(buf, img)
	if err := b.fl.Load(b.lay.AppStart, buf); err != nil {
		return err
	}
	// No update in progress: both records and the journal erased.
	blank := func(off, n int) error {
		e := make([]byte, n)
		for i := range e {
			e[i] = erased
		}
		return b.fl.Load(off, e)
	}
	return errors.Join(
		blank(b.lay.recAOff, b.fl.Config().Sectors[b.lay.RecA]),
		blank(b.lay.recBOff, b.fl.Config().Sectors[b.lay.RecB]),
		blank(b.lay.journalOff, b.lay.journalLen),
		blank(b.lay.counterOff, b.lay.counterLen),
	)
}

// Powered reports whether the power input is on.
func (b *Board) Powered() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.powered
}

// Mode reports what the board is doing: off, booting, app, recovery or
// halted.
func (b *Board) Mode() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mode
}

// WaitMode waits until the board is in one of the given modes.
func (b *Board) WaitMode(ctx context.Context, modes ...string) (string, error) {
	for {
		b.mu.Lock()
		m, ch := b.mode, b.changed
		b.mu.Unlock()
		for _, want := range modes {
			if m == want {
				return m, nil
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m, fmt.Errorf("sim: board %s: waiting for %v, still %s: %w", b.cfg.Name, modes, m, ctx.Err())
		}
	}
}

// WaitBoot waits until the board has booted more than after times and
// settled in app, recovery or halted mode, and returns that mode.
func (b *Board) WaitBoot(ctx context.Context, after uint32) (string, error) {
	for {
		b.mu.Lock()
		m, n, ch := b.mode, b.boots, b.changed
		b.mu.Unlock()
		if n > after && (m == ModeApp || m == ModeRecovery || m == ModeHalted) {
			return m, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return m, fmt.Errorf("sim: board %s: waiting for boot %d, %s after %d: %w", b.cfg.Name, after+1, m, n, ctx.Err())
		}
	}
}

// setMode changes mode; b.mu held.
func (b *Board) setMode(m string) {
	b.mode = m
	close(b.changed)
	b.changed = make(chan struct{})
}

// Boots is the number of boots since the board was made.
func (b *Board) Boots() uint32 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.boots
}

// LastCut returns the board's record of its latest power cut and how many
// it has recorded (0: none, and rec is zero).
func (b *Board) LastCut() (rec CutRecord, n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cuts) == 0 {
		return CutRecord{}, 0
	}
	return b.cuts[len(b.cuts)-1], len(b.cuts)
}

// Cuts returns the board's record of every power cut.
func (b *Board) Cuts() []CutRecord {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]CutRecord(nil), b.cuts...)
}

// SetPower drives the power input: on boots the board after the boot
// delay; off is a power cut at this instant.
func (b *Board) SetPower(on bool) {
	if !on {
		b.cutPower("power-input", nil)
		return
	}
	b.mu.Lock()
	if b.powered || b.closed {
		b.mu.Unlock()
		return
	}
	b.powered = true
	b.epoch++
	ep := b.epoch
	b.cause = fwproto.ResetPower
	b.setMode(ModeBooting)
	detached := b.detached
	b.mu.Unlock()
	b.fl.PowerOn()
	if b.cfg.Reenumerate {
		if detached != nil {
			<-detached // the previous power-off's detach comes first
		}
		if err := b.console.Attach(); err != nil {
			b.log.Error("console attach", "err", err)
		}
	}
	go b.boot(ep)
}

// CutAtFlashOp arms a power cut at flash operation number op (see
// flash.Flash.CutAtOp): the sweep tests' way of cutting at every operation.
func (b *Board) CutAtFlashOp(op uint64) {
	b.fl.CutAtOp(op, func(c flash.Cut) { b.cutPower("flash-op", &c) })
}

func (b *Board) cutPower(cause string, fc *flash.Cut) {
	inProgress := b.fl.InProgress()
	b.fl.PowerOff()
	b.mu.Lock()
	if !b.powered {
		b.mu.Unlock()
		return
	}
	b.powered = false
	b.epoch++
	rec := CutRecord{At: time.Now(), Mode: b.mode, Flash: inProgress, Block: -1, LastAcked: -1, Cause: cause}
	if fc != nil {
		rec.Flash = *fc
	}
	if b.ram != nil {
		rec.Block = b.ram.writing.Load()
		rec.LastAcked = b.ram.lastAcked.Load()
	}
	b.cuts = append(b.cuts, rec)
	b.ram = nil
	servers := b.servers
	b.servers = nil
	b.setMode(ModeOff)
	// Sockets are torn down in the background: the cut is the instant
	// above (flash stopped, RAM gone, handlers answer nothing), and the
	// switch call that caused it should return at once. The next boot
	// waits for the teardown.
	down := make(chan struct{})
	b.netDone = down
	b.mu.Unlock()
	go func() { defer close(down); b.netDown(servers) }()
	if b.cfg.Reenumerate {
		// The adapter going away takes the pty down in the background:
		// the cut itself is the instant above, and a trigger's measured
		// latency must not include the console's teardown.
		done := make(chan struct{})
		b.mu.Lock()
		b.detached = done
		b.mu.Unlock()
		go func() { defer close(done); b.console.Detach() }()
	}
	b.log.Debug("power cut", "cause", cause, "flash", rec.Flash.Kind, "block", rec.Block, "last_acked", rec.LastAcked)
}

// netDown stops the CoAP servers and parks their ports.
func (b *Board) netDown(servers []*coapsrv.Server) {
	b.netMu.Lock()
	defer b.netMu.Unlock()
	for _, s := range servers {
		s.Detach()
	}
	b.park()
}

// park drops whatever reaches the board's sockets while its network is
// down, silently, as an unpowered device does: no ICMP "port unreachable",
// and, the sockets staying bound, no other socket on this host can take
// the port (a client whose ephemeral port landed on it would talk to
// itself). b.netMu held.
func (b *Board) park() {
	if b.parked {
		return
	}
	b.parked = true
	for _, pc := range b.socks {
		b.drained.Add(1)
		go func() {
			defer b.drained.Done()
			buf := make([]byte, 64)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
}

// unpark stops dropping datagrams so that the sockets can be served
// again; b.netMu held.
func (b *Board) unpark() {
	if !b.parked {
		return
	}
	b.parked = false
	for _, pc := range b.socks {
		_ = pc.SetReadDeadline(time.Unix(1, 0))
	}
	b.drained.Wait()
	for _, pc := range b.socks {
		_ = pc.SetReadDeadline(time.Time{})
	}
}

// sock returns the board's i-th socket, bound to addr at its first use;
// b.netMu held.
func (b *Board) sock(i int, addr string) (*net.UDPConn, error) {
	if i < len(b.socks) {
		return b.socks[i], nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	b.socks = append(b.socks, pc)
	return pc, nil
}

// closeSocks closes the board's sockets for good; b.netMu held.
func (b *Board) closeSocks() {
	b.unpark()
	for _, pc := range b.socks {
		pc.Close()
	}
	b.socks = nil
}

// Reset is a software (or probe) reset: RAM is lost, the bootloader runs
// again, power stays on.
func (b *Board) Reset() {
	b.mu.Lock()
	if !b.powered {
		b.mu.Unlock()
		return
	}
	b.resetLocked()
	b.mu.Unlock()
}

// resetLocked reboots; b.mu held.
func (b *Board) resetLocked() {
	b.epoch++
	ep := b.epoch
	b.ram = nil
	servers := b.servers
	b.servers = nil
	b.cause = fwproto.ResetSoftware
	b.setMode(ModeBooting)
	go func() {
		b.netDown(servers)
		b.boot(ep)
	}()
}

// resetFrom reboots the board from a handler once its reply is out.
func (b *Board) resetFrom(ep uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.powered && b.epoch == ep {
		b.resetLocked()
	}
}

func (b *Board) current(ep uint64) *ram {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.epoch != ep || !b.powered {
		return nil
	}
	return b.ram
}

func (b *Board) alive(ep uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.powered && b.epoch == ep
}

func (b *Board) sleep(ep uint64, d time.Duration) bool {
	if d <= 0 {
		return b.alive(ep)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		b.mu.Lock()
		ch := b.changed
		ok := b.powered && b.epoch == ep
		b.mu.Unlock()
		if !ok {
			return false
		}
		select {
		case <-t.C:
			return b.alive(ep)
		case <-ch:
		}
	}
}

// boot runs the bootloader for power epoch ep.
func (b *Board) boot(ep uint64) {
	if !b.sleep(ep, time.Duration(float64(b.cfg.BootDelay)*b.cfg.TimeScale)) {
		return
	}
	b.cpu.Lock()
	defer b.cpu.Unlock()
	b.mu.Lock()
	if b.epoch != ep || !b.powered {
		b.mu.Unlock()
		return
	}
	b.boots++
	boots, cause := b.boots, b.cause
	b.mu.Unlock()
	b.console.Printf("BL fudbench-sim bootloader v1 board=%s reset=%s boots=%d", b.cfg.Name, cause, boots)

	r := &ram{epoch: ep}
	r.writing.Store(-1)
	r.lastAcked.Store(-1)
	b.bootloader(r)
	if !b.alive(ep) {
		return
	}
	switch r.mode {
	case ModeApp:
		b.console.Printf("APP v%s seq=%d mode=app reset=%s boots=%d ready", r.app.Version, r.app.Seq, cause, boots)
	case ModeRecovery:
		if r.rec != nil {
			b.console.Printf("RECOVERY ready mode=recovery state=%s next=%d/%d boots=%d", r.state, r.next, r.rec.blocks(), boots)
		} else {
			b.console.Printf("RECOVERY ready mode=recovery state=%s (%s) boots=%d", r.state, r.failure, boots)
		}
	case ModeHalted:
		b.console.Printf("BL no bootable image (%s); halted", r.failure)
	}
	var servers []*coapsrv.Server
	b.mu.Lock()
	netDone := b.netDone
	b.mu.Unlock()
	if netDone != nil {
		<-netDone
	}
	b.netMu.Lock()
	defer b.netMu.Unlock()
	if r.mode != ModeHalted && b.alive(ep) {
		b.unpark()
		var err error
		servers, err = b.startCoAP(ep, r)
		if err != nil {
			b.log.Error("coap", "err", err)
			b.console.Printf("BL network error: %v", err)
		}
	}
	b.mu.Lock()
	if b.epoch != ep || !b.powered {
		b.mu.Unlock()
		for _, s := range servers {
			s.Detach()
		}
		b.park()
		return
	}
	b.ram = r
	b.servers = servers
	b.setMode(r.mode)
	b.mu.Unlock()
}

// bootloader decides what to run: resume an update in progress, boot a
// valid app, fall back to recovery, or halt.
func (b *Board) bootloader(r *ram) {
	if b.cfg.Strategy == InplaceRecovery {
		if rec, sector := b.activeRecord(); rec != nil && !b.recordDone(sector) {
			r.mode, r.rec = ModeRecovery, rec
			r.next = b.journalNext(rec)
			r.state = fwproto.StateReceiving
			b.console.Printf("BL recovery: resuming transfer size=%d szx=%d next=%d/%d peer=%s (cached context)", rec.Size, rec.SZX, r.next, rec.blocks(), rec.Peer)
			if r.next >= rec.blocks() {
				b.finishRecovery(r)
				if r.mode != ModeApp {
					return
				}
				// Verified: fall through to boot the new image below.
			} else {
				return
			}
		}
	}
	hdr, digest, err := b.verifyApp()
	if err == nil {
		err = b.checkRollback(hdr)
	}
	if err != nil {
		r.failure = err.Error()
		if b.cfg.Strategy == InplaceRecovery {
			r.mode, r.state, r.rec = ModeRecovery, fwproto.StateFailed, nil
			return
		}
		r.mode = ModeHalted
		return
	}
	r.mode, r.app, r.appDigest = ModeApp, hdr, digest
}

// verifyApp checks the image in the app slot.
func (b *Board) verifyApp() (*fwimage.Header, [32]byte, error) {
	var none [32]byte
	head := make([]byte, fwimage.HeaderSize)
	if err := b.fl.Read(b.lay.AppStart, head); err != nil {
		return nil, none, err
	}
	h, err := fwimage.ParseHeader(head)
	if err != nil {
		return nil, none, fmt.Errorf("app header: %w", err)
	}
	total := fwimage.HeaderSize + int(h.PayloadSize)
	if total > b.lay.AppSize() {
		return nil, none, fmt.Errorf("app size %d exceeds the slot", total)
	}
	img := make([]byte, total)
	if err := b.fl.Read(b.lay.AppStart, img); err != nil {
		return nil, none, err
	}
	h, err = fwimage.Verify(img, b.pub)
	if err != nil {
		return nil, none, fmt.Errorf("app image: %w", err)
	}
	return h, sha256.Sum256(img), nil
}

// checkRollback refuses an image older than the stored counter and bumps
// the counter when a newer one boots.
func (b *Board) checkRollback(h *fwimage.Header) error {
	ctr, used := b.readCounter()
	if h.Seq < ctr {
		return fmt.Errorf("rollback refused: image seq %d below counter %d", h.Seq, ctr)
	}
	if h.Seq > ctr {
		if err := b.writeCounter(h.Seq, used); err != nil {
			return fmt.Errorf("counter update: %w", err)
		}
	}
	return nil
}

func (b *Board) entryLen() int { return max(8, b.cfg.WriteAlign) }

// readCounter returns the anti-rollback counter and the number of log slots used.
func (b *Board) readCounter() (uint32, int) {
	buf := make([]byte, b.lay.counterLen)
	b.fl.Read(b.lay.counterOff, buf)
	n := b.entryLen()
	erased := b.fl.Config().Erased
	var ctr uint32
	used := 0
	for off := 0; off+n <= len(buf); off += n {
		e := buf[off : off+n]
		if allErased(e, erased) {
			break
		}
		used++
		v, c := leU32(e), leU32(e[4:])
		if v == ^c && v > ctr {
			ctr = v
		}
	}
	return ctr, used
}

func (b *Board) writeCounter(v uint32, used int) error {
	n := b.entryLen()
	if (used+1)*n > b.lay.counterLen {
		if err := b.fl.EraseSector(b.lay.Counter); err != nil {
			return err
		}
		used = 0
	}
	return b.fl.Program(b.lay.counterOff+used*n, counterEntry(v, b.cfg.WriteAlign, b.fl.Config().Erased))
}

func leU32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// activeRecord returns the newest valid recovery record and its sector.
func (b *Board) activeRecord() (*record, int) {
	var best *record
	sector := -1
	for _, s := range []struct{ idx, off int }{{b.lay.RecA, b.lay.recAOff}, {b.lay.RecB, b.lay.recBOff}} {
		buf := make([]byte, recBodyLen)
		b.fl.Read(s.off, buf)
		r, err := decodeRecord(buf)
		if err != nil {
			continue
		}
		if best == nil || r.Gen > best.Gen {
			best, sector = r, s.idx
		}
	}
	return best, sector
}

func (b *Board) recordOff(sector int) int {
	if sector == b.lay.RecA {
		return b.lay.recAOff
	}
	return b.lay.recBOff
}

// recordDone reads the completion marker: fully programmed means done. A
// torn marker counts as not done, so the image is verified again.
func (b *Board) recordDone(sector int) bool {
	m := make([]byte, b.cfg.WriteAlign)
	b.fl.Read(b.recordOff(sector)+doneOff, m)
	full := ^b.fl.Config().Erased
	for _, c := range m {
		if c != full {
			return false
		}
	}
	return true
}

func (b *Board) markDone(sector int) error {
	m := make([]byte, b.cfg.WriteAlign)
	for i := range m {
		m[i] = ^b.fl.Config().Erased
	}
	return b.fl.Program(b.recordOff(sector)+doneOff, m)
}

// journalNext is the first block whose journal bit is not programmed.
func (b *Board) journalNext(rec *record) uint32 {
	n := rec.blocks()
	buf := make([]byte, (n+7)/8)
	b.fl.Read(b.lay.journalOff, buf)
	erased := b.fl.Config().Erased
	for i := uint32(0); i < n; i++ {
		bit := buf[i/8] >> (i % 8) & 1
		if bit == erased&1 {
			return i
		}
	}
	return n
}

// journalMark programs block i's journal bit: the write unit holding the
// bit, with only that bit moved away from the erased value.
func (b *Board) journalMark(i uint32) error {
	a := b.cfg.WriteAlign
	byteOff := int(i / 8)
	unit := byteOff / a * a
	word := make([]byte, a)
	if err := b.fl.Read(b.lay.journalOff+unit, word); err != nil {
		return err
	}
	if b.fl.Config().Erased == 0xFF {
		word[byteOff-unit] &^= 1 << (i % 8)
	} else {
		word[byteOff-unit] |= 1 << (i % 8)
	}
	return b.fl.Program(b.lay.journalOff+unit, word)
}

// finishRecovery verifies a fully received image; on success it marks the
// record done and leaves r in app mode, otherwise failed in recovery.
func (b *Board) finishRecovery(r *ram) {
	r.state = fwproto.StateVerifying
	b.console.Printf("RECOVERY verifying %d bytes", r.rec.Size)
	img := make([]byte, r.rec.Size)
	if err := b.fl.Read(b.lay.AppStart, img); err != nil {
		r.state, r.failure = fwproto.StateFailed, err.Error()
		return
	}
	if sha256.Sum256(img) != r.rec.Digest {
		r.state, r.failure = fwproto.StateFailed, "digest mismatch: received bytes differ from the prepared digest"
		b.console.Printf("RECOVERY verify failed: %s", r.failure)
		return
	}
	h, err := fwimage.Verify(img, b.pub)
	if err == nil {
		ctr, _ := b.readCounter()
		if h.Seq < ctr {
			err = fmt.Errorf("rollback refused: image seq %d below counter %d", h.Seq, ctr)
		}
	}
	if err != nil {
		r.state, r.failure = fwproto.StateFailed, err.Error()
		b.console.Printf("RECOVERY verify failed: %s", r.failure)
		return
	}
	_, sector := b.activeRecord()
	if err := b.markDone(sector); err != nil {
		r.state, r.failure = fwproto.StateFailed, err.Error()
		return
	}
	b.console.Printf("RECOVERY verify ok v%s seq=%d, booting", h.Version, h.Seq)
	r.mode = ModeApp
}

// stateOf is the protocol's state report.
func stateOf(r *ram) fwproto.State {
	s := fwproto.State{Mode: fwproto.ModeRecovery, State: r.state}
	if r.rec != nil {
		s.Size, s.SZX, s.Tag, s.Next = r.rec.Size, r.rec.SZX, r.rec.Tag, r.next
		s.Digest = append([]byte(nil), r.rec.Digest[:]...)
	}
	return s
}
