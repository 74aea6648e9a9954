// Package esprom emulates the ESP32's ROM serial loader behind a
// pseudo-terminal (or any io.ReadWriter), for tests of serial flashing
// tools; production code does not import it. It is validated against
// Espressif's esptool v4.12.0 run with --no-stub --before no_reset.
//
// Emulated: SLIP framing and the ROM's packets (internal/esprom), with
// four status bytes in every answer as the ESP32 ROM sends them; SYNC
// (eight answers), READ_REG and WRITE_REG over a register file holding
// the chip-detect magic 0x00F01D83 at 0x40001000, the eFuse words with a
// MAC (read_mac), the UART clock divider and the RTC calibration esptool
// reads for the crystal and the baud change, and the SPI peripheral's
// user commands enough for RDID (a 4 MiB flash, JEDEC ID ef 40 16);
// SPI_ATTACH, SPI_SET_PARAMS, FLASH_BEGIN/DATA/END, FLASH_DEFL_BEGIN/
// DATA/END (zlib, programmed when the last block has arrived),
// SPI_FLASH_MD5 (32 lowercase hex digits, as the ROM answers) and
// CHANGE_BAUDRATE (recorded; a pty has no line rate). FLASH_END with
// reboot, like a reset, starts the "firmware": the device ignores the line
// until Reboot.
//
// Not emulated: the flasher stub and the RAM download it needs
// (MEM_BEGIN/DATA/END answer an error), GET_SECURITY_INFO (the ESP32 ROM
// has none), encrypted writes, other chips. The flash is 4 MiB of NOR:
// erases set 4 KiB sectors to 0xFF and programming only clears bits; it
// is a plain array, not the board's sim/flash model, and takes no time.
package esprom

import (
	"bytes"
	"compress/zlib"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	wire "github.com/fudbench/fudbench/internal/esprom"
	"github.com/fudbench/fudbench/internal/rawpty"
)

// Chip constants.
const (
	FlashSize   = 4 << 20
	SectorSize  = 4096
	MagicReg    = 0x40001000
	MagicValue  = 0x00F01D83
	EfuseBase   = 0x3FF5A000
	uartClkdiv  = 0x3FF40014
	rtcCaliCfg1 = 0x3FF5F06C
	spiBase     = 0x3FF42000
	spiCmd      = spiBase + 0x00
	spiUsr2     = spiBase + 0x24
	spiW0       = spiBase + 0x80
	spiCmdUsr   = 1 << 18
	jedecID     = 0x1640EF // RDID bytes ef 40 16 as W0 holds them
	xtal        = 40_000_000
)

// MAC is the base MAC address in the eFuses.
var MAC = [6]byte{0x24, 0x0a, 0xc4, 0x12, 0x34, 0x56}

// Options configures a Device.
type Options struct {
	// CorruptMD5, if set, makes SPI_FLASH_MD5 hash the flash with one
	// byte flipped at this offset (relative to the hashed range's start,
	// ignored outside it): a write that went wrong.
	CorruptMD5 *int
	// Silent makes the device answer nothing: a board not in its loader.
	Silent bool
	// Garbage makes the device answer every frame with this instead.
	Garbage []byte
	// Running starts the chip in its firmware, as after a power-on with
	// GPIO0 high: the loader answers only after a reset with GPIO0 low
	// (Lines, the dev board's auto-reset circuit, or Reboot).
	Running bool
	// Logger receives a debug record per command; nil discards.
	Logger *slog.Logger
}

// Device is an emulated ESP32 ROM loader. Its methods are safe for
// concurrent use.
type Device struct {
	opts Options
	log  *slog.Logger

	master *os.File
	slave  *os.File
	path   string
	rw     io.ReadWriter
	done   chan struct{}

	mu       sync.Mutex
	flash    []byte
	regs     map[uint32]uint32
	running  bool
	baud     uint32
	cmds     []byte
	writing  byte // OpFlashBegin or OpFlashDeflBegin while a write is open
	wAddr    uint32
	wSize    uint32 // uncompressed size (DEFL) or erase size
	wBlocks  uint32
	wBlock   uint32
	wSeq     uint32
	deflBuf  []byte
	attached bool
	closed   bool
	// en and io0 are the chip's EN (reset, active low) and GPIO0 pins as
	// the auto-reset circuit drives them (Lines).
	en, io0 bool
	enSeq   uint64 // counts EN's changes
}

func newDevice(opts Options) *Device {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Device{opts: opts, log: log, flash: bytes.Repeat([]byte{0xFF}, FlashSize), regs: map[uint32]uint32{}, done: make(chan struct{})}
	d.regs[MagicReg] = MagicValue
	// eFuse block 0: word 1 holds MAC bytes 2..5, word 2 bytes 0..1 (and
	// the CRC byte, 0 here).
	d.regs[EfuseBase+4] = binary.BigEndian.Uint32(MAC[2:6])
	d.regs[EfuseBase+8] = uint32(MAC[0])<<8 | uint32(MAC[1])
	// eFuse word 4's CK8M frequency and the RTC calibration make
	// esptool's ROM crystal estimate 40 MHz (cali*15625*ck8m/40).
	d.regs[EfuseBase+16] = 200
	d.regs[rtcCaliCfg1] = 512 << 7
	d.baud = 115200
	d.regs[uartClkdiv] = xtal / d.baud
	d.running = opts.Running
	d.en, d.io0 = true, true
	return d
}

// Lines drives the chip through a dev board's auto-reset circuit (two
// transistors, as on the ESP32-DevKitC): DTR pulls GPIO0 low and RTS
// pulls EN low, each only while the other line is released, so that DTR
// and RTS asserted together reset nothing. EN held low holds the chip in
// reset (it answers nothing); EN rising boots it: into the ROM loader
// when GPIO0 is low then, into its firmware otherwise. A pseudo-terminal
// has no modem lines: a test wires the bench's DTR and RTS calls here.
//
// EN rises through the board's RC (10 kΩ, 1 µF): the chip samples GPIO0
// ENDelay after EN went high, so the instant both lines are asserted
// between two steps of the reset sequence (DTR set before RTS is
// released) resets nothing, as on the board.
func (d *Device) Lines(dtr, rts bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	en, io0 := !(rts && !dtr), !(dtr && !rts)
	rising := en && !d.en
	if en != d.en {
		d.enSeq++
	}
	d.en, d.io0 = en, io0
	if !rising {
		return
	}
	seq := d.enSeq
	time.AfterFunc(ENDelay, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.enSeq != seq || !d.en {
			return
		}
		d.writing = 0
		d.baud = 115200
		d.regs[uartClkdiv] = xtal / d.baud
		d.running = d.io0
		d.log.Debug("reset by EN", "loader", !d.io0)
	})
}

// ENDelay is how long after EN rises the chip samples its strapping pins.
const ENDelay = 2 * time.Millisecond

// New starts a device on a new pseudo-terminal; Path is its port.
func New(opts Options) (*Device, error) {
	master, slave, err := rawpty.Open()
	if err != nil {
		return nil, fmt.Errorf("esprom: %w", err)
	}
	d := newDevice(opts)
	d.master, d.slave, d.path, d.rw = master, slave, slave.Name(), master
	d.log = d.log.With("device", "esprom", "pty", d.path)
	go d.serve()
	return d, nil
}

// Serve runs a device on rw until reading it fails; for links other
// than a pty. Close does not close rw.
func Serve(rw io.ReadWriter, opts Options) *Device {
	d := newDevice(opts)
	d.rw = rw
	go d.serve()
	return d
}

func (d *Device) serve() {
	defer close(d.done)
	sp := wire.NewSplitter(0)
	buf := make([]byte, 4096)
	for {
		n, err := d.rw.Read(buf)
		for _, b := range buf[:n] {
			f, ok := sp.Feed(b)
			if !ok {
				continue
			}
			out := d.handle(f)
			if len(out) == 0 {
				continue
			}
			if _, werr := d.rw.Write(out); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				d.log.Debug("read ended", "err", err)
			}
			return
		}
	}
}

// handle answers one frame with the bytes to send.
func (d *Device) handle(f []byte) []byte {
	req, err := wire.DecodeRequest(f)
	if err != nil {
		d.log.Debug("frame dropped", "err", err)
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running || !d.en || d.opts.Silent {
		return nil
	}
	if d.opts.Garbage != nil {
		return d.opts.Garbage
	}
	d.cmds = append(d.cmds, req.Op)
	if len(d.cmds) > 4096 {
		d.cmds = slices.Clone(d.cmds[2048:])
	}
	val, data, code := d.exec(req)
	d.log.Debug("command", "op", fmt.Sprintf("%#02x", req.Op), "len", len(req.Data), "error", code)
	status := []byte{0, 0, 0, 0}
	if code != 0 {
		status[0], status[1] = 1, code
		data = nil
	}
	resp := wire.Response{Op: req.Op, Value: val, Data: append(data, status...)}
	out := wire.AppendSLIP(nil, resp.Marshal())
	if req.Op == wire.OpSync && code == 0 {
		// The ROM answers a SYNC eight times.
		one := out
		for range 7 {
			out = append(out, one...)
		}
	}
	if req.Op == wire.OpFlashEnd && code == 0 && len(req.Data) >= 4 && binary.LittleEndian.Uint32(req.Data) == 0 {
		d.running = true
	}
	return out
}

func le(b []byte, i int) uint32 { return binary.LittleEndian.Uint32(b[4*i:]) }

// exec carries out a request: the value, the payload and a ROM error
// code (0 for success).
func (d *Device) exec(r wire.Request) (uint32, []byte, byte) {
	p := r.Data
	switch r.Op {
	case wire.OpSync:
		if !bytes.Equal(p, wire.SyncData) {
			return 0, nil, wire.ErrInvalidMessage
		}
		return wire.SyncValue, nil, 0
	case wire.OpReadReg:
		if len(p) != 4 {
			return 0, nil, wire.ErrInvalidMessage
		}
		a := le(p, 0)
		if a == spiCmd {
			return 0, nil, 0 // user commands finish at once
		}
		return d.regs[a], nil, 0
	case wire.OpWriteReg:
		if len(p) < 16 || len(p)%16 != 0 {
			return 0, nil, wire.ErrInvalidMessage
		}
		for i := 0; i < len(p)/4; i += 4 {
			a, v, m := le(p, i), le(p, i+1), le(p, i+2)
			if m == 0 {
				m = 0xFFFFFFFF
			}
			d.regs[a] = d.regs[a]&^m | v&m
			if a == spiCmd && v&spiCmdUsr != 0 {
				d.spiUser()
			}
		}
		return 0, nil, 0
	case wire.OpSPIAttach:
		if len(p) != 8 && len(p) != 4 {
			return 0, nil, wire.ErrInvalidMessage
		}
		d.attached = true
		return 0, nil, 0
	case wire.OpSPISetParams:
		if len(p) != 24 {
			return 0, nil, wire.ErrInvalidMessage
		}
		if le(p, 1) > FlashSize {
			return 0, nil, wire.ErrFailedToAct
		}
		return 0, nil, 0
	case wire.OpChangeBaudrate:
		if len(p) != 8 || le(p, 0) == 0 {
			return 0, nil, wire.ErrInvalidMessage
		}
		d.baud = le(p, 0)
		d.regs[uartClkdiv] = xtal / d.baud
		return 0, nil, 0
	case wire.OpFlashBegin, wire.OpFlashDeflBegin:
		return 0, nil, d.begin(r.Op, p)
	case wire.OpFlashData, wire.OpFlashDeflData:
		return 0, nil, d.data(r, p)
	case wire.OpFlashEnd, wire.OpFlashDeflEnd:
		if len(p) != 4 {
			return 0, nil, wire.ErrInvalidMessage
		}
		d.writing = 0
		return 0, nil, 0
	case wire.OpSPIFlashMD5:
		if len(p) != 16 {
			return 0, nil, wire.ErrInvalidMessage
		}
		a, n := le(p, 0), le(p, 1)
		if uint64(a)+uint64(n) > FlashSize {
			return 0, nil, wire.ErrFlashReadLen
		}
		region := d.flash[a : a+n]
		if c := d.opts.CorruptMD5; c != nil && *c >= 0 && *c < int(n) {
			region = slices.Clone(region)
			region[*c] ^= 0x01
		}
		sum := md5.Sum(region)
		return 0, []byte(hex.EncodeToString(sum[:])), 0
	}
	return 0, nil, wire.ErrInvalidMessage
}

// spiUser runs the SPI user command set up in USR2: RDID answers the
// flash's JEDEC ID in W0; others are accepted.
func (d *Device) spiUser() {
	d.regs[spiCmd] = 0
	switch d.regs[spiUsr2] & 0xFF {
	case 0x9F:
		d.regs[spiW0] = jedecID
	default:
		d.regs[spiW0] = 0
	}
}

func (d *Device) begin(op byte, p []byte) byte {
	if len(p) != 16 && len(p) != 20 {
		return wire.ErrInvalidMessage
	}
	size, blocks, bs, addr := le(p, 0), le(p, 1), le(p, 2), le(p, 3)
	if bs == 0 || bs > 0x4000 || uint64(addr)+uint64(size) > FlashSize || uint64(blocks)*uint64(bs) > 2*FlashSize {
		return wire.ErrFailedToAct
	}
	// The ROM erases what the write will cover: for FLASH_BEGIN the erase
	// size it is given, for FLASH_DEFL_BEGIN the uncompressed size.
	if size > 0 {
		start := addr &^ (SectorSize - 1)
		end := (uint64(addr) + uint64(size) + SectorSize - 1) &^ (SectorSize - 1)
		for i := uint64(start); i < end && i < FlashSize; i++ {
			d.flash[i] = 0xFF
		}
	}
	d.writing, d.wAddr, d.wSize, d.wBlocks, d.wBlock, d.wSeq = op, addr, size, blocks, bs, 0
	d.deflBuf = d.deflBuf[:0]
	return 0
}

func (d *Device) data(r wire.Request, p []byte) byte {
	want := wire.OpFlashBegin
	if r.Op == wire.OpFlashDeflData {
		want = wire.OpFlashDeflBegin
	}
	if d.writing != want || len(p) < 16 {
		return wire.ErrInvalidMessage
	}
	n, seq := le(p, 0), le(p, 1)
	payload := p[16:]
	if int(n) != len(payload) || seq != d.wSeq || seq >= d.wBlocks {
		return wire.ErrInvalidMessage
	}
	if wire.Checksum(payload) != r.Checksum {
		return wire.ErrInvalidCRC
	}
	d.wSeq++
	if r.Op == wire.OpFlashData {
		off := uint64(d.wAddr) + uint64(seq)*uint64(d.wBlock)
		if off+uint64(len(payload)) > FlashSize {
			return wire.ErrFlashWrite
		}
		d.program(uint32(off), payload)
		return 0
	}
	d.deflBuf = append(d.deflBuf, payload...)
	if d.wSeq < d.wBlocks {
		return 0
	}
	zr, err := zlib.NewReader(bytes.NewReader(d.deflBuf))
	if err != nil {
		return wire.ErrDeflate
	}
	out, err := io.ReadAll(io.LimitReader(zr, int64(FlashSize-d.wAddr)+1))
	if err != nil || uint64(d.wAddr)+uint64(len(out)) > FlashSize {
		return wire.ErrDeflate
	}
	d.program(d.wAddr, out)
	return 0
}

// program clears bits as NOR flash does.
func (d *Device) program(addr uint32, p []byte) {
	for i, b := range p {
		d.flash[int(addr)+i] &= b
	}
}

// Path is the pty a tool opens as its serial port.
func (d *Device) Path() string { return d.path }

// Flash returns a copy of the flash.
func (d *Device) Flash() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.flash)
}

// Load puts data in flash at addr as if programmed earlier.
func (d *Device) Load(addr uint32, data []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	copy(d.flash[addr:], data)
}

// Ops returns the opcodes received, oldest first (the newest few
// thousand).
func (d *Device) Ops() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.cmds)
}

// Baud is the rate of the last CHANGE_BAUDRATE (115200 before any).
func (d *Device) Baud() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.baud
}

// Running reports whether FLASH_END with reboot started the firmware.
func (d *Device) Running() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running
}

// Reboot resets the chip into its loader (GPIO0 low at reset); the flash
// is kept.
func (d *Device) Reboot() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.running, d.writing = false, 0
	d.baud = 115200
	d.regs[uartClkdiv] = xtal / d.baud
}

// Close removes the device: its pty goes away.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed || d.master == nil {
		d.closed = true
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	err := errors.Join(d.master.Close(), d.slave.Close())
	<-d.done
	if err != nil {
		return fmt.Errorf("esprom: close %s: %w", d.path, err)
	}
	return nil
}
