// Package esprom is the probe driver "esprom": it flashes an ESP32
// through the chip's ROM serial loader (the protocol esptool speaks,
// without its flasher stub). Importing it registers the driver.
//
// It is tested against the ESP32's ROM (emulated, sim/esprom). The
// ESP8266's ROM has no SPI_FLASH_MD5, so the check after the write fails
// there; the ROMs of later chips (ESP32-S2 on) take a fifth FLASH_BEGIN
// word (encrypted write) that the driver does not send.
//
// Settings:
//
//	port: /dev/ttyUSB0   # the serial port, required
//	baud: 115200         # the rate the ROM syncs at
//	flash_baud: 460800   # optional: CHANGE_BAUDRATE after the sync
//	reset: dtr-rts       # dtr-rts (auto-reset circuit: EN on RTS, GPIO0
//	                     # on DTR) | none (the board is already in its
//	                     # loader; required on a pty)
//	compress: true       # FLASH_DEFL_* with zlib, else plain FLASH_*
//	timeout: 3s          # per command
//	flash_size: 4194304  # bytes, given to the ROM with SPI_SET_PARAMS
//
// Flash syncs (with the classic reset into the loader first under
// dtr-rts, up to syncAttempts times), attaches the SPI flash, writes the
// image in 1 KiB blocks and asks the ROM for the MD5 of the written
// range, which must equal the image's. Reset pulses EN through RTS under
// dtr-rts; under none it sends FLASH_END with "reboot", which makes the
// ROM start the firmware.
package esprom

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/driverreg"
	wire "github.com/fudbench/fudbench/internal/esprom"
	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/probes"
)

// Driver is the name the driver registers under.
const Driver = "esprom"

// Defaults and settings.
const (
	DefaultBaud      = 115200
	DefaultTimeout   = 3 * time.Second
	DefaultFlashSize = 4 << 20
	ResetDTRRTS      = "dtr-rts"
	ResetNone        = "none"
	syncAttempts     = 7
	syncWait         = 100 * time.Millisecond
	poll             = 20 * time.Millisecond
)

func init() { probes.Register(Driver, open) }

var _ probes.Flasher = (*Probe)(nil)

// Config configures a Probe.
type Config struct {
	Port       string
	Baud       int
	FlashBaud  int
	Reset      string // ResetDTRRTS ("") or ResetNone
	NoCompress bool
	Timeout    time.Duration
	FlashSize  uint32
	Logger     *slog.Logger
}

// Probe drives one ROM loader on one serial port.
type Probe struct {
	cfg  Config
	name string
	log  *slog.Logger

	mu   sync.Mutex
	port serial.Port
	sp   *wire.Splitter
}

// New checks cfg; the port is opened on first use.
func New(cfg Config) (*Probe, error) {
	if cfg.Port == "" {
		return nil, errors.New("port: required (serial port of the ESP's USB-UART)")
	}
	if cfg.Baud == 0 {
		cfg.Baud = DefaultBaud
	}
	if cfg.Baud < 0 || cfg.FlashBaud < 0 {
		return nil, fmt.Errorf("baud %d, flash_baud %d: negative", cfg.Baud, cfg.FlashBaud)
	}
	switch cfg.Reset {
	case "":
		cfg.Reset = ResetDTRRTS
	case ResetDTRRTS, ResetNone:
	default:
		return nil, fmt.Errorf("reset: %q (want %s or %s)", cfg.Reset, ResetDTRRTS, ResetNone)
	}
	t, err := probeutil.Timeout(cfg.Timeout, DefaultTimeout)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = t
	if cfg.FlashSize == 0 {
		cfg.FlashSize = DefaultFlashSize
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	name := Driver + ":" + cfg.Port
	return &Probe{cfg: cfg, name: name, log: log.With("probe", name)}, nil
}

type settings struct {
	Port      string `json:"port" yaml:"port"`
	Baud      int    `json:"baud" yaml:"baud"`
	FlashBaud int    `json:"flash_baud" yaml:"flash_baud"`
	Reset     string `json:"reset" yaml:"reset"`
	Compress  *bool  `json:"compress" yaml:"compress"`
	Timeout   string `json:"timeout" yaml:"timeout"`
	FlashSize int64  `json:"flash_size" yaml:"flash_size"`
}

func open(st probes.Settings) (probes.Flasher, error) {
	var s settings
	if err := st.Decode(&s); err != nil {
		return nil, err
	}
	t, err := probeutil.ParseTimeout(s.Timeout)
	if err != nil {
		return nil, err
	}
	if s.FlashSize < 0 || s.FlashSize > 1<<30 {
		return nil, fmt.Errorf("flash_size: %d out of range", s.FlashSize)
	}
	return New(Config{Port: driverreg.Path(st, s.Port), Baud: s.Baud, FlashBaud: s.FlashBaud, Reset: s.Reset,
		NoCompress: s.Compress != nil && !*s.Compress, Timeout: t, FlashSize: uint32(s.FlashSize)})
}

// String names the probe, e.g. "esprom:/dev/ttyUSB0".
func (p *Probe) String() string { return p.name }

// Close closes the port. It does not reset the chip.
func (p *Probe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.drop()
}

func (p *Probe) drop() error {
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

func (p *Probe) fail(op string, err error) error {
	_ = p.drop() // the next operation opens and syncs anew
	if errors.Is(err, probes.ErrProbe) || errors.Is(err, probes.ErrTimeout) || errors.Is(err, probes.ErrVerify) {
		return fmt.Errorf("%s: %s: %w", p, op, err)
	}
	return fmt.Errorf("%s: %s: %w: %w", p, op, err, probes.ErrProbe)
}

// connect opens the port and syncs with the ROM.
func (p *Probe) connect(ctx context.Context) error {
	if p.port != nil {
		return nil
	}
	port, err := openPort(p.cfg.Port, &serial.Mode{BaudRate: p.cfg.Baud})
	if err != nil {
		return fmt.Errorf("open: %w: %w", probes.ErrProbe, err)
	}
	p.port, p.sp = port, wire.NewSplitter(0)
	var last error
	for i := range syncAttempts {
		if p.cfg.Reset == ResetDTRRTS {
			if err := p.bootReset(); err != nil {
				return err
			}
		}
		_ = p.port.ResetInputBuffer()
		p.sp.Reset()
		_, last = p.command(ctx, wire.OpSync, wire.SyncData, 0, 0, syncWait)
		if last == nil {
			// The ROM answers a SYNC eight times: drain the others.
			p.drain(ctx, 50*time.Millisecond)
			p.log.Debug("synced", "attempt", i+1)
			break
		}
		if ctx.Err() != nil || !errors.Is(last, probes.ErrTimeout) {
			return last
		}
	}
	if last != nil {
		return fmt.Errorf("no answer to SYNC (is the board in its ROM loader? GPIO0 low at reset): %w", last)
	}
	if b := p.cfg.FlashBaud; b > 0 && b != p.cfg.Baud {
		arg := binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint32(nil, uint32(b)), 0)
		if _, err := p.command(ctx, wire.OpChangeBaudrate, arg, 0, 0, p.cfg.Timeout); err != nil {
			return fmt.Errorf("change baud rate to %d: %w", b, err)
		}
		if err := p.port.SetMode(&serial.Mode{BaudRate: b}); err != nil {
			return fmt.Errorf("set baud %d: %w: %w", b, probes.ErrProbe, err)
		}
		p.drain(ctx, 50*time.Millisecond)
	}
	return nil
}

// openPort opens the serial port; tests replace it to see the modem
// lines, which a pseudo-terminal does not have.
var openPort = serial.Open

// bootReset is the classic auto-reset sequence: EN low (RTS), then EN
// high with GPIO0 low (DTR), so the chip samples its strapping pin low
// and enters the loader.
func (p *Probe) bootReset() error {
	steps := []struct {
		dtr, rts bool
		wait     time.Duration
	}{{false, true, 100 * time.Millisecond}, {true, false, 50 * time.Millisecond}, {false, false, 0}}
	for _, s := range steps {
		if err := p.port.SetDTR(s.dtr); err != nil {
			return fmt.Errorf("DTR (the port has no modem lines? use reset: none): %w: %w", probes.ErrProbe, err)
		}
		if err := p.port.SetRTS(s.rts); err != nil {
			return fmt.Errorf("RTS (the port has no modem lines? use reset: none): %w: %w", probes.ErrProbe, err)
		}
		time.Sleep(s.wait)
	}
	return nil
}

func (p *Probe) drain(ctx context.Context, d time.Duration) {
	end := time.Now().Add(d)
	buf := make([]byte, 256)
	for time.Now().Before(end) && ctx.Err() == nil {
		_ = p.port.SetReadTimeout(10 * time.Millisecond)
		if _, err := p.port.Read(buf); err != nil {
			return
		}
	}
	p.sp.Reset()
}

// command sends a request and returns the answer's payload of want
// bytes, after checking its status.
func (p *Probe) command(ctx context.Context, op byte, data []byte, chk uint32, want int, wait time.Duration) ([]byte, error) {
	frame := wire.AppendSLIP(nil, wire.Request{Op: op, Checksum: chk, Data: data}.Marshal())
	if _, err := p.port.Write(frame); err != nil {
		return nil, fmt.Errorf("write (port gone?): %w: %w", probes.ErrProbe, err)
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 512)
	for {
		if err := ctx.Err(); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("op %#02x: %w: %w", op, probes.ErrTimeout, err)
			}
			return nil, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("op %#02x: no valid answer within %v: %w", op, wait, probes.ErrTimeout)
		}
		if err := p.port.SetReadTimeout(max(min(left, poll), time.Millisecond)); err != nil {
			return nil, fmt.Errorf("port failed: %w: %w", probes.ErrProbe, err)
		}
		n, err := p.port.Read(buf)
		for _, b := range buf[:n] {
			f, ok := p.sp.Feed(b)
			if !ok {
				continue
			}
			r, derr := wire.DecodeResponse(f)
			if derr != nil || r.Op != op {
				continue // boot log, a late answer, noise
			}
			out, serr := r.Status(want)
			if serr != nil {
				return nil, fmt.Errorf("the ROM refused: %w: %w", serr, probes.ErrProbe)
			}
			return bytes.Clone(out), nil
		}
		if err != nil {
			return nil, fmt.Errorf("read (port gone?): %w: %w", probes.ErrProbe, err)
		}
	}
}

func words(v ...uint32) []byte {
	var b []byte
	for _, w := range v {
		b = binary.LittleEndian.AppendUint32(b, w)
	}
	return b
}

// Flash writes data at addr (an offset in the SPI flash) and checks the
// ROM's MD5 of it.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if uint64(addr)+uint64(len(data)) > uint64(p.cfg.FlashSize) {
		return fmt.Errorf("%s: flash at %#x: %d bytes pass the flash's %d: %w", p, addr, len(data), p.cfg.FlashSize, probes.ErrProbe)
	}
	if err := p.connect(ctx); err != nil {
		return p.fail("connect", err)
	}
	if err := p.flash(ctx, addr, data, progress); err != nil {
		return p.fail(fmt.Sprintf("flash at %#x", addr), err)
	}
	return nil
}

func (p *Probe) flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	t := p.cfg.Timeout
	if _, err := p.command(ctx, wire.OpSPIAttach, words(0, 0), 0, 0, t); err != nil {
		return fmt.Errorf("SPI attach: %w", err)
	}
	if _, err := p.command(ctx, wire.OpSPISetParams, words(0, p.cfg.FlashSize, 64<<10, 4<<10, 256, 0xFFFF), 0, 0, t); err != nil {
		return fmt.Errorf("SPI set params: %w", err)
	}
	const bs = wire.FlashWriteSize
	payload, beginOp, dataOp := data, wire.OpFlashBegin, wire.OpFlashData
	size := uint32(len(data))
	if !p.cfg.NoCompress {
		payload, beginOp, dataOp = deflate(data), wire.OpFlashDeflBegin, wire.OpFlashDeflData
	}
	blocks := (len(payload) + bs - 1) / bs
	if p.cfg.NoCompress {
		size = uint32(blocks * bs)
	}
	// Erasing takes the ROM time: one timeout per started 256 KiB.
	eraseWait := t * time.Duration(1+len(data)/(256<<10))
	if _, err := p.command(ctx, beginOp, words(size, uint32(blocks), bs, addr), 0, 0, eraseWait); err != nil {
		return fmt.Errorf("begin (erase) of %d bytes: %w", len(data), err)
	}
	for seq := range blocks {
		blk := payload[seq*bs : min((seq+1)*bs, len(payload))]
		if p.cfg.NoCompress && len(blk) < bs {
			blk = append(bytes.Clone(blk), bytes.Repeat([]byte{0xFF}, bs-len(blk))...)
		}
		msg := append(words(uint32(len(blk)), uint32(seq), 0, 0), blk...)
		if _, err := p.command(ctx, dataOp, msg, wire.Checksum(blk), 0, t); err != nil {
			return fmt.Errorf("block %d of %d: %w", seq, blocks, err)
		}
		if progress != nil {
			progress(min((seq+1)*len(data)/blocks, len(data)), len(data))
		}
	}
	md5Wait := t * time.Duration(1+len(data)/(1<<20))
	got, err := p.command(ctx, wire.OpSPIFlashMD5, words(addr, uint32(len(data)), 0, 0), 0, 32, md5Wait)
	if err != nil {
		return fmt.Errorf("MD5: %w", err)
	}
	sum := md5.Sum(data)
	if want := hex.EncodeToString(sum[:]); string(bytes.ToLower(got)) != want {
		return fmt.Errorf("the ROM's MD5 of %d bytes is %s, the image's %s: %w", len(data), got, want, probes.ErrVerify)
	}
	p.log.Info("flashed", "addr", fmt.Sprintf("%#x", addr), "bytes", len(data), "compressed", !p.cfg.NoCompress)
	return nil
}

// Reset starts the firmware: an EN pulse on RTS under dtr-rts, FLASH_END
// with reboot under none.
func (p *Probe) Reset(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Reset == ResetDTRRTS {
		if p.port == nil {
			port, err := openPort(p.cfg.Port, &serial.Mode{BaudRate: p.cfg.Baud})
			if err != nil {
				return p.fail("reset", fmt.Errorf("open: %w: %w", probes.ErrProbe, err))
			}
			p.port, p.sp = port, wire.NewSplitter(0)
		}
		err := p.port.SetDTR(false)
		if err == nil {
			err = p.port.SetRTS(true)
		}
		time.Sleep(100 * time.Millisecond)
		if err == nil {
			err = p.port.SetRTS(false)
		}
		if err != nil {
			return p.fail("reset", fmt.Errorf("RTS: %w: %w", probes.ErrProbe, err))
		}
		_ = p.drop() // the firmware runs: sync anew next time
		return nil
	}
	if err := p.connect(ctx); err != nil {
		return p.fail("reset", err)
	}
	if _, err := p.command(ctx, wire.OpFlashEnd, words(0), 0, 0, p.cfg.Timeout); err != nil {
		return p.fail("reset (FLASH_END reboot)", err)
	}
	_ = p.drop()
	return nil
}
