// Package smp is the probe driver "smp": it flashes a board through
// MCUmgr's Simple Management Protocol on a serial port, as MCUboot's serial
// recovery (and Zephyr's mcumgr over the console UART) speak it: the usual
// way to bring back an MCUboot board without a debugger. Importing it
// registers the driver.
//
// Settings:
//
//	port: /dev/ttyUSB0   # the serial port, required
//	baud: 115200         # default 115200
//	mtu: 512             # the device's receive buffer for one decoded
//	                     # frame (MCUboot's MCUBOOT_SERIAL_MAX_RECEIVE_SIZE;
//	                     # Zephyr's default is 1024, MCUboot's own 512)
//	timeout: 5s          # per request; the first upload chunk, which makes
//	                     # MCUboot erase the slot, gets four times as long
//	reset: smp           # smp: Reset sends SMP reset | none: Reset does nothing
//	line_delay: 0s       # a pause before each continuation line of a frame,
//	                     # for a device that cannot take a whole frame at
//	                     # once (the mcumgr CLI always waits 20ms)
//
// The port is opened on first use (8N1, no modem lines touched) and again
// after it failed. Lines the device prints that are not SMP frames
// (console text) are skipped. Every read has a deadline: a device that
// stays silent or answers garbage is an error naming the port, never a
// hang.
//
// Flash uploads the image in chunks that fit the mtu (the device writes
// whole write units and asks again for the rest) and follows the offset
// the device answers with: MCUboot answers a chunk at an offset it does
// not expect with the offset it does. An upload interrupted (a cancelled
// context, a timeout) is resumed by the next Flash of the same image on
// the same probe from where it stopped, if the device still expects that
// offset; else from where the device says. Then Flash reads the image
// state and compares the hash the device reports for slot 0 with the
// image's: for an MCUboot image (header magic 0x96f3b83d) the SHA-256 of
// its header, body and protected TLVs, checked against its SHA256 TLV, as
// MCUboot reports it; for any other image the SHA-256 of all its bytes.
//
// The address Flash takes is where the bench places the board's primary
// slot (flash.app_address): a device taking an SMP upload always writes it
// to the start of its primary slot (image 0, slot 0), so the address
// cannot move it and is only logged.
//
// A device's non-zero return code is an error naming the port, the
// command and the code ("rc 8 ENOTSUP"), unlike the mcumgr CLI, which
// prints it and exits 0.
package smp

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/driverreg"
	"github.com/fudbench/fudbench/internal/probeutil"
	wire "github.com/fudbench/fudbench/internal/smp"
	"github.com/fudbench/fudbench/probes"
)

// Driver is the name the driver registers under.
const Driver = "smp"

// Defaults of Config.
const (
	DefaultBaud    = 115200
	DefaultMTU     = 512
	DefaultTimeout = 5 * time.Second
	// MinMTU leaves an upload request room for some data.
	MinMTU = 128
	// MaxMTU is the most a frame's length field can carry.
	MaxMTU = 65535
)

// Reset settings.
const (
	ResetSMP  = "smp"
	ResetNone = "none"
)

func init() {
	probes.Register(Driver, open)
}

var _ probes.Flasher = (*Probe)(nil)

// Config configures a Probe.
type Config struct {
	Port    string        // serial port path, required
	Baud    int           // 0 is DefaultBaud
	MTU     int           // 0 is DefaultMTU
	Timeout time.Duration // per request; 0 is DefaultTimeout
	Reset   string        // ResetSMP ("") or ResetNone
	// LineDelay is a pause before each continuation line; 0 sends a
	// frame at once.
	LineDelay time.Duration
	Logger    *slog.Logger // nil discards
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

// Probe drives one SMP device on one serial port. Its methods are safe
// for concurrent use; they run one at a time.
type Probe struct {
	cfg  Config
	name string
	log  *slog.Logger
	open func(path string, mode *serial.Mode) (port, error)

	mu     sync.Mutex
	port   port // nil until first use or after the port failed
	closed bool
	broken bool
	seq    uint8
	lines  wire.LineBuffer
	dec    wire.Decoder
	buf    []byte
	// resume is an interrupted upload: the image's SHA-256 and the
	// offset the device last acknowledged.
	resume struct {
		sha [32]byte
		off uint32
		ok  bool
	}
}

// New returns a Probe for cfg.Port. It checks the configuration only; the
// port is opened on first use.
func New(cfg Config) (*Probe, error) {
	if cfg.Port == "" {
		return nil, errors.New("port: required (serial port of the SMP device)")
	}
	switch {
	case cfg.Baud == 0:
		cfg.Baud = DefaultBaud
	case cfg.Baud < 0:
		return nil, fmt.Errorf("baud: %d is negative", cfg.Baud)
	}
	switch {
	case cfg.MTU == 0:
		cfg.MTU = DefaultMTU
	case cfg.MTU < MinMTU || cfg.MTU > MaxMTU:
		return nil, fmt.Errorf("mtu: %d out of range (%d to %d)", cfg.MTU, MinMTU, MaxMTU)
	}
	timeout, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = timeout
	if cfg.LineDelay < 0 || cfg.LineDelay > time.Second {
		return nil, fmt.Errorf("line_delay: %v out of range (0 to 1s)", cfg.LineDelay)
	}
	switch cfg.Reset {
	case "":
		cfg.Reset = ResetSMP
	case ResetSMP, ResetNone:
	default:
		return nil, fmt.Errorf("reset: %q (want %s or %s)", cfg.Reset, ResetSMP, ResetNone)
	}
	name := Driver + ":" + cfg.Port
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Probe{cfg: cfg, name: name, log: log.With("probe", name), open: openSerial}
	p.dec.Max = wire.DefaultMaxFrame
	return p, nil
}

func openSerial(path string, mode *serial.Mode) (port, error) {
	return serial.Open(path, mode)
}

// settings is the driver's part of the inventory.
type settings struct {
	Port    string `json:"port" yaml:"port"`
	Baud    int    `json:"baud" yaml:"baud"`
	MTU     int    `json:"mtu" yaml:"mtu"`
	Timeout string `json:"timeout" yaml:"timeout"`
	Reset   string `json:"reset" yaml:"reset"`
	// LineDelay is a duration ("20ms").
	LineDelay string `json:"line_delay" yaml:"line_delay"`
}

func open(st probes.Settings) (probes.Flasher, error) {
	var s settings
	if err := st.Decode(&s); err != nil {
		return nil, err
	}
	timeout, err := probeutil.ParseTimeout(s.Timeout)
	if err != nil {
		return nil, err
	}
	var delay time.Duration
	if s.LineDelay != "" {
		if delay, err = time.ParseDuration(s.LineDelay); err != nil {
			return nil, fmt.Errorf("line_delay: %q: want a duration such as 20ms", s.LineDelay)
		}
	}
	return New(Config{Port: driverreg.Path(st, s.Port), Baud: s.Baud, MTU: s.MTU, Timeout: timeout, Reset: s.Reset, LineDelay: delay})
}

// String names the probe, e.g. "smp:/dev/ttyUSB0".
func (p *Probe) String() string { return p.name }

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

// Echo sends s and returns what the device echoes.
func (p *Probe) Echo(ctx context.Context, s string) (string, error) {
	var rsp wire.EchoRsp
	err := p.do(ctx, func() error {
		return p.call(ctx, wire.OpWrite, wire.GroupDefault, wire.IDEcho, wire.EchoReq{D: s}, p.cfg.Timeout, &rsp)
	})
	return rsp.R, err
}

// ImageList reads the device's image state: the images in its slots.
func (p *Probe) ImageList(ctx context.Context) ([]wire.ImageSlot, error) {
	var rsp wire.ImageStateRsp
	err := p.do(ctx, func() error {
		return p.call(ctx, wire.OpRead, wire.GroupImage, wire.IDImageState, struct{}{}, p.cfg.Timeout, &rsp)
	})
	return rsp.Images, err
}

// ImageTest marks the image with hash pending for one test boot, and
// returns the image state after it.
func (p *Probe) ImageTest(ctx context.Context, hash []byte) ([]wire.ImageSlot, error) {
	return p.setState(ctx, hash, false)
}

// ImageConfirm marks the image with hash confirmed (permanent), and
// returns the image state after it.
func (p *Probe) ImageConfirm(ctx context.Context, hash []byte) ([]wire.ImageSlot, error) {
	return p.setState(ctx, hash, true)
}

func (p *Probe) setState(ctx context.Context, hash []byte, confirm bool) ([]wire.ImageSlot, error) {
	var rsp wire.ImageStateRsp
	err := p.do(ctx, func() error {
		return p.call(ctx, wire.OpWrite, wire.GroupImage, wire.IDImageState, wire.ImageStateReq{Hash: hash, Confirm: confirm}, p.cfg.Timeout, &rsp)
	})
	return rsp.Images, err
}

// Reset sends the SMP reset command (with the setting reset: none it does
// nothing). The device answers before it resets.
func (p *Probe) Reset(ctx context.Context) error {
	if p.cfg.Reset == ResetNone {
		p.log.Info("reset: none configured; the board is not reset")
		return nil
	}
	return p.do(ctx, func() error {
		var rsp wire.Status
		if err := p.call(ctx, wire.OpWrite, wire.GroupDefault, wire.IDReset, wire.ResetReq{}, p.cfg.Timeout, &rsp); err != nil {
			return err
		}
		p.log.Info("reset sent")
		return nil
	})
}

// Flash uploads data as image 0 into the device's primary slot and
// verifies the hash the device reports for it (see the package
// documentation). addr is logged only.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	if len(data) == 0 {
		return fmt.Errorf("%s: flash: empty image: %w", p, probes.ErrProbe)
	}
	if uint64(len(data)) > 1<<32-1 {
		return fmt.Errorf("%s: flash: image of %d bytes: %w", p, len(data), probes.ErrProbe)
	}
	want, kind, err := ImageHash(data)
	if err != nil {
		return fmt.Errorf("%s: flash: %w: %w", p, err, probes.ErrProbe)
	}
	return p.do(ctx, func() error {
		start := time.Now()
		if err := p.upload(ctx, data, progress); err != nil {
			return err
		}
		p.log.Info("uploaded", "bytes", len(data), "addr", fmt.Sprintf("%#08x", addr), "took", time.Since(start).Round(time.Millisecond))
		var rsp wire.ImageStateRsp
		if err := p.callAt(ctx, wire.OpRead, wire.GroupImage, wire.IDImageState, " (verify)", struct{}{}, p.cfg.Timeout, &rsp); err != nil {
			return err
		}
		for _, im := range rsp.Images {
			if im.Image != 0 || im.Slot != 0 {
				continue
			}
			if len(im.Hash) == 0 {
				return fmt.Errorf("%s: verify: the device reports no hash for slot 0 (version %q): %w", p, im.Version, probes.ErrVerify)
			}
			if string(im.Hash) != string(want[:]) {
				return fmt.Errorf("%s: verify: slot 0 holds an image with hash %x (version %s), the upload's %s is %x: %w", p, im.Hash, im.Version, kind, want, probes.ErrVerify)
			}
			p.log.Info("verified", "version", im.Version, "hash", fmt.Sprintf("%x", im.Hash))
			return nil
		}
		return fmt.Errorf("%s: verify: the device lists no image in slot 0 after the upload (not an image its bootloader accepts?): %w", p, probes.ErrVerify)
	})
}

// upload sends data in chunks, following the offset the device answers.
func (p *Probe) upload(ctx context.Context, data []byte, progress func(done, total int)) error {
	chunk := wire.UploadChunk(p.cfg.MTU)
	sha := sha256.Sum256(data)
	total := uint32(len(data))
	var off uint32
	if p.resume.ok && p.resume.sha == sha && p.resume.off < total {
		off = p.resume.off
		p.log.Info("resuming upload", "off", off)
	}
	p.resume.ok = false
	stalls := 0
	for {
		n := min(uint32(chunk), total-off)
		req := wire.UploadReq{Off: off, Data: data[off : off+n]}
		wait := p.cfg.Timeout
		if off == 0 {
			req.Len, req.Sha = total, sha[:]
			wait *= 4 // the device erases the slot first
		}
		var rsp wire.UploadRsp
		err := p.callAt(ctx, wire.OpWrite, wire.GroupImage, wire.IDImageUpload, fmt.Sprintf(" at offset %d of %d", off, total), req, wait, &rsp)
		if err != nil {
			if off > 0 {
				p.resume.sha, p.resume.off, p.resume.ok = sha, off, true
			}
			return err
		}
		if rsp.Off > total {
			return fmt.Errorf("%s: upload: the device asks for offset %d of a %d-byte image: %w", p, rsp.Off, total, probes.ErrProbe)
		}
		if rsp.Off != off+n {
			p.log.Debug("device asks for another offset", "sent", off, "len", n, "off", rsp.Off)
		}
		if rsp.Off <= off {
			stalls++
			if stalls > 3 {
				return fmt.Errorf("%s: upload: the device keeps asking for offset %d (sent %d bytes at %d): %w", p, rsp.Off, n, off, probes.ErrProbe)
			}
		} else {
			stalls = 0
		}
		off = rsp.Off
		if progress != nil {
			progress(int(off), int(total))
		}
		if off == total {
			return nil
		}
	}
}
