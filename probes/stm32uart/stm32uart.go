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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/driverreg"
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
	// maxDrain bounds the bytes drained after a sync burst: a burst draws
	// at most one answer a byte, so 1024 is 32 bursts' worth.
	maxDrain = 1024
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
	cfg := Config{Port: driverreg.Path(st, s.Port), Baud: s.Baud, Parity: s.Parity, Erase: s.Erase, Timeout: timeout}
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

// Identify connects to the bootloader (sync, GET, GET ID) and names the
// product ID it reported, e.g. "STM32 PID 0x0413".
func (p *Probe) Identify(ctx context.Context) (string, error) {
	pid, err := p.ProductID(ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("STM32 PID %#04x", pid), nil
}
