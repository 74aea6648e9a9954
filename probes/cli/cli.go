// Package cli holds the probe drivers "probe-rs" and "pyocd": thin wrappers
// that flash a board by running the vendor-neutral command-line flashers.
// Importing it registers both drivers.
//
// Settings of "probe-rs":
//
//	chip: STM32F103C8            # --chip, required
//	probe: "0483:3748:0671FF54"  # --probe VID:PID[:SERIAL], required
//	program: /opt/bin/probe-rs   # default "probe-rs" on PATH
//	timeout: 120s                # per command (default 120s)
//	verify: true                 # pass --verify (default true)
//	extra: [--speed, "4000"]     # added to every command's options
//
// Settings of "pyocd":
//
//	target: stm32f103rc          # -t, required
//	uid: 0671FF54                # -u (probe unique ID), required
//	program, timeout, extra      # as above; program defaults to "pyocd"
//
// Flash writes the image to a temporary .bin file and runs
//
//	probe-rs download --chip CHIP --probe PROBE --binary-format bin --base-address ADDR [--verify] EXTRA... -- FILE
//	pyocd load --no-wait -t TARGET -u UID --format bin --base-address ADDR EXTRA... -- FILE
//
// and Reset runs
//
//	probe-rs reset --chip CHIP --probe PROBE EXTRA...
//	pyocd reset --no-wait -t TARGET -u UID EXTRA...
//
// probe-rs is never given --report: with it, it exits 0 even when flashing
// failed. pyOCD gets --no-wait so that a missing probe is an error at once
// instead of a wait until the timeout. Verification is the tool's own:
// probe-rs reads back with --verify; pyOCD's load compares nothing
// after writing, so a pyOCD Flash that returns nil means only that pyOCD
// reported success.
//
// No shell is involved: each argument is passed literally. A chip, target,
// probe or uid that starts with "-" is refused, and the image file comes
// after "--", so no inventory value can turn into an option. Each command
// runs in its own process group, killed as a whole when the timeout or the
// caller's deadline passes.
//
// Exit status 0 is success; 1 is a failure and 2 a usage error (both tools
// follow this convention: clap and argparse exit 2 on bad arguments); any
// other status is a failure too. Errors carry the last lines of the tool's
// stderr. The last 64 KiB of each command's combined output are kept for
// Output and the log.
package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/internal/driverreg"
	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/internal/proc"
	"github.com/fudbench/fudbench/probes"
)

// Driver names, which are also the default program names.
const (
	ProbeRS = "probe-rs"
	PyOCD   = "pyocd"
)

// DefaultTimeout bounds each command when the settings give none: a mass
// erase and write of a large part takes a while.
const DefaultTimeout = 120 * time.Second

const (
	// outputMax is how much of a command's combined output is kept.
	outputMax = 64 << 10
	// errorLines is how many of a failing command's last stderr lines go
	// into its error.
	errorLines = 8
)

func init() {
	probes.Register(ProbeRS, openProbeRS)
	probes.Register(PyOCD, openPyOCD)
}

var _ probes.Flasher = (*Probe)(nil)

// Config configures a Probe.
type Config struct {
	// Tool is ProbeRS or PyOCD.
	Tool string
	// Chip is probe-rs's --chip or pyOCD's -t target type. Required.
	Chip string
	// Probe selects the debug probe: probe-rs's --probe VID:PID[:SERIAL]
	// or pyOCD's -u unique ID. Required, so that of two identical boards
	// the right one is flashed.
	Probe string
	// Program is the tool's path; "" is Tool looked up on PATH.
	Program string
	// Timeout bounds each command; 0 is DefaultTimeout. A caller's
	// earlier deadline wins.
	Timeout time.Duration
	// Verify passes --verify to probe-rs. pyOCD has no such option and
	// refuses Verify.
	Verify bool
	// Extra is added to the options of every command, before "--".
	Extra []string
	// Logger receives one record per command; nil discards.
	Logger *slog.Logger
}

// Probe flashes through a command-line tool. Its methods are safe for
// concurrent use; commands run one at a time.
type Probe struct {
	cfg  Config
	name string
	log  *slog.Logger

	mu     sync.Mutex
	closed bool
	output string // combined output of the last command
}

// New checks cfg and returns a Probe. It runs nothing: a missing tool is
// found at the first command.
func New(cfg Config) (*Probe, error) {
	chipKey, probeKey := "chip", "probe"
	switch cfg.Tool {
	case ProbeRS:
	case PyOCD:
		chipKey, probeKey = "target", "uid"
		if cfg.Verify {
			return nil, errors.New("verify: pyocd load has no verify option")
		}
	default:
		return nil, fmt.Errorf("tool: %q (want %s or %s)", cfg.Tool, ProbeRS, PyOCD)
	}
	if err := checkValue(chipKey, cfg.Chip); err != nil {
		return nil, err
	}
	if err := checkValue(probeKey, cfg.Probe); err != nil {
		return nil, err
	}
	if cfg.Tool == ProbeRS {
		if err := checkSelector(cfg.Probe); err != nil {
			return nil, err
		}
	}
	for i, a := range cfg.Extra {
		if strings.ContainsRune(a, 0) {
			return nil, fmt.Errorf("extra[%d]: contains a NUL byte", i)
		}
		if a == "--" {
			return nil, fmt.Errorf("extra[%d]: %q would make the image file name an option's value or a second file", i, a)
		}
	}
	if strings.ContainsRune(cfg.Program, 0) {
		return nil, errors.New("program: contains a NUL byte")
	}
	if cfg.Program == "" {
		cfg.Program = cfg.Tool
	}
	timeout, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	cfg.Extra = append([]string(nil), cfg.Extra...)
	name := cfg.Tool + ":" + cfg.Probe
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Probe{cfg: cfg, name: name, log: log.With("probe", name)}, nil
}

// checkValue refuses an empty value and one that the tool would read as
// an option.
func checkValue(key, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: required", key)
	case strings.HasPrefix(v, "-"):
		return fmt.Errorf("%s: %q starts with \"-\" and would be read as an option", key, v)
	case strings.ContainsRune(v, 0):
		return fmt.Errorf("%s: contains a NUL byte", key)
	}
	return nil
}

// checkSelector checks probe-rs's VID:PID[:SERIAL] form, so that a typo is
// found at load time rather than as "no probe found" on the bench.
func checkSelector(s string) error {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 || !isHex16(parts[0]) || !isHex16(parts[1]) {
		return fmt.Errorf("probe: %q is not VID:PID[:SERIAL] with hexadecimal VID and PID", s)
	}
	return nil
}

func isHex16(s string) bool {
	if len(s) == 0 || len(s) > 4 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// String names the probe, e.g. "probe-rs:0483:3748:0671FF54".
func (p *Probe) String() string { return p.name }

// Output returns the combined stdout and stderr of the last command, at
// most its last 64 KiB.
func (p *Probe) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output
}

// Close marks the probe closed; there is nothing held between commands.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

// FlashArgs returns the arguments (without the program) of the command
// that writes file at addr.
func (p *Probe) FlashArgs(addr uint32, file string) []string {
	a := fmt.Sprintf("%#x", addr)
	var args []string
	switch p.cfg.Tool {
	case ProbeRS:
		args = []string{"download", "--chip", p.cfg.Chip, "--probe", p.cfg.Probe, "--binary-format", "bin", "--base-address", a}
		if p.cfg.Verify {
			args = append(args, "--verify")
		}
	case PyOCD:
		args = []string{"load", "--no-wait", "-t", p.cfg.Chip, "-u", p.cfg.Probe, "--format", "bin", "--base-address", a}
	}
	args = append(args, p.cfg.Extra...)
	return append(args, "--", file)
}

// ResetArgs returns the arguments (without the program) of the command
// that resets the target.
func (p *Probe) ResetArgs() []string {
	var args []string
	switch p.cfg.Tool {
	case ProbeRS:
		args = []string{"reset", "--chip", p.cfg.Chip, "--probe", p.cfg.Probe}
	case PyOCD:
		args = []string{"reset", "--no-wait", "-t", p.cfg.Chip, "-u", p.cfg.Probe}
	}
	return append(args, p.cfg.Extra...)
}

// Flash writes data to a temporary file and has the tool write it at addr.
// progress, if not nil, is called with 0 before and len(data) after: the
// tool's own progress output is not parsed.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	if uint64(addr)+uint64(len(data)) > 1<<32 {
		return fmt.Errorf("%s: flash at %#08x: %d bytes pass the end of the 32-bit address space: %w", p, addr, len(data), probes.ErrProbe)
	}
	if len(data) == 0 {
		return nil
	}
	op := fmt.Sprintf("flash at %#08x (%d bytes)", addr, len(data))
	file, cleanup, err := writeImage(data)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", p, op, err)
	}
	defer cleanup()
	if progress != nil {
		progress(0, len(data))
	}
	if err := p.run(ctx, op, p.FlashArgs(addr, file)); err != nil {
		return err
	}
	if progress != nil {
		progress(len(data), len(data))
	}
	return nil
}

// Reset has the tool reset the target.
func (p *Probe) Reset(ctx context.Context) error {
	return p.run(ctx, "reset", p.ResetArgs())
}

// writeImage writes data to a new temporary file whose name ends in .bin,
// for tools that look at the extension.
func writeImage(data []byte) (string, func(), error) {
	f, err := os.CreateTemp("", "fudbench-image-*.bin")
	if err != nil {
		return "", nil, fmt.Errorf("image file: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	if _, err := f.Write(data); err != nil {
		f.Close()
		cleanup()
		return "", nil, fmt.Errorf("image file: %w", err)
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("image file: %w", err)
	}
	return f.Name(), cleanup, nil
}

// run runs the tool with args and maps its end to the probes errors.
func (p *Probe) run(ctx context.Context, op string, args []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("%s: %s: probe is closed: %w", p, op, probes.ErrProbe)
	}
	if err := ctx.Err(); err != nil {
		return ctxErr(p.name, op, err, "not started")
	}
	argv := append([]string{p.cfg.Program}, args...)
	combined := &proc.Tail{Max: outputMax}
	stderr := &proc.Tail{Max: outputMax}
	// One mutex-guarded writer for both, so their lines interleave in
	// the order the tool wrote them.
	var outMu sync.Mutex
	took, err := proc.Run(ctx, argv, proc.Options{
		Timeout: p.cfg.Timeout,
		Stdout:  lockedWriter{&outMu, combined, nil},
		Stderr:  lockedWriter{&outMu, combined, stderr},
	})
	p.output = combined.String()
	log := p.log.With("op", op, "argv", argv, "took", took.Round(time.Millisecond))

	var (
		exit   *osexec.ExitError
		killed *proc.KilledError
	)
	switch {
	case err == nil:
		log.Info("done", "output", p.output)
		return nil
	case errors.As(err, &exit) && exit.Exited():
		log.Warn("failed", "exit", exit.ExitCode(), "output", p.output)
		msg := stderr.Quoted(": ", errorLines)
		if msg == "" {
			msg = combined.Quoted(": ", errorLines)
		}
		what := fmt.Sprintf("exit status %d", exit.ExitCode())
		if exit.ExitCode() == 2 {
			what += " (usage error: this " + filepath.Base(p.cfg.Program) + " does not accept the arguments; check its version and the extra setting)"
		}
		return fmt.Errorf("%s: %s: %w: %s%s", p, op, probes.ErrProbe, what, msg)
	case errors.As(err, &killed):
		log.Warn("killed", "output", p.output)
		if killed.Timeout {
			return fmt.Errorf("%s: %s: %w: killed after the %v timeout%s", p, op, probes.ErrTimeout, p.cfg.Timeout, combined.Quoted(": ", errorLines))
		}
		return ctxErr(p.name, op, killed.Err, fmt.Sprintf("killed after %v", took.Round(time.Millisecond)))
	case errors.Is(err, osexec.ErrNotFound), errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: %s: %w: %s not found (install it or set program): %w", p, op, probes.ErrProbe, p.cfg.Program, err)
	default:
		log.Warn("failed", "err", err, "output", p.output)
		return fmt.Errorf("%s: %s: %w: %w%s", p, op, probes.ErrProbe, err, stderr.Quoted(": ", errorLines))
	}
}

func ctxErr(name, op string, err error, what string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %s: %w", name, op, probes.ErrTimeout, what, err)
	}
	return fmt.Errorf("%s: %s: %s: %w", name, op, what, err)
}

// lockedWriter writes to a and, if not nil, b under mu.
type lockedWriter struct {
	mu   *sync.Mutex
	a, b *proc.Tail
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.a.Write(p)
	if w.b != nil {
		w.b.Write(p)
	}
	return len(p), nil
}

// settings are the drivers' parts of the inventory; each driver has its
// own key names, as its tool does.
type probeRSSettings struct {
	Chip    string   `json:"chip" yaml:"chip"`
	Probe   string   `json:"probe" yaml:"probe"`
	Program string   `json:"program" yaml:"program"`
	Timeout string   `json:"timeout" yaml:"timeout"`
	Verify  *bool    `json:"verify" yaml:"verify"`
	Extra   []string `json:"extra" yaml:"extra"`
}

type pyOCDSettings struct {
	Target  string   `json:"target" yaml:"target"`
	UID     string   `json:"uid" yaml:"uid"`
	Program string   `json:"program" yaml:"program"`
	Timeout string   `json:"timeout" yaml:"timeout"`
	Extra   []string `json:"extra" yaml:"extra"`
}

func openProbeRS(st probes.Settings) (probes.Flasher, error) {
	var s probeRSSettings
	if err := st.Decode(&s); err != nil {
		return nil, err
	}
	timeout, err := probeutil.ParseTimeout(s.Timeout)
	if err != nil {
		return nil, err
	}
	verify := s.Verify == nil || *s.Verify
	return New(Config{Tool: ProbeRS, Chip: s.Chip, Probe: s.Probe, Program: driverreg.Program(st, s.Program), Timeout: timeout, Verify: verify, Extra: s.Extra})
}

func openPyOCD(st probes.Settings) (probes.Flasher, error) {
	var s pyOCDSettings
	if err := st.Decode(&s); err != nil {
		return nil, err
	}
	timeout, err := probeutil.ParseTimeout(s.Timeout)
	if err != nil {
		return nil, err
	}
	return New(Config{Tool: PyOCD, Chip: s.Target, Probe: s.UID, Program: driverreg.Program(st, s.Program), Timeout: timeout, Extra: s.Extra})
}
