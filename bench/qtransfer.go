package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/results"
)

// qtransfer is transfer for a board that takes Q-Block1 (RFC 9177): the
// blocks from next on go in bursts without waiting for each answer, and
// the device's answers acknowledge them in runs. A block is acknowledged
// when the device has it for good: every block before the block a 2.31
// names, or before the first block a 4.08 lists missing (blocks after a
// gap wait in the device's RAM and a cut loses them), and all of them
// with the final answer. Acknowledged blocks reach the trigger in order;
// a cut it fires stops the transfer at once. A block is in flight from
// the moment it is sent until acknowledged; with bursts several are, and
// the cut record names the last one sent.
//
// The replay check of a secured recovery (a request from before the cut
// sent again) needs the client between two blocks, which a burst does not
// leave; it runs for Block1 transfers only.
func (s *session) qtransfer(ctx context.Context, c *fwclient.Client, next uint32, szx uint8) (done bool, at uint32, newSZX uint8, err error) {
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.mu.Lock()
	s.cancel = cancel
	s.mu.Unlock()
	if s.cutFired() {
		return false, next, szx, nil
	}
	tag := s.u.Tag
	if s.u.Profile == boards.ProfileBlock1 {
		tag = nil
	}
	n := fwproto.Blocks(uint32(len(s.u.Image)), szx)
	start := time.Now()
	defer func() { s.res.Transfer += time.Since(start) }()
	sentAt := make([]time.Time, n)
	acked := next // blocks below are acknowledged
	stopped := false
	ackTo := func(upto uint32, at time.Time) {
		for ; acked < min(upto, n) && !stopped; acked++ {
			num := acked
			s.mu.Lock()
			s.acked = int64(num)
			if s.sent == int64(num) {
				s.sent = -1
			}
			s.maxAck = max(s.maxAck, int64(num))
			s.mu.Unlock()
			var d time.Duration
			if !sentAt[num].IsZero() {
				d = at.Sub(sentAt[num])
			}
			s.emit(results.BlockAcked, int64(num), "", d)
			if s.secured() && s.awaitFirst {
				s.firstBlock(at)
			}
			if s.u.Trigger != nil && !s.fired() && s.u.Trigger.Acked(num, at) {
				stopped = true
				s.fire(at, s.u.Trigger.String())
			}
		}
	}
	ev := coap.QEvents{
		Sending: func(num uint32, again bool) {
			if num == n-1 && !s.res.OpsAtLastOK {
				s.opsAtLast(ctx)
			}
			s.mu.Lock()
			s.sent = int64(num)
			resent := again || int64(num) <= s.maxAck
			s.mu.Unlock()
			s.res.BlocksSent++
			text := ""
			if resent {
				s.res.BlocksResent++
				if again {
					text = "sent again (q-block1)"
				}
			}
			now := time.Now()
			sentAt[num] = now
			s.emit(results.BlockSent, int64(num), text, 0)
			if s.u.Trigger != nil && !s.fired() {
				s.u.Trigger.Sent(num, now)
			}
		},
		Answer: func(r *coap.Response, missing []uint32) {
			now := time.Now()
			switch {
			case len(missing) > 0:
				s.emit(results.Note, int64(missing[0]), fmt.Sprintf("device lacks %d block(s) from %d on: sent again", len(missing), missing[0]), 0)
				ackTo(missing[0], now)
			case r.Block1 != nil:
				ackTo(r.Block1.Num+1, now)
			}
		},
	}
	if !s.b.qprobed {
		// Once per board: a device without Q-Block says so to the probe
		// (4.02), which is the bench file's mistake, not the device's.
		refused, r, perr := c.ProbeQBlock(tctx)
		switch {
		case perr != nil:
			// No answer: the transfer will tell.
		case refused:
			where := ""
			if e := s.b.Entry; e != nil && e.CoAP != nil && e.CoAP.QBlock != nil && e.CoAP.QBlock.At.Line > 0 {
				where = fmt.Sprintf(" (%s:%d)", e.File, e.CoAP.QBlock.At.Line)
			}
			return false, next, szx, s.infra(fmt.Errorf("board %s: the device answered the Q-Block probe (RFC 9177 §4.1) with 4.02 Bad Option: it takes no Q-Block1: send with Block1 (no qblock in its coap entry%s, no --qblock)", s.b.Name, where))
		default:
			s.b.qprobed = true
			if r.QBlock2 == nil {
				s.emit(results.Note, -1, fmt.Sprintf("the device answered the Q-Block probe with %v and no Q-Block2 option: trying Q-Block1 anyway", r.Code), 0)
			}
		}
	}
	q := *s.b.QBlock
	if q.NonTimeout == 0 {
		// NON_TIMEOUT is ACK_TIMEOUT (RFC 9177 §7.2): the board's own.
		q.NonTimeout = s.b.Endpoint.Tx.AckTimeout
	}
	var resp *coap.Response
	if t, ok := s.u.Trigger.(AckTrigger); ok && !s.fired() && t.AckBlock() >= next && t.AckBlock()+1 < n {
		// Nothing past the planned block goes out before the device has
		// answered for it: the cut lands with nothing in flight.
		resp, err = c.QPutUntil(tctx, s.u.Path, s.u.Image, next, t.AckBlock()+1, szx, tag, q, ev)
		if err == nil && !s.cutFired() {
			resp, err = c.QPut(tctx, s.u.Path, s.u.Image, acked, szx, tag, q, ev)
		}
	} else {
		resp, err = c.QPut(tctx, s.u.Path, s.u.Image, next, szx, tag, q, ev)
	}
	if s.secured() {
		s.captured = c.Capture()
	}
	if s.cutFired() {
		if err == nil && (resp.Code == codes.Changed || resp.Code == codes.Created) {
			ackTo(n, time.Now())
			s.emit(results.UpdateDone, int64(n-1), "", 0)
			return true, n, szx, nil
		}
		// Stopped at the block in flight, or at the one whose answer
		// fired the cut.
		at := acked - min(acked, 1)
		if c := s.res.Cut; c != nil && c.InFlight >= 0 {
			at = uint32(c.InFlight)
		}
		return false, at, szx, nil
	}
	if err != nil {
		var rs *fwclient.ResyncError
		switch {
		case errors.As(err, &rs):
			return false, acked, szx, err
		case answered(err):
			return false, acked, szx, fmt.Errorf("board %s: %w", s.b.Name, err)
		}
		return false, acked, szx, fmt.Errorf("board %s: q-block1 transfer from block %d: %w", s.b.Name, acked, err)
	}
	ackTo(n, time.Now())
	s.emit(results.UpdateDone, int64(n-1), "", 0)
	return true, n, szx, nil
}
