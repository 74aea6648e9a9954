package gdbrsp

import (
	"context"
	"errors"
	"fmt"

	"github.com/fudbench/fudbench/internal/rsp"
)

// segment is a part of a write that lies wholly in one flash region, or
// wholly outside flash (region nil).
type segment struct {
	addr   uint32
	data   []byte
	region *Region
}

func (s segment) end() uint64 { return uint64(s.addr) + uint64(len(s.data)) }

// segments splits [addr, addr+len(data)) along the memory map.
func (c *conn) segments(addr uint32, data []byte) []segment {
	var segs []segment
	cur, end := uint64(addr), uint64(addr)+uint64(len(data))
	for cur < end {
		var in *Region
		next := end
		for i := range c.regions {
			r := &c.regions[i]
			if r.Kind != KindFlash {
				continue
			}
			if cur >= uint64(r.Start) && cur < r.End() {
				in, next = r, min(end, r.End())
				break
			}
			if uint64(r.Start) > cur {
				next = min(next, uint64(r.Start))
			}
		}
		off := cur - uint64(addr)
		segs = append(segs, segment{addr: uint32(cur), data: data[off : off+(next-cur)], region: in})
		cur = next
	}
	return segs
}

// blocks rounds [start, end) out to r's erase blocks.
func blocks(r *Region, start, end uint64) (uint32, uint32) {
	bs := uint64(r.BlockSize)
	s := uint64(r.Start) + (start-uint64(r.Start))/bs*bs
	e := uint64(r.Start) + (end-uint64(r.Start)+bs-1)/bs*bs
	e = min(e, r.End())
	return uint32(s), uint32(e - s)
}

func scaleFor(n uint64) int { return int((n + scaleUnit - 1) / scaleUnit) }

func (c *conn) flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	segs := c.segments(addr, data)
	anyFlash := false
	for _, s := range segs {
		if s.region == nil {
			continue
		}
		anyFlash = true
		ea, el := blocks(s.region, uint64(s.addr), s.end())
		op := fmt.Sprintf("vFlashErase at %#08x+%#x", ea, el)
		if err := c.expectOK(ctx, op, fmt.Appendf(nil, "vFlashErase:%x,%x", ea, el), scaleFor(uint64(el))); err != nil {
			return c.diagnose(ctx, ea, err)
		}
	}
	done := 0
	report := func(n int) {
		done += n
		if progress != nil {
			progress(done, len(data))
		}
	}
	for _, s := range segs {
		var err error
		if s.region != nil {
			err = c.flashWrite(ctx, s, report)
		} else {
			err = c.write(ctx, s, report)
		}
		if err != nil {
			return err
		}
	}
	if anyFlash {
		if err := c.expectOK(ctx, "vFlashDone", []byte("vFlashDone"), scaleFor(uint64(len(data)))); err != nil {
			return err
		}
	}
	return c.verify(ctx, segs)
}

// diagnose adds a hint to a refused first command: if the target does not
// even answer a memory read, it is most likely unpowered or not attached,
// rather than protected.
func (c *conn) diagnose(ctx context.Context, addr uint32, err error) error {
	var re *ReplyError
	if !errors.As(err, &re) || re.Reply == "" || c.broken {
		return err
	}
	rep, rerr := c.exchange(ctx, "m", fmt.Appendf(nil, "m%x,4", addr))
	if rerr != nil {
		return err
	}
	if classify(rep) == replyError {
		re.Hint = fmt.Sprintf("a read at %#08x fails too: target unpowered or not attached?", addr)
	} else {
		re.Hint = "the target answers reads: flash protected or the server refuses this range?"
	}
	return err
}

// flashWrite writes a flash segment with vFlashWrite packets that fit the
// server's packet size once escaped.
func (c *conn) flashWrite(ctx context.Context, s segment, report func(int)) error {
	var pkt []byte
	for off := 0; off < len(s.data); {
		a := s.addr + uint32(off)
		pkt = fmt.Appendf(pkt[:0], "vFlashWrite:%x:", a)
		room := c.pktSize - len(pkt) - 4 // "$", "#cs"
		var n int
		pkt, n = rsp.AppendBinaryUpTo(pkt, s.data[off:], max(room, 2))
		op := fmt.Sprintf("vFlashWrite at %#08x (%d bytes)", a, n)
		if err := c.expectOK(ctx, op, pkt, 1); err != nil {
			return err
		}
		off += n
		report(n)
	}
	return nil
}

// write writes a segment outside flash with X, or M once X got an empty
// reply.
func (c *conn) write(ctx context.Context, s segment, report func(int)) error {
	var pkt []byte
	for off := 0; off < len(s.data); {
		a := s.addr + uint32(off)
		var n int
		var op string
		if !c.noX {
			// Room for the longest header, "X" ADDR "," LEN ":".
			room := c.pktSize - 19 - 4
			var body []byte
			body, n = rsp.AppendBinaryUpTo(nil, s.data[off:], max(room, 2))
			pkt = append(fmt.Appendf(pkt[:0], "X%x,%x:", a, n), body...)
			op = fmt.Sprintf("X at %#08x (%d bytes)", a, n)
		} else {
			n = min(max((c.pktSize-19-4)/2, 1), len(s.data)-off)
			pkt = rsp.AppendHex(fmt.Appendf(pkt[:0], "M%x,%x:", a, n), s.data[off:off+n])
			op = fmt.Sprintf("M at %#08x (%d bytes)", a, n)
		}
		rep, err := c.exchange(ctx, op, pkt)
		if err != nil {
			return err
		}
		switch classify(rep) {
		case replyOK:
			off += n
			report(n)
		case replyEmpty:
			if c.noX {
				return &ReplyError{Probe: c.p.name, Op: op, Reply: ""}
			}
			c.p.log.Info("server has no X packet; writing with M")
			c.noX = true
		default:
			return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
		}
	}
	return nil
}
