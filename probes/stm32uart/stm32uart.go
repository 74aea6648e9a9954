// Package stm32uart is the probe driver "stm32uart": it flashes an STM32
// through ST's system bootloader on a USART, as application note AN3155
// describes it. Importing it registers the driver.
//
// Settings:
//
//	port: /dev/ttyUSB0   # the serial port, required
//	baud: 115200         # the bootloader detects the rate from the sync byte
//	parity: even         # even (the bootloader's framing) | none (ptys)
//	timeout: 5s          # per command; erases get more per 16 pages
//	erase: auto          # auto | 0x43 | 0x44: Erase or Extended Erase;
//	                     # auto takes 0x44 if Get offers it, else 0x43
//	page_size: 1024      # erase page size; default from the product ID
//
// The port is opened on first use (8 data bits, 1 stop bit, the parity
// set) and opened again after it failed, so a probe survives an adapter
// that went away and came back. No modem lines are touched: the board must
// already be in its bootloader (BOOT0 high at reset). On first use the
// driver sends the autobaud byte 0x7F, accepting ACK from a fresh
// bootloader or NACK from one already synced, which takes the byte as the
// start of a command; then Get (the command list) and Get ID (the product
// ID, which gives the page size).
//
// Flash erases the pages covering the image with the configured erase
// command (an image outside flash, in RAM say, is written without),
// writes it in 256-byte Write Memory blocks (the start aligned down and
// the end padded to whole words with 0xFF, which erased flash holds
// anyway), and verifies everything written with Read Memory. A NACK ends
// a command cleanly; after any other failure the next operation syncs
// again, and a sync also recovers a bootloader left inside a command.
//
// Reset sends Go to the start of flash (0x08000000): the bootloader jumps
// to the firmware's vector table. It leaves the clock and USART as the
// bootloader set them, and the board stays out of the bootloader until its
// next reset with BOOT0 high; a board that needs a true reset, or needs
// to be flashed again, needs its BOOT0 and NRST lines driven by other
// means. Parts whose flash is in sectors of unequal size (F2, F4, F7) are
// refused rather than erased wrongly.
package stm32uart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/probes"
)

// Driver is the name the driver registers under.
const Driver = "stm32uart"

// Defaults of Config.
const (
	DefaultBaud     = 115200
	DefaultTimeout  = 5 * time.Second
	DefaultPageSize = 1024
)

// Parity settings.
const (
	ParityEven = "even" // the bootloader's 8E1
	ParityNone = "none" // for pseudo-terminals, which cannot keep parity
)

// Erase settings.
const (
	EraseAuto     = "auto"
	EraseStandard = "0x43" // Erase: one byte per page, pages below 256
	EraseExtended = "0x44" // Extended Erase: two bytes per page
)

const (
	// poll bounds one blocking read so that a cancelled ctx is seen.
	poll = 20 * time.Millisecond
	// syncWait is how long a sync byte waits for its answer.
	syncWait = 100 * time.Millisecond
	// syncBurst and syncBursts: a bootloader inside a command takes sync
	// bytes as its payload; bursts finish the longest command frame
	// (a 256-byte write) within a bounded time.
	syncBurst  = 32
	syncBursts = 10
	// erasePagesPerCmd bounds one erase command (some parts take no
	// more than 512; stm32flash splits the same way).
	erasePagesPerCmd = 128
	// eraseScale: an erase gets one timeout per started block of pages.
	eraseScale = 16
)

func init() {
	probes.Register(Driver, open)
}

var (
	_ probes.Flasher = (*Probe)(nil)
	_ probes.Eraser  = (*Probe)(nil)
	_ probes.Reader  = (*Probe)(nil)
)

// Config configures a Probe.
type Config struct {
	Port     string        // serial port path, required
	Baud     int           // 0 is DefaultBaud
	Parity   string        // ParityEven ("") or ParityNone
	Timeout  time.Duration // per command; 0 is DefaultTimeout
	Erase    string        // EraseAuto (""), EraseStandard or EraseExtended
	PageSize uint32        // 0: by product ID, else DefaultPageSize
	Logger   *slog.Logger  // nil discards
}

// port is the part of serial.Port the driver uses, so that tests can
// stand in for it.
type port interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	SetReadTimeout(t time.Duration) error
	ResetInputBuffer() error
	Close() error
}

// Probe drives one STM32 bootloader on one serial port. Its methods are
// safe for concurrent use; they run one at a time.
type Probe struct {
	cfg  Config
	name string
	log  *slog.Logger
	open func(path string, mode *serial.Mode) (port, error)

	mu     sync.Mutex
	port   port // nil until first use or after the port failed
	closed bool
	synced bool    // the bootloader is synced and waits for a command
	broken bool    // the port failed during the current operation
	info   getInfo // Get's answer, valid while synced
	pid    uint16
	dev    device // the part's page layout, valid while synced
}

// New returns a Probe for cfg.Port. It checks the configuration only; the
// port is opened on first use.
func New(cfg Config) (*Probe, error) {
	if cfg.Port == "" {
		return nil, errors.New("port: required (serial port of the bootloader)")
	}
	switch {
	case cfg.Baud == 0:
		cfg.Baud = DefaultBaud
	case cfg.Baud < 0:
		return nil, fmt.Errorf("baud: %d is negative", cfg.Baud)
	}
	switch cfg.Parity {
	case "":
		cfg.Parity = ParityEven
	case ParityEven, ParityNone:
	default:
		return nil, fmt.Errorf("parity: %q (want %s or %s)", cfg.Parity, ParityEven, ParityNone)
	}
	timeout, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	switch cfg.Erase {
	case "":
		cfg.Erase = EraseAuto
	case EraseAuto, EraseStandard, EraseExtended:
	default:
		return nil, fmt.Errorf("erase: %q (want %s, %s or %s)", cfg.Erase, EraseAuto, EraseStandard, EraseExtended)
	}
	if cfg.PageSize != 0 && cfg.PageSize&(cfg.PageSize-1) != 0 {
		return nil, fmt.Errorf("page_size: %d is not a power of two", cfg.PageSize)
	}
	name := Driver + ":" + cfg.Port
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, name: name, log: log.With("probe", name), open: openSerial}, nil
}

func openSerial(path string, mode *serial.Mode) (port, error) {
	return serial.Open(path, mode)
}

// settings is the driver's part of the inventory.
type settings struct {
	Port     string `json:"port" yaml:"port"`
	Baud     int    `json:"baud" yaml:"baud"`
	Parity   string `json:"parity" yaml:"parity"`
	Timeout  string `json:"timeout" yaml:"timeout"`
	Erase    string `json:"erase" yaml:"erase"`
	PageSize int    `json:"page_size" yaml:"page_size"`
}

// open maps the driver's own settings onto Config; of the parsing, only
// the timeout is common to the drivers (probeutil.ParseTimeout).
func open(st probes.Settings) (probes.Flasher, error) {
	var s settings
	if err := st.Decode(&s); err != nil {
		return nil, err
	}
	timeout, err := probeutil.ParseTimeout(s.Timeout)
	if err != nil {
		return nil, err
	}
	cfg := Config{Port: s.Port, Baud: s.Baud, Parity: s.Parity, Erase: s.Erase, Timeout: timeout}
	if s.PageSize < 0 || s.PageSize > 1<<20 {
		return nil, fmt.Errorf("page_size: %d out of range", s.PageSize)
	}
	cfg.PageSize = uint32(s.PageSize)
	return New(cfg)
}

// String names the probe, e.g. "stm32uart:/dev/ttyUSB0".
func (p *Probe) String() string { return p.name }

// ProductID returns the product ID the bootloader reported, connecting
// if needed.
func (p *Probe) ProductID(ctx context.Context) (uint16, error) {
	var pid uint16
	err := p.do(ctx, func() error { pid = p.pid; return nil })
	return pid, err
}

// Close closes the port. It does not reset the target.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.port == nil {
		return nil
	}
	err := p.port.Close()
	p.port = nil
	if err != nil {
		return fmt.Errorf("%s: close: %w", p, err)
	}
	return nil
}

// do runs f with the port open and the bootloader synced, holding the
// probe for the whole operation. After an error other than a NACK (which
// ends a command cleanly) the bootloader is synced again before the next
// operation; a port that failed is closed and opened again.
func (p *Probe) do(ctx context.Context, f func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: probe is closed: %w", p, probes.ErrProbe)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", p, ctxErr(err))
	}
	p.broken = false
	err := p.connect(ctx)
	if err == nil {
		err = f()
	}
	if err != nil && !errors.Is(err, ErrNACK) && !errors.Is(err, probes.ErrVerify) {
		p.synced = false
	}
	if p.broken && p.port != nil {
		p.port.Close()
		p.port = nil
		p.synced = false
	}
	return err
}

func (p *Probe) connect(ctx context.Context) error {
	if p.port == nil {
		mode := &serial.Mode{BaudRate: p.cfg.Baud, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}
		if p.cfg.Parity == ParityEven {
			mode.Parity = serial.EvenParity
		}
		// No InitialStatusBits: setting modem lines fails on ptys and
		// some adapters wire them to BOOT0 and NRST.
		pt, err := p.open(p.cfg.Port, mode)
		if err != nil {
			return fmt.Errorf("%s: open: %w: %w", p, probes.ErrProbe, err)
		}
		p.port = pt
		p.synced = false
	}
	if p.synced {
		return nil
	}
	if err := p.sync(ctx); err != nil {
		return fmt.Errorf("%s: sync: %w", p, err)
	}
	if err := p.identify(ctx); err != nil {
		return err
	}
	p.synced = true
	return nil
}

// sync brings the bootloader to wait for a command, from any state: fresh
// (0x7F draws ACK), idle (a lone 0x7F is half a command, a second draws
// NACK) or inside a command (sync bytes end it as payload; a NACK
// follows). Single bytes, each awaited, never leave half a command.
func (p *Probe) sync(ctx context.Context) error {
	if err := p.port.ResetInputBuffer(); err != nil {
		p.broken = true
		return fmt.Errorf("port failed: %w: %w", probes.ErrProbe, err)
	}
	wait := min(syncWait, p.cfg.Timeout)
	var noise []byte
	single := func() (bool, error) {
		for range 2 {
			if err := p.send([]byte{bSync}); err != nil {
				return false, err
			}
			ok, err := p.syncReply(ctx, wait, &noise)
			if ok || err != nil {
				return ok, err
			}
		}
		return false, nil
	}
	if ok, err := single(); ok || err != nil {
		return err
	}
	burst := bytes.Repeat([]byte{bSync}, syncBurst)
	for range syncBursts {
		if err := p.send(burst); err != nil {
			return err
		}
		ok, err := p.syncReply(ctx, wait, &noise)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		// The rest of the burst may have drawn more answers and left half
		// a command; drain, then realign with single bytes.
		if err := p.drain(ctx, wait); err != nil {
			return err
		}
		if ok, err := single(); ok || err != nil {
			return err
		}
	}
	if len(noise) > 0 {
		return fmt.Errorf("the device sent % x but never ACK or NACK (wrong baud rate or parity, or not a bootloader?): %w", noise[:min(len(noise), 16)], probes.ErrProbe)
	}
	return fmt.Errorf("no answer to the sync byte 0x7F (is the board in its bootloader, BOOT0 high at reset?): %w", probes.ErrTimeout)
}

// syncReply waits up to wait for ACK or NACK, keeping other bytes in noise.
func (p *Probe) syncReply(ctx context.Context, wait time.Duration, noise *[]byte) (bool, error) {
	deadline := time.Now().Add(wait)
	b := make([]byte, 1)
	for {
		err := p.readFull(ctx, b, deadline, wait)
		if errors.Is(err, errNoReply) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if b[0] == bACK || b[0] == bNACK {
			return true, nil
		}
		if len(*noise) < 64 {
			*noise = append(*noise, b[0])
		}
	}
}

// drain reads and drops bytes until the line has been quiet for wait.
func (p *Probe) drain(ctx context.Context, wait time.Duration) error {
	b := make([]byte, 64)
	for {
		err := p.readFull(ctx, b[:1], time.Now().Add(wait), wait)
		if errors.Is(err, errNoReply) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// identify reads the command list and the product ID and picks the page
// layout.
func (p *Probe) identify(ctx context.Context) error {
	if err := p.command(ctx, cmdGet); err != nil {
		return fmt.Errorf("%s: get: %w", p, err)
	}
	f, err := p.readFrame(ctx)
	if err == nil {
		err = p.ack(ctx, p.cfg.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%s: get: %w", p, err)
	}
	info, err := parseGet(f)
	if err != nil {
		return fmt.Errorf("%s: get: %w: %w", p, probes.ErrProbe, err)
	}
	p.info = info
	p.pid, p.dev = 0, device{}
	if info.has(cmdGetID) {
		if err := p.command(ctx, cmdGetID); err != nil {
			return fmt.Errorf("%s: get id: %w", p, err)
		}
		f, err := p.readFrame(ctx)
		if err == nil {
			err = p.ack(ctx, p.cfg.Timeout)
		}
		if err != nil {
			return fmt.Errorf("%s: get id: %w", p, err)
		}
		pid, err := parseID(f)
		if err != nil {
			return fmt.Errorf("%s: get id: %w: %w", p, probes.ErrProbe, err)
		}
		p.pid = pid
		p.dev = devices[pid]
	}
	p.log.Info("bootloader synced", "version", fmt.Sprintf("%d.%d", info.version>>4, info.version&0xF),
		"commands", fmt.Sprintf("% x", info.cmds), "pid", fmt.Sprintf("%#03x", p.pid), "part", p.dev.name)
	return nil
}

// pageSize is the erase unit: the setting, the part's, or the default.
func (p *Probe) pageSize() uint32 {
	switch {
	case p.cfg.PageSize != 0:
		return p.cfg.PageSize
	case p.dev.pageSize != 0:
		return p.dev.pageSize
	}
	return DefaultPageSize
}

// eraseCmd picks the erase command from the setting and Get's list.
func (p *Probe) eraseCmd() (byte, error) {
	want := map[string]byte{EraseStandard: cmdErase, EraseExtended: cmdExtendedErase}[p.cfg.Erase]
	switch {
	case want != 0 && p.info.has(want):
		return want, nil
	case want == 0 && p.info.has(cmdExtendedErase):
		return cmdExtendedErase, nil
	case want == 0 && p.info.has(cmdErase):
		return cmdErase, nil
	}
	return 0, fmt.Errorf("the bootloader offers no erase command %s (it offers % x): %w", p.cfg.Erase, p.info.cmds, probes.ErrProbe)
}

// Flash erases the pages covering data, writes it at addr in Write
// Memory blocks, and verifies it with Read Memory. progress is called
// after each block.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	if err := p.checkRange("flash", addr, len(data)); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	start := time.Now()
	err := p.do(ctx, func() error { return p.flash(ctx, addr, data, progress) })
	if err == nil {
		p.log.Info("flashed", "addr", fmt.Sprintf("%#08x", addr), "bytes", len(data), "took", time.Since(start))
	}
	return err
}

func (p *Probe) flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	// Write Memory takes whole words at word addresses; the padding is
	// what an erased page holds.
	base := addr &^ 3
	front := int(addr - base)
	buf := slices.Concat(bytes.Repeat([]byte{0xFF}, front), data)
	for len(buf)%4 != 0 {
		buf = append(buf, 0xFF)
	}
	if p.inFlash(base) {
		if err := p.erase(ctx, base, uint32(len(buf))); err != nil {
			return err
		}
	}
	for off := 0; off < len(buf); off += maxChunk {
		chunk := buf[off:min(off+maxChunk, len(buf))]
		a := base + uint32(off)
		if err := p.writeChunk(ctx, a, chunk); err != nil {
			return fmt.Errorf("%s: write at %#08x: %w", p, a, err)
		}
		if progress != nil {
			progress(min(max(off+len(chunk)-front, 0), len(data)), len(data))
		}
	}
	got := make([]byte, len(buf))
	if err := p.read(ctx, base, got); err != nil {
		return err
	}
	if i := probeutil.Mismatch(got, buf); i >= 0 {
		return fmt.Errorf("%s: verify at %#08x: target holds %#02x, image has %#02x: %w", p, base+uint32(i), got[i], buf[i], probes.ErrVerify)
	}
	return nil
}

func (p *Probe) inFlash(a uint32) bool {
	return a >= flashBase && (p.dev.flashSize == 0 || a-flashBase < p.dev.flashSize)
}

func (p *Probe) writeChunk(ctx context.Context, a uint32, chunk []byte) error {
	if err := p.command(ctx, cmdWrite); err != nil {
		return err
	}
	if err := p.sendAck(ctx, addrFrame(a), p.cfg.Timeout); err != nil {
		return err
	}
	return p.sendAck(ctx, writeFrame(chunk), p.cfg.Timeout)
}

// Erase erases the flash pages [addr, addr+length), which must start
// and end on page boundaries.
func (p *Probe) Erase(ctx context.Context, addr, length uint32) error {
	if err := p.checkRange("erase", addr, int(length)); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	return p.do(ctx, func() error {
		ps := p.pageSize()
		if !p.inFlash(addr) || addr%ps != 0 || length%ps != 0 {
			return fmt.Errorf("%s: erase at %#08x+%#x: not whole %d-byte flash pages from %#08x: %w", p, addr, length, ps, uint32(flashBase), probes.ErrProbe)
		}
		return p.erase(ctx, addr, length)
	})
}

// erase erases the pages covering [addr, addr+length) of flash.
func (p *Probe) erase(ctx context.Context, addr, length uint32) error {
	if p.dev.sectors {
		return fmt.Errorf("%s: erase at %#08x: %s (product id %#03x) has flash sectors of unequal size, which %s does not handle: %w", p, addr, p.dev.name, p.pid, Driver, probes.ErrProbe)
	}
	if p.dev.flashSize != 0 && uint64(addr)+uint64(length) > flashBase+uint64(p.dev.flashSize) {
		return fmt.Errorf("%s: erase at %#08x+%#x: past the end of %s flash (%d KiB): %w", p, addr, length, p.dev.name, p.dev.flashSize>>10, probes.ErrProbe)
	}
	code, err := p.eraseCmd()
	if err != nil {
		return fmt.Errorf("%s: erase at %#08x: %w", p, addr, err)
	}
	ps := p.pageSize()
	first := (addr - flashBase) / ps
	last := (uint64(addr-flashBase) + uint64(length) - 1) / uint64(ps)
	for pg := uint64(first); pg <= last; pg += erasePagesPerCmd {
		n := min(uint64(erasePagesPerCmd), last-pg+1)
		pages := make([]uint32, n)
		for i := range pages {
			pages[i] = uint32(pg) + uint32(i)
		}
		a := flashBase + uint32(pg)*ps
		if err := p.erasePages(ctx, code, pages); err != nil {
			return fmt.Errorf("%s: erase at %#08x (pages %d-%d, command %#02x): %w", p, a, pages[0], pages[len(pages)-1], code, err)
		}
	}
	return nil
}

func (p *Probe) erasePages(ctx context.Context, code byte, pages []uint32) error {
	frame, err := eraseFrame(code == cmdExtendedErase, pages)
	if err != nil {
		return fmt.Errorf("%w: %w", probes.ErrProbe, err)
	}
	if err := p.command(ctx, code); err != nil {
		return err
	}
	scale := time.Duration(1 + len(pages)/eraseScale)
	return p.sendAck(ctx, frame, scale*p.cfg.Timeout)
}

// Read reads memory at addr into buf with Read Memory.
func (p *Probe) Read(ctx context.Context, addr uint32, buf []byte) error {
	if err := p.checkRange("read", addr, len(buf)); err != nil {
		return err
	}
	if len(buf) == 0 {
		return nil
	}
	return p.do(ctx, func() error { return p.read(ctx, addr, buf) })
}

func (p *Probe) read(ctx context.Context, addr uint32, buf []byte) error {
	for off := 0; off < len(buf); off += maxChunk {
		chunk := buf[off:min(off+maxChunk, len(buf))]
		a := addr + uint32(off)
		if err := p.readChunk(ctx, a, chunk); err != nil {
			return fmt.Errorf("%s: read at %#08x: %w", p, a, err)
		}
	}
	return nil
}

func (p *Probe) readChunk(ctx context.Context, a uint32, chunk []byte) error {
	if err := p.command(ctx, cmdRead); err != nil {
		return err
	}
	if err := p.sendAck(ctx, addrFrame(a), p.cfg.Timeout); err != nil {
		return err
	}
	n := byte(len(chunk) - 1)
	if err := p.sendAck(ctx, []byte{n, ^n}, p.cfg.Timeout); err != nil {
		return err
	}
	return p.readFull(ctx, chunk, time.Now().Add(p.cfg.Timeout), p.cfg.Timeout)
}

// Reset starts the firmware with Go at the start of flash. The bootloader
// is left: flashing again needs the board reset into it (BOOT0 high).
func (p *Probe) Reset(ctx context.Context) error {
	return p.do(ctx, func() error {
		if !p.info.has(cmdGo) {
			return fmt.Errorf("%s: reset: the bootloader offers no Go command: %w", p, probes.ErrProbe)
		}
		err := p.command(ctx, cmdGo)
		if err == nil {
			err = p.sendAck(ctx, addrFrame(flashBase), p.cfg.Timeout)
		}
		if err != nil {
			return fmt.Errorf("%s: go at %#08x: %w", p, uint32(flashBase), err)
		}
		// The firmware runs now; a later operation must sync anew.
		p.synced = false
		p.log.Info("started firmware", "addr", fmt.Sprintf("%#08x", uint32(flashBase)))
		return nil
	})
}

// checkRange is in every probe driver, not in internal/probeutil: it wraps
// probes.ErrProbe, and the internal leaves import nothing of fudbench.
func (p *Probe) checkRange(op string, addr uint32, n int) error {
	if uint64(addr)+uint64(n) > 1<<32 {
		return fmt.Errorf("%s: %s at %#08x: %d bytes pass the end of the 32-bit address space: %w", p, op, addr, n, probes.ErrProbe)
	}
	return nil
}

// Link layer.

var errNoReply = errors.New("no reply")

// command sends [code, ^code] and waits for its ACK.
func (p *Probe) command(ctx context.Context, code byte) error {
	return p.sendAck(ctx, []byte{code, ^code}, p.cfg.Timeout)
}

func (p *Probe) sendAck(ctx context.Context, b []byte, wait time.Duration) error {
	if err := p.send(b); err != nil {
		return err
	}
	return p.ack(ctx, wait)
}

func (p *Probe) send(b []byte) error {
	for len(b) > 0 {
		n, err := p.port.Write(b)
		if err != nil {
			p.broken = true
			return fmt.Errorf("port failed (unplugged or closed?): %w: %w", probes.ErrProbe, err)
		}
		b = b[n:]
	}
	return nil
}

// ack reads the answer to a frame: nil for ACK, ErrNACK for NACK.
func (p *Probe) ack(ctx context.Context, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	b := make([]byte, 1)
	for {
		if err := p.readFull(ctx, b, deadline, wait); err != nil {
			return err
		}
		switch b[0] {
		case bACK:
			return nil
		case bNACK:
			return ErrNACK
		case bBusy:
			continue
		}
		return fmt.Errorf("the device sent %#02x instead of ACK or NACK: %w", b[0], probes.ErrProbe)
	}
}

// readFrame reads a length-prefixed reply: N, then N+1 bytes.
func (p *Probe) readFrame(ctx context.Context) ([]byte, error) {
	f := make([]byte, 1, 257)
	deadline := time.Now().Add(p.cfg.Timeout)
	if err := p.readFull(ctx, f, deadline, p.cfg.Timeout); err != nil {
		return nil, err
	}
	f = f[:int(f[0])+2]
	if err := p.readFull(ctx, f[1:], deadline, p.cfg.Timeout); err != nil {
		return nil, err
	}
	return f, nil
}

// readFull fills b before deadline; wait is the time allowed, for the
// error text.
func (p *Probe) readFull(ctx context.Context, b []byte, deadline time.Time, wait time.Duration) error {
	for got := 0; got < len(b); {
		if err := ctx.Err(); err != nil {
			return ctxErr(err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("%w within %v: %w", errNoReply, wait, probes.ErrTimeout)
		}
		if err := p.port.SetReadTimeout(max(min(left, poll), time.Millisecond)); err != nil {
			p.broken = true
			return fmt.Errorf("port failed: %w: %w", probes.ErrProbe, err)
		}
		n, err := p.port.Read(b[got:])
		got += n
		if err != nil {
			p.broken = true
			return fmt.Errorf("port failed (unplugged or closed?): %w: %w", probes.ErrProbe, err)
		}
	}
	return nil
}

func ctxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", probes.ErrTimeout, err)
	}
	return err
}
