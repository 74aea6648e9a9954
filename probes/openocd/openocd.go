// Package openocd is the probe driver "openocd": a client of OpenOCD's Tcl
// RPC server (TCP, port 6666 by default), which flashes through OpenOCD's
// own program command. Importing it registers the driver.
//
// Settings:
//
//	address: 127.0.0.1:6666   # OpenOCD's tcl_port (host:port)
//	timeout: 60s              # per command (program, erase, reset, each
//	                          # read_memory chunk)
//	program: verify           # extra words for program: verify (always
//	                          # added), preverify; never reset or exit
//	reset: reset run          # Tcl command for Reset
//	halt: reset halt          # Tcl command for Halt
//	temp_dir: /srv/images     # where Flash writes the image file; OpenOCD
//	                          # must read it under the same path
//
// # Commands and replies
//
// Each command and each reply ends with the byte 0x1a. OpenOCD answers a
// failed command with its error text alone, indistinguishable from a
// result, so every command CMD goes out wrapped as
//
//	set fudbench_rc [catch {CMD} fudbench_msg]; list $fudbench_rc $fudbench_msg
//
// and the reply is a two-element Tcl list: the catch code (0 success, 1
// error, other codes are Tcl's return, break, continue) and the result or
// error message. CMD must therefore balance its braces; the driver quotes
// the words it builds itself.
//
// # Notifications
//
// With tcl_notifications (or tcl_trace) on, OpenOCD also sends frames of
// its own, for example "type target_reset mode run\r\n" or "type
// target_event event reset-start\r\n", before, between and after
// replies. The rule: a frame that starts with "type " is a notification,
// because a wrapped reply always starts with the integer catch code; it is
// passed to Config.Notify and logged, and the first other frame is the
// reply to the pending command. Notifications that arrive between commands
// wait in the socket and are consumed before the next reply.
//
// # Flashing
//
// Flash writes the image to a temporary *.bin file and runs
//
//	program {PATH} verify 0x08000000
//
// OpenOCD's program resets the target with "reset init", erases, writes,
// verifies, and leaves the target halted; Reset is a separate call. It
// reports no progress over RPC, so Flash reports 0 at the start and the
// total at the end. program guesses the image format from its first bytes
// (ELF, Intel HEX or S-record signatures) and cannot be told "bin", so
// Flash refuses a binary that starts like one of those. OpenOCD reads the
// file itself: it must run on the same host, or see temp_dir under the
// same path. program prints its details to OpenOCD's log only; over RPC
// its failures are one of "** OpenOCD init failed **", "** Unable to
// reset target **", "** Programming Failed **" and "** Verify Failed **"
// (the last is probes.ErrVerify).
//
// Erase runs "flash erase_address ADDR LEN", which needs ADDR and LEN on
// sector boundaries (the driver never passes pad, so nothing outside the
// range is erased); EraseSector runs "flash erase_sector BANK FIRST
// LAST". Read runs "read_memory ADDR 8 N" (OpenOCD 0.12 and later) in
// chunks of ReadChunk bytes.
//
// The connection is made on first use and made again when OpenOCD has
// closed it between operations.
package openocd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/internal/driverreg"
	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/probes"
)

// Driver is the name the driver registers under.
const Driver = "openocd"

// Defaults of Config.
const (
	DefaultAddress = "127.0.0.1:6666"
	DefaultTimeout = 60 * time.Second
	DefaultProgram = "verify"
	DefaultReset   = "reset run"
	DefaultHalt    = "reset halt"
)

const (
	// terminator ends every command and every reply.
	terminator = 0x1a
	// ReadChunk is the most bytes one read_memory asks for; OpenOCD
	// allows 64 Ki elements, and 4 KiB keeps a reply near 20 KB.
	ReadChunk = 4096
	// maxFrame bounds one frame, so that a peer that never sends the
	// terminator cannot make the client buffer without end.
	maxFrame = 4 << 20
	// aliveWait bounds the check for a hung-up connection.
	aliveWait = time.Millisecond
	// Names of the Tcl variables the wrapper uses, unlikely to clash
	// with a user's.
	rcVar  = "fudbench_rc"
	msgVar = "fudbench_msg"
	// verifyFailed is program's message when verify_image fails.
	verifyFailed = "** Verify Failed **"
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
	Address string        // host:port of OpenOCD's Tcl RPC server; "" is DefaultAddress
	Timeout time.Duration // per command; 0 is DefaultTimeout
	// Program holds extra words for program, separated by spaces; ""
	// is DefaultProgram. "verify" is added when missing; "reset" and
	// "exit" are refused (Reset is separate; exit ends OpenOCD).
	Program string
	Reset   string // Tcl command for Reset; "" is DefaultReset
	Halt    string // Tcl command for Halt; "" is DefaultHalt
	TempDir string // directory for the image file; "" is os.TempDir()
	// Notify, if not nil, is called with each asynchronous notification
	// (trailing CR LF removed), from the goroutine running a command.
	Notify func(msg string)
	Logger *slog.Logger // nil discards
}

// Probe is a client of one OpenOCD Tcl RPC server. Its methods are safe
// for concurrent use; they run one at a time.
type Probe struct {
	cfg     Config
	program []string // words between the file name and the address
	name    string
	log     *slog.Logger

	mu     sync.Mutex
	c      *conn // nil until the first use or after a broken connection
	closed bool
}

// New returns a Probe for the server at cfg.Address. It checks the
// configuration only; the connection is made on first use.
func New(cfg Config) (*Probe, error) {
	if cfg.Address == "" {
		cfg.Address = DefaultAddress
	}
	if host, port, err := net.SplitHostPort(cfg.Address); err != nil || port == "" || host == "" {
		return nil, fmt.Errorf("address: %q is no host:port", cfg.Address)
	}
	timeout, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	if strings.TrimSpace(cfg.Program) == "" {
		cfg.Program = DefaultProgram
	}
	words, err := programWords(cfg.Program)
	if err != nil {
		return nil, fmt.Errorf("program: %w", err)
	}
	for _, s := range []struct {
		key string
		cmd *string
		def string
	}{{"reset", &cfg.Reset, DefaultReset}, {"halt", &cfg.Halt, DefaultHalt}} {
		if strings.TrimSpace(*s.cmd) == "" {
			*s.cmd = s.def
		}
		if err := bodySafe(*s.cmd); err != nil {
			return nil, fmt.Errorf("%s: %q %w", s.key, *s.cmd, err)
		}
	}
	if cfg.TempDir != "" {
		if err := pathSafe(cfg.TempDir); err != nil {
			return nil, fmt.Errorf("temp_dir: %w", err)
		}
	}
	name := Driver + ":" + cfg.Address
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, program: words, name: name, log: log.With("probe", name)}, nil
}

// programWords checks the extra words for program and adds verify.
func programWords(s string) ([]string, error) {
	words := strings.Fields(s)
	hasVerify := false
	for _, w := range words {
		switch w {
		case "verify":
			hasVerify = true
		case "reset":
			return nil, errors.New(`"reset" is not allowed: Reset is a separate call`)
		case "exit":
			return nil, errors.New(`"exit" is not allowed: it shuts OpenOCD down`)
		}
		for i := 0; i < len(w); i++ {
			if c := w[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return nil, fmt.Errorf("word %q: only letters, digits, - and _ are allowed", w)
			}
		}
	}
	if !hasVerify {
		words = append(words, "verify")
	}
	return words, nil
}

// pathSafe refuses paths that program cannot take: it puts the name
// between braces and evaluates it again.
func pathSafe(p string) error {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '{' || c == '}' || c == '\\' {
			return fmt.Errorf("%q: braces, backslashes and control characters cannot pass through openocd's program", p)
		}
	}
	return nil
}

// settings is the driver's part of the inventory.
type settings struct {
	Address string `json:"address" yaml:"address"`
	Timeout string `json:"timeout" yaml:"timeout"`
	Program string `json:"program" yaml:"program"`
	Reset   string `json:"reset" yaml:"reset"`
	Halt    string `json:"halt" yaml:"halt"`
	TempDir string `json:"temp_dir" yaml:"temp_dir"`
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
	return New(Config{Address: s.Address, Program: s.Program, Reset: s.Reset, Halt: s.Halt, TempDir: driverreg.Path(st, s.TempDir), Timeout: timeout})
}

// String names the probe, e.g. "openocd:127.0.0.1:6666".
func (p *Probe) String() string { return p.name }

// CommandError is OpenOCD's refusal of a command: its catch code was not
// 0. It wraps probes.ErrProbe, or probes.ErrVerify when program's verify
// failed.
type CommandError struct {
	Probe   string // the probe's name
	Op      string // the command and its address, e.g. "program at 0x08000000"
	Command string // the Tcl command as sent, unwrapped
	Code    int    // Tcl's catch code: 1 for an error
	Message string // OpenOCD's message; often empty, the details being in its log
}

func (e *CommandError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = "failed without a message (the details are in OpenOCD's log)"
	}
	if e.Code != 1 {
		msg += fmt.Sprintf(" (tcl code %d)", e.Code)
	}
	return fmt.Sprintf("%s: %s: %s", e.Probe, e.Op, msg)
}

// Unwrap makes errors.Is find probes.ErrVerify for a failed verify and
// probes.ErrProbe otherwise.
func (e *CommandError) Unwrap() error {
	if e.Message == verifyFailed {
		return probes.ErrVerify
	}
	return probes.ErrProbe
}

// Command runs a Tcl command on OpenOCD and returns its result. cmd must
// balance its braces. A refusal is a *CommandError.
func (p *Probe) Command(ctx context.Context, cmd string) (string, error) {
	if err := bodySafe(cmd); err != nil {
		return "", fmt.Errorf("%s: command %q %w: %w", p, short(cmd), err, probes.ErrProbe)
	}
	var res string
	err := p.do(ctx, short(cmd), func(c *conn) error {
		var err error
		res, err = c.call(ctx, short(cmd), cmd)
		return err
	})
	return res, err
}

// Reset runs the Reset command.
func (p *Probe) Reset(ctx context.Context) error {
	return p.run(ctx, p.cfg.Reset, p.cfg.Reset)
}

// Halt runs the Halt command (reset and halt).
func (p *Probe) Halt(ctx context.Context) error {
	return p.run(ctx, p.cfg.Halt, p.cfg.Halt)
}

// Erase erases [addr, addr+length) with flash erase_address. Both ends
// must lie on sector boundaries of a flash bank.
func (p *Probe) Erase(ctx context.Context, addr, length uint32) error {
	if err := p.checkRange("flash erase_address", addr, int(length)); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	op := fmt.Sprintf("flash erase_address at 0x%08x+0x%x", addr, length)
	return p.run(ctx, op, fmt.Sprintf("flash erase_address 0x%08x 0x%x", addr, length))
}

// EraseSector erases sectors first to last, inclusive, of flash bank
// bank with flash erase_sector.
func (p *Probe) EraseSector(ctx context.Context, bank, first, last int) error {
	op := fmt.Sprintf("flash erase_sector bank %d sectors %d..%d", bank, first, last)
	if bank < 0 || first < 0 || last < first {
		return fmt.Errorf("%s: %s: want bank >= 0 and 0 <= first <= last: %w", p, op, probes.ErrProbe)
	}
	return p.run(ctx, op, fmt.Sprintf("flash erase_sector %d %d %d", bank, first, last))
}

// Read reads target memory at addr into buf with read_memory.
func (p *Probe) Read(ctx context.Context, addr uint32, buf []byte) error {
	if err := p.checkRange("read_memory", addr, len(buf)); err != nil {
		return err
	}
	return p.do(ctx, "read_memory", func(c *conn) error {
		for done := 0; done < len(buf); {
			a := addr + uint32(done)
			n := min(ReadChunk, len(buf)-done)
			op := fmt.Sprintf("read_memory at 0x%08x (%d bytes)", a, n)
			res, err := c.call(ctx, op, fmt.Sprintf("read_memory 0x%08x 8 %d", a, n))
			if err != nil {
				return err
			}
			if err := parseBytes(res, buf[done:done+n]); err != nil {
				return fmt.Errorf("%s: %s: reply %q: %w: %w", p, op, short(res), probes.ErrProbe, err)
			}
			done += n
		}
		return nil
	})
}

// parseBytes fills p from a read_memory result: a list of exactly
// len(p) numbers (OpenOCD writes them as 0x..) below 256.
func parseBytes(res string, p []byte) error {
	elems, err := parseListN(res, len(p))
	if err != nil {
		return err
	}
	if len(elems) != len(p) {
		return fmt.Errorf("%d values, want %d", len(elems), len(p))
	}
	for i, e := range elems {
		v, err := strconv.ParseUint(e, 0, 8)
		if err != nil {
			return fmt.Errorf("value %d: %q is no byte", i, short(e))
		}
		p[i] = byte(v)
	}
	return nil
}

// checkRange is in every probe driver, like ctxErr: it wraps
// probes.ErrProbe.
func (p *Probe) checkRange(op string, addr uint32, n int) error {
	if uint64(addr)+uint64(n) > 1<<32 {
		return fmt.Errorf("%s: %s at 0x%08x: %d bytes pass the end of the 32-bit address space: %w", p, op, addr, n, probes.ErrProbe)
	}
	return nil
}

// run runs one command whose result does not matter.
func (p *Probe) run(ctx context.Context, op, cmd string) error {
	return p.do(ctx, op, func(c *conn) error {
		_, err := c.call(ctx, op, cmd)
		return err
	})
}

// Close closes the connection. It does not touch the target.
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
	if err := c.nc.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", p, err)
	}
	return nil
}
