package stm32uart

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/probes"
)

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
