package gdbrsp

import (
	"context"
	"fmt"
	"strconv"

	"github.com/fudbench/fudbench/internal/probeutil"
	"github.com/fudbench/fudbench/internal/rsp"
	"github.com/fudbench/fudbench/probes"
)

// read fills buf from target memory at addr with m packets. A server may
// return fewer bytes than asked; the rest is asked again.
func (c *conn) read(ctx context.Context, addr uint32, buf []byte) error {
	chunk := max((c.pktSize-4)/2, 16)
	for done := 0; done < len(buf); {
		a := addr + uint32(done)
		n := min(chunk, len(buf)-done)
		op := fmt.Sprintf("m at %#08x", a)
		rep, err := c.exchange(ctx, op, fmt.Appendf(nil, "m%x,%x", a, n))
		if err != nil {
			return err
		}
		if k := classify(rep); k == replyError || k == replyEmpty {
			return &ReplyError{Probe: c.p.name, Op: fmt.Sprintf("%s (%d bytes)", op, n), Reply: string(rep)}
		}
		data, err := rsp.DecodeHex(rep)
		if err != nil || len(data) == 0 || len(data) > n {
			c.broken = true
			return fmt.Errorf("%s: %s: reply %q is no hex of up to %d bytes: %w", c.p, op, summary(rep), n, probes.ErrProbe)
		}
		copy(buf[done:], data)
		done += len(data)
	}
	return nil
}

// verify checks what the target holds against the segments written.
func (c *conn) verify(ctx context.Context, segs []segment) error {
	if c.p.cfg.Verify == VerifyNone {
		return nil
	}
	for _, s := range segs {
		for off := 0; off < len(s.data); off += crcChunk {
			part := segment{addr: s.addr + uint32(off), data: s.data[off:min(off+crcChunk, len(s.data))]}
			if err := c.verifyPart(ctx, part); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *conn) verifyPart(ctx context.Context, s segment) error {
	if c.p.cfg.Verify == VerifyCRC && !c.noCRC {
		op := fmt.Sprintf("qCRC at %#08x+%#x", s.addr, len(s.data))
		rep, err := c.exchange(ctx, op, fmt.Appendf(nil, "qCRC:%x,%x", s.addr, len(s.data)))
		if err != nil {
			return err
		}
		switch k := classify(rep); {
		case k == replyEmpty:
			c.p.log.Info("server has no qCRC; verifying by reading back")
			c.noCRC = true
		case k == replyData:
			got, ok := parseCRC(rep)
			if !ok {
				return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
			}
			if want := rsp.CRC32(0xffffffff, s.data); got != want {
				return fmt.Errorf("%s: verify at %#08x+%#x: target CRC %08x, image CRC %08x: %w", c.p, s.addr, len(s.data), got, want, probes.ErrVerify)
			}
			return nil
		default:
			return &ReplyError{Probe: c.p.name, Op: op, Reply: string(rep)}
		}
	}
	got := make([]byte, len(s.data))
	if err := c.read(ctx, s.addr, got); err != nil {
		return err
	}
	if i := probeutil.Mismatch(got, s.data); i >= 0 {
		return fmt.Errorf("%s: verify at %#08x: target holds %#02x, image has %#02x: %w", c.p, s.addr+uint32(i), got[i], s.data[i], probes.ErrVerify)
	}
	return nil
}

// parseCRC reads a qCRC reply, "C" and up to 8 hex digits.
func parseCRC(rep []byte) (uint32, bool) {
	if len(rep) < 2 || rep[0] != 'C' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(rep[1:]), 16, 32)
	return uint32(n), err == nil
}
