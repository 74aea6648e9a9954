package sim

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/fudbench/fudbench/sim/gdbstub"
)

// The board's probe port: a GDB remote serial protocol server through
// which flash is read, erased and written and the CPU reset, as through a
// J-Link or OpenOCD GDB server. It works whenever the board is powered,
// whatever the firmware is doing — that is how a bricked board comes back.

const ramBase, ramSize = 0x20000000, 64 << 10

type gdbTarget struct {
	b   *Board
	ram []byte // allocated on first use: idle boards stay small
}

func (t *gdbTarget) sram() []byte {
	if t.ram == nil {
		t.ram = make([]byte, ramSize)
	}
	return t.ram
}

var _ gdbstub.Target = (*gdbTarget)(nil)

var errUnpowered = errors.New("target not powered")

func (t *gdbTarget) check() error {
	if !t.b.Powered() {
		return fmt.Errorf("sim: board %s: %w", t.b.cfg.Name, errUnpowered)
	}
	return nil
}

func (t *gdbTarget) MemoryMap() []gdbstub.Region {
	var rs []gdbstub.Region
	base := t.b.cfg.FlashBase
	off := 0
	for _, s := range t.b.fl.Config().Sectors {
		if n := len(rs); n > 0 && rs[n-1].BlockSize == uint32(s) {
			rs[n-1].Length += uint32(s)
		} else {
			rs = append(rs, gdbstub.Region{Kind: "flash", Start: base + uint32(off), Length: uint32(s), BlockSize: uint32(s)})
		}
		off += s
	}
	return append(rs, gdbstub.Region{Kind: "ram", Start: ramBase, Length: ramSize})
}

// flashOff maps a bus address into the flash, or returns ok=false.
func (t *gdbTarget) flashOff(addr uint32, n int) (int, bool) {
	base := t.b.cfg.FlashBase
	if addr < base || uint64(addr-base)+uint64(n) > uint64(t.b.fl.Size()) {
		return 0, false
	}
	return int(addr - base), true
}

func (t *gdbTarget) ReadMemory(addr uint32, p []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	if off, ok := t.flashOff(addr, len(p)); ok {
		return t.b.fl.Read(off, p)
	}
	if addr >= ramBase && uint64(addr-ramBase)+uint64(len(p)) <= ramSize {
		copy(p, t.sram()[addr-ramBase:])
		return nil
	}
	return fmt.Errorf("sim: board %s: no memory at %#08x", t.b.cfg.Name, addr)
}

func (t *gdbTarget) WriteMemory(addr uint32, p []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	if addr >= ramBase && uint64(addr-ramBase)+uint64(len(p)) <= ramSize {
		copy(t.sram()[addr-ramBase:], p)
		return nil
	}
	if _, ok := t.flashOff(addr, len(p)); ok {
		return fmt.Errorf("sim: board %s: plain write into flash at %#08x: use the flash commands", t.b.cfg.Name, addr)
	}
	return fmt.Errorf("sim: board %s: no memory at %#08x", t.b.cfg.Name, addr)
}

func (t *gdbTarget) FlashErase(addr, length uint32) error {
	if err := t.check(); err != nil {
		return err
	}
	off, ok := t.flashOff(addr, int(length))
	if !ok {
		return fmt.Errorf("sim: board %s: erase %#08x+%#x outside flash", t.b.cfg.Name, addr, length)
	}
	return t.b.fl.EraseRange(off, int(length))
}

func (t *gdbTarget) FlashWrite(addr uint32, p []byte) error {
	if err := t.check(); err != nil {
		return err
	}
	off, ok := t.flashOff(addr, len(p))
	if !ok {
		return fmt.Errorf("sim: board %s: write %#08x+%#x outside flash", t.b.cfg.Name, addr, len(p))
	}
	// The probe's flash loader pads a partial write unit with the erased
	// value, as real loaders do.
	a := t.b.cfg.WriteAlign
	lead := off % a
	buf := make([]byte, (lead+len(p)+a-1)/a*a)
	for i := range buf {
		buf[i] = t.b.fl.Config().Erased
	}
	copy(buf[lead:], p)
	if lead != 0 || len(buf) != len(p) {
		// Keep what is already programmed in the padding.
		cur := make([]byte, len(buf))
		if err := t.b.fl.Read(off-lead, cur); err != nil {
			return err
		}
		for i := 0; i < lead; i++ {
			buf[i] = cur[i]
		}
		for i := lead + len(p); i < len(buf); i++ {
			buf[i] = cur[i]
		}
	}
	return t.b.fl.Program(off-lead, buf)
}

func (t *gdbTarget) FlashDone() error { return t.check() }

func (t *gdbTarget) Reset(halt bool) error {
	if err := t.check(); err != nil {
		return err
	}
	// A halted core does not run the bootloader until resumed; the sim
	// has no core to halt, so both reset flavours reboot the firmware.
	t.b.Reset()
	return nil
}

func (b *Board) startGDB() error {
	ln, err := net.Listen("tcp", b.cfg.GDBAddr)
	if err != nil {
		return fmt.Errorf("sim: board %s: gdb port %s: %w", b.cfg.Name, b.cfg.GDBAddr, err)
	}
	b.gdbLn = ln
	srv := gdbstub.New(&gdbTarget{b: b}, gdbstub.Options{Logger: b.log, Name: b.cfg.Name})
	ctx, cancel := context.WithCancel(context.Background())
	b.gdbStop = cancel
	b.gdbDone = make(chan struct{})
	go func() {
		defer close(b.gdbDone)
		srv.Serve(ctx, ln)
	}()
	return nil
}

// GDBAddr is the address of the board's probe port ("" if disabled).
func (b *Board) GDBAddr() string {
	if b.gdbLn == nil {
		return ""
	}
	return b.gdbLn.Addr().String()
}

// ConsolePath is the board's console pty now; ConsoleLink the stable link.
func (b *Board) ConsolePath() string { return b.console.Path() }

// ConsoleLink is the stable symlink to the console pty.
func (b *Board) ConsoleLink() string { return b.console.Link() }
