// Package gdbrsp is the probe driver "gdbrsp": a GDB remote serial protocol
// client that flashes a target through any GDB server — J-Link GDB Server,
// OpenOCD, pyOCD, probe-rs, st-util, QEMU, or the simulated board's probe
// port. Importing it registers the driver.
//
// Settings:
//
//	address: 127.0.0.1:3333   # the GDB server (host:port), or
//	port: /dev/ttyACM0        # its serial port (Black Magic Probe); one is required
//	reset: reset              # monitor command for Reset (qRcmd): "reset",
//	                          # "reset run", "system_reset" (QEMU)...
//	halt: reset halt          # monitor command for Halt
//	timeout: 10s              # per command; erase and vFlashDone get one
//	                          # timeout per started 64 KiB
//	verify: crc               # crc (qCRC, read-back if unsupported) | read | none
//	erased: 0xff              # value of erased flash: 0xff, or 0x00 for flash
//	                          # that erases to zero (STM32L1-class parts)
//
// A serial port is opened raw at 115200 8N1, its modem lines untouched.
//
// The connection is made on first use, so a probe can be opened while the
// board is unpowered, and made again when the server has closed it between
// operations. The client reads qSupported (PacketSize, the memory map,
// QStartNoAckMode) and the memory map. Inside flash regions Flash erases
// whole blocks with vFlashErase (data beyond the image in its first and last
// block is erased too, as GDB's load does), writes with vFlashWrite and ends
// with vFlashDone; elsewhere, or when the server has no memory map, it writes
// with X and falls back to M when X gets an empty reply. Then it verifies.
//
// Erase leaves out the erase blocks that already hold only the erased
// value, as J-Link and pyOCD do: it asks the server for each block's qCRC
// and compares it with the CRC-32 of a blank block, then erases the blocks
// that differ, consecutive ones of a region in one vFlashErase. Without a
// memory map, or when the server answers qCRC with nothing or an error, it
// erases the whole range. LastErase tells how many blocks were left out.
//
// Close detaches with D, which lets the core run on most servers, unless the
// last command was Halt.
package gdbrsp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/internal/driverreg"
	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/probes"
)

// Driver is the name the driver registers under.
const Driver = "gdbrsp"

// Defaults of Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultReset   = "reset"
	DefaultHalt    = "reset halt"
)

// Verification methods.
const (
	VerifyCRC  = "crc"  // qCRC, falling back to read-back when unsupported
	VerifyRead = "read" // read back with m and compare
	VerifyNone = "none"
)

const (
	// maxRetries bounds retransmissions of one packet on '-' and requests
	// for one reply with a bad checksum.
	maxRetries = 8
	// defaultPacketSize is used when qSupported names none (GDB's own
	// starting assumption).
	defaultPacketSize = 400
	// crcChunk bounds one qCRC so that a slow target answers within one
	// command timeout and a mismatch is placed within it.
	crcChunk = 64 << 10
	// scaleUnit: erase and vFlashDone get one timeout per started unit.
	scaleUnit = 64 << 10
	// aliveWait bounds the check for a hung-up connection before each
	// operation.
	aliveWait = time.Millisecond
	// detachTimeout bounds the courtesy D at Close.
	detachTimeout = time.Second
)

func init() {
	probes.Register(Driver, open)
}

var (
	_ probes.Flasher = (*Probe)(nil)
	_ probes.Eraser  = (*Probe)(nil)
	_ probes.Reader  = (*Probe)(nil)
	_ probes.Halter  = (*Probe)(nil)
)

// Config configures a Probe.
type Config struct {
	Address string        // host:port of the GDB server; this or Port is required
	Port    string        // serial device of the GDB server, e.g. a Black Magic Probe's /dev/ttyACM0
	Reset   string        // monitor command for Reset; "" is DefaultReset
	Halt    string        // monitor command for Halt; "" is DefaultHalt
	Timeout time.Duration // per command; 0 is DefaultTimeout
	Verify  string        // VerifyCRC (""), VerifyRead or VerifyNone
	// ErasedZero: the target's flash erases to 0x00, not 0xff; Erase
	// looks for blocks of that value to leave out.
	ErasedZero bool
	Logger     *slog.Logger // nil discards
}

// Probe is a GDB RSP client for one GDB server. Its methods are safe for
// concurrent use; they run one at a time.
type Probe struct {
	cfg  Config
	name string
	log  *slog.Logger

	mu     sync.Mutex
	c      *conn // nil until the first use or after a broken connection
	closed bool
	halted bool   // the last monitor command was Halt
	output string // console output of the last monitor command
	// noSkip: Erase erases every block, blank or not (a test hook, so
	// that benchmarks measure what skipping saves).
	noSkip    bool
	lastErase EraseStats
}

// EraseStats describes the last Erase.
type EraseStats struct {
	// Blocks is the number of erase blocks in the range; 0 when the
	// server has no memory map.
	Blocks int
	// Skipped is the number of blocks found blank by qCRC and left out.
	Skipped int
	// Commands is the number of vFlashErase commands sent.
	Commands int
}

// LastErase describes the last Erase, successful or not.
func (p *Probe) LastErase() EraseStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErase
}

// erasedValue is the value of a blank flash byte.
func (p *Probe) erasedValue() byte {
	if p.cfg.ErasedZero {
		return 0x00
	}
	return 0xff
}

// New returns a Probe for the server at cfg.Address or cfg.Port. It checks
// the configuration only; the connection is made on first use.
func New(cfg Config) (*Probe, error) {
	switch {
	case cfg.Address != "" && cfg.Port != "":
		return nil, fmt.Errorf("address %q and port %q: give one, not both", cfg.Address, cfg.Port)
	case cfg.Port != "":
	case cfg.Address == "":
		return nil, errors.New("address: required (host:port of the gdb server), or port (its serial device)")
	default:
		if host, port, err := net.SplitHostPort(cfg.Address); err != nil || port == "" || host == "" {
			return nil, fmt.Errorf("address: %q is no host:port", cfg.Address)
		}
	}
	if cfg.Reset == "" {
		cfg.Reset = DefaultReset
	}
	if cfg.Halt == "" {
		cfg.Halt = DefaultHalt
	}
	timeout, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	switch cfg.Verify {
	case "":
		cfg.Verify = VerifyCRC
	case VerifyCRC, VerifyRead, VerifyNone:
	default:
		return nil, fmt.Errorf("verify: %q (want %s, %s or %s)", cfg.Verify, VerifyCRC, VerifyRead, VerifyNone)
	}
	name := Driver + ":" + cfg.peer()
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, name: name, log: log.With("probe", name)}, nil
}

// settings is the driver's part of the inventory.
type settings struct {
	Address string `json:"address" yaml:"address"`
	Port    string `json:"port" yaml:"port"`
	Reset   string `json:"reset" yaml:"reset"`
	Halt    string `json:"halt" yaml:"halt"`
	Timeout string `json:"timeout" yaml:"timeout"`
	Verify  string `json:"verify" yaml:"verify"`
	Erased  *int   `json:"erased" yaml:"erased"` // nil: 0xff
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
	zero := false
	if s.Erased != nil {
		switch *s.Erased {
		case 0xff:
		case 0x00:
			zero = true
		default:
			return nil, fmt.Errorf("erased: %#x (want 0xff or 0x00)", *s.Erased)
		}
	}
	return New(Config{Address: s.Address, Port: driverreg.Path(st, s.Port), Reset: s.Reset, Halt: s.Halt, Verify: s.Verify, Timeout: timeout, ErasedZero: zero})
}

// String names the probe, e.g. "gdbrsp:127.0.0.1:3333".
func (p *Probe) String() string { return p.name }

// Output returns the console output (O-packets) of the last monitor
// command.
func (p *Probe) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output
}

// ReplyError is a server's error reply ("E xx", "E.text") or refusal of a
// command. It wraps probes.ErrProbe.
type ReplyError struct {
	Probe string // the probe's name
	Op    string // the command and its address, e.g. "vFlashErase at 0x08000000+0x4000"
	Reply string // the reply payload, e.g. "E03"
	Hint  string // what the client found out about the cause, or ""
}

func (e *ReplyError) Error() string {
	msg := fmt.Sprintf("%s: %s: the server answered %q", e.Probe, e.Op, e.Reply)
	if e.Reply == "" {
		msg = fmt.Sprintf("%s: %s: the server does not support it (empty reply)", e.Probe, e.Op)
	}
	if e.Hint != "" {
		msg += " (" + e.Hint + ")"
	}
	return msg
}

// Unwrap makes errors.Is(err, probes.ErrProbe) true.
func (e *ReplyError) Unwrap() error { return probes.ErrProbe }

// Close detaches from the server (unless the target was left halted) and
// closes the connection.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	c := p.c
	p.c = nil
	if c == nil {
		return nil
	}
	if !p.halted && c.alive() {
		ctx, cancel := context.WithTimeout(context.Background(), detachTimeout)
		// A failed detach changes nothing for the caller: the
		// connection is closed either way.
		if _, err := c.exchange(ctx, "D", []byte("D")); err != nil {
			p.log.Debug("detach failed", "err", err)
		}
		cancel()
	}
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", p, err)
	}
	return nil
}

// MemoryMap returns the server's memory map, connecting if needed. It is
// empty when the server serves none.
func (p *Probe) MemoryMap(ctx context.Context) ([]Region, error) {
	var rs []Region
	err := p.do(ctx, "memory map", func(c *conn) error {
		rs = append([]Region(nil), c.regions...)
		return nil
	})
	return rs, err
}

// Reset runs the Reset monitor command.
func (p *Probe) Reset(ctx context.Context) error {
	return p.do(ctx, "reset", func(c *conn) error {
		err := c.monitor(ctx, p.cfg.Reset)
		if err == nil {
			p.halted = false
		}
		return err
	})
}

// Halt runs the Halt monitor command (reset and halt).
func (p *Probe) Halt(ctx context.Context) error {
	return p.do(ctx, "halt", func(c *conn) error {
		err := c.monitor(ctx, p.cfg.Halt)
		if err == nil {
			p.halted = true
		}
		return err
	})
}

// Read reads target memory at addr into buf with m packets.
func (p *Probe) Read(ctx context.Context, addr uint32, buf []byte) error {
	if err := p.checkRange("read", addr, len(buf)); err != nil {
		return err
	}
	return p.do(ctx, "read", func(c *conn) error { return c.read(ctx, addr, buf) })
}

// Erase erases [addr, addr+length) with vFlashErase and vFlashDone. When
// the server has a memory map the range must lie in flash regions and
// start and end on erase-block boundaries; it is split at region borders,
// and blocks that qCRC finds blank already are left out.
func (p *Probe) Erase(ctx context.Context, addr, length uint32) error {
	if err := p.checkRange("erase", addr, int(length)); err != nil {
		return err
	}
	p.mu.Lock()
	p.lastErase = EraseStats{}
	p.mu.Unlock()
	if length == 0 {
		return nil
	}
	return p.do(ctx, "erase", func(c *conn) error { return c.erase(ctx, addr, length) })
}

// Flash erases what it needs, writes data at addr, verifies it as
// configured, and reports progress after each written chunk.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	if err := p.checkRange("flash", addr, len(data)); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	start := time.Now()
	err := p.do(ctx, "flash", func(c *conn) error { return c.flash(ctx, addr, data, progress) })
	if err == nil {
		p.log.Info("flashed", "addr", fmt.Sprintf("%#08x", addr), "bytes", len(data), "verify", p.cfg.Verify, "took", time.Since(start))
	}
	return err
}

// checkRange is in every probe driver, like ctxErr: it wraps
// probes.ErrProbe.
func (p *Probe) checkRange(op string, addr uint32, n int) error {
	if uint64(addr)+uint64(n) > 1<<32 {
		return fmt.Errorf("%s: %s at %#08x: %d bytes pass the end of the 32-bit address space: %w", p, op, addr, n, probes.ErrProbe)
	}
	return nil
}

// Identify connects (qSupported, the memory map) and reads the first
// word of the first flash region: what a wiring check shows of the
// target. Without a memory map it says so and reads nothing.
func (p *Probe) Identify(ctx context.Context) (string, error) {
	var out string
	err := p.do(ctx, "identify", func(c *conn) error {
		var flash *Region
		parts := make([]string, 0, len(c.regions))
		for i, r := range c.regions {
			parts = append(parts, r.String())
			if flash == nil && r.Kind == KindFlash {
				flash = &c.regions[i]
			}
		}
		if flash == nil {
			out = fmt.Sprintf("connected, packet size %d, no flash in the memory map", c.pktSize)
			if len(parts) > 0 {
				out += " (" + strings.Join(parts, ", ") + ")"
			}
			return nil
		}
		var word [4]byte
		if err := c.read(ctx, flash.Start, word[:]); err != nil {
			return err
		}
		out = fmt.Sprintf("%s; %#08x: % x", strings.Join(parts, ", "), flash.Start, word[:])
		return nil
	})
	return out, err
}
