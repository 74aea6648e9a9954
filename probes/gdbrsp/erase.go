package gdbrsp

import (
	"context"
	"fmt"

	"github.com/fudbench/fudbench/internal/rsp"
	"github.com/fudbench/fudbench/probes"
)

// span is a run of flash to erase: whole blocks of one region, or the
// whole range when the server has no memory map (block 0).
type span struct{ addr, length, block uint32 }

func (s span) end() uint64 { return uint64(s.addr) + uint64(s.length) }

// erase erases [addr, addr+length), split along the memory map, leaving
// out blocks that are blank already. vFlashDone follows the erases, as
// GDB's load sends it; nothing erased needs no vFlashDone.
func (c *conn) erase(ctx context.Context, addr, length uint32) error {
	parts, err := c.eraseParts(addr, length)
	if err != nil {
		return err
	}
	st := &c.p.lastErase
	runs := parts
	if c.regions != nil {
		for _, pt := range parts {
			st.Blocks += int(pt.length / pt.block)
		}
		if !c.p.noSkip {
			dirty, skipped, ok, err := c.dirtyRuns(ctx, parts)
			if err != nil {
				return err
			}
			if ok {
				runs, st.Skipped = dirty, skipped
			}
		}
	}
	c.p.log.Debug("erase", "addr", fmt.Sprintf("%#08x", addr), "length", length, "blocks", st.Blocks, "skipped_blank", st.Skipped, "commands", len(runs))
	for _, r := range runs {
		op := fmt.Sprintf("vFlashErase at %#08x+%#x", r.addr, r.length)
		if err := c.expectOK(ctx, op, fmt.Appendf(nil, "vFlashErase:%x,%x", r.addr, r.length), scaleFor(uint64(r.length))); err != nil {
			return err
		}
		st.Commands++
	}
	if len(runs) == 0 {
		return nil
	}
	return c.expectOK(ctx, "vFlashDone", []byte("vFlashDone"), 1)
}

// eraseParts splits [addr, addr+length) at the borders of flash regions;
// each part must start and end on its region's block boundaries. Without
// a memory map the range is one part.
func (c *conn) eraseParts(addr, length uint32) ([]span, error) {
	if c.regions == nil {
		return []span{{addr, length, 0}}, nil
	}
	var parts []span
	for _, s := range c.segments(addr, make([]byte, length)) {
		if s.region == nil {
			return nil, fmt.Errorf("%s: erase at %#08x+%#x: %#08x+%#x is not flash: %w", c.p, addr, length, s.addr, len(s.data), probes.ErrProbe)
		}
		bs := s.region.BlockSize
		if (s.addr-s.region.Start)%bs != 0 || (s.end()-uint64(s.region.Start))%uint64(bs) != 0 {
			return nil, fmt.Errorf("%s: erase at %#08x+%#x: %#08x+%#x is not on %#x-byte block boundaries: %w", c.p, addr, length, s.addr, len(s.data), bs, probes.ErrProbe)
		}
		parts = append(parts, span{s.addr, uint32(len(s.data)), bs})
	}
	return parts, nil
}

// dirtyRuns returns the blocks of parts that are not blank, consecutive
// ones of a part joined into one run, and how many blocks are blank. ok
// is false when the server cannot tell (no qCRC, or a refusal): then
// every block must be erased.
//
// Leaving a block out on its CRC alone is safe but for one case: a
// non-blank block whose CRC-32 equals the blank block's. CRC-32 finds
// every difference of up to 3 bits in a block of up to 11 KiB (2 bits in
// a 64 KiB check) and every burst of up to 32 bits, so a flag or counter
// moved away from the erased value is never missed; other contents pass
// with a chance of 2^-32 per block. Flash then verifies the image it
// writes, and a records region left non-blank shows as a failed baseline.
// What a CRC cannot see: on flash with ECC (STM32L4/H7 double words) a
// word programmed with the erased value reads blank but cannot be
// programmed again until erased; firmware writing there later fails.
func (c *conn) dirtyRuns(ctx context.Context, parts []span) ([]span, int, bool, error) {
	if c.noCRC {
		return nil, 0, false, nil
	}
	var runs []span
	skipped := 0
	for _, pt := range parts {
		extend := false // the last run ends just before this block, in this part
		for a := uint64(pt.addr); a < pt.end(); a += uint64(pt.block) {
			blank, ok, err := c.blank(ctx, uint32(a), pt.block)
			if err != nil || !ok {
				return nil, 0, false, err
			}
			switch {
			case blank:
				skipped++
				extend = false
			case extend:
				runs[len(runs)-1].length += pt.block
			default:
				runs = append(runs, span{uint32(a), pt.block, pt.block})
				extend = true
			}
		}
	}
	return runs, skipped, true, nil
}

// blank asks the server whether [addr, addr+n) holds only the erased
// value, in qCRC checks of up to crcChunk bytes so that each answers
// within one command timeout. ok is false when the server cannot tell.
func (c *conn) blank(ctx context.Context, addr, n uint32) (blank, ok bool, err error) {
	for off := uint32(0); off < n; off += crcChunk {
		a, k := addr+off, min(n-off, crcChunk)
		op := fmt.Sprintf("qCRC at %#08x+%#x", a, k)
		rep, err := c.exchange(ctx, op, fmt.Appendf(nil, "qCRC:%x,%x", a, k))
		if err != nil {
			return false, false, err
		}
		got, isCRC := parseCRC(rep)
		switch {
		case classify(rep) == replyEmpty:
			c.p.log.Info("server has no qCRC; erasing every block")
			c.noCRC = true
			return false, false, nil
		case !isCRC:
			// A refusal (e.g. OpenOCD with the core running) is no
			// answer: erase as if there were no qCRC.
			c.p.log.Debug("qCRC refused; erasing every block", "op", op, "reply", summary(rep))
			return false, false, nil
		case got != c.blankCRC(k):
			return false, true, nil
		}
	}
	return true, true, nil
}

// blankCRC is the qCRC of n bytes of the erased value.
func (c *conn) blankCRC(n uint32) uint32 {
	if crc, ok := c.blankCRCs[n]; ok {
		return crc
	}
	var buf [256]byte
	for i := range buf {
		buf[i] = c.p.erasedValue()
	}
	crc := uint32(0xffffffff)
	for left := n; left > 0; {
		k := min(left, uint32(len(buf)))
		crc = rsp.CRC32(crc, buf[:k])
		left -= k
	}
	if c.blankCRCs == nil {
		c.blankCRCs = map[uint32]uint32{}
	}
	c.blankCRCs[n] = crc
	return crc
}
