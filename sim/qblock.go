package sim

import (
	"bytes"
	"slices"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/internal/coapopt"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

// Q-Block1 defaults (RFC 9177 §7.2).
const (
	DefaultMaxPayloads       = 10
	DefaultNonReceiveTimeout = 4 * time.Second // 2 × NON_TIMEOUT
	qNonMaxRetransmit        = 4               // 4.08s sent for one silence
	qMaxListed               = 64              // block numbers in one 4.08
)

// qrx is the firmware's Q-Block1 receiver (RFC 9177): it turns blocks
// that arrive in bursts, possibly out of order or twice, into the in-order
// block writes the update code does anyway. Blocks ahead of the next one
// to write wait in RAM, at most MaxPayloads of them; one more is dropped
// and reported missing later. It lives in RAM: a power cut forgets it.
type qrx struct {
	active bool
	tag    []byte
	szx    uint8
	n      uint32 // blocks in the body; 0 while unknown
	seen   uint32 // highest block number seen, plus one
	held   map[uint32][]byte
	gen    uint64 // counts the body's requests: a timer of an older one is stale
	// Where the last request came from and its token: a 4.08 sent when
	// the blocks stop coming goes there.
	token   []byte
	origin  coapsrv.Origin
	timer   *time.Timer
	retries int
}

func (q *qrx) start(tag []byte, szx uint8) {
	q.stop()
	*q = qrx{active: true, tag: bytes.Clone(tag), szx: szx, held: map[uint32][]byte{}, gen: q.gen}
}

func (q *qrx) stop() {
	if q.timer != nil {
		q.timer.Stop()
		q.timer = nil
	}
}

// end forgets the body (taken whole, or refused).
func (q *qrx) end() {
	q.stop()
	q.active, q.held = false, nil
}

// missing lists the blocks from next below upto that are neither written
// nor held; when none are and tail is set, the blocks from next on to the
// end of the set holding the last one seen (what a silent sender most
// likely lost). At most qMaxListed.
func (q *qrx) missing(next, upto uint32, set int, tail bool) []uint32 {
	var out []uint32
	for i := next; i < upto && len(out) < qMaxListed; i++ {
		if _, ok := q.held[i]; !ok {
			out = append(out, i)
		}
	}
	if len(out) > 0 || !tail {
		return out
	}
	per := uint32(set)
	end := (q.seen + per - 1) / per * per
	if q.seen%per == 0 {
		end = q.seen + per
	}
	if q.n != 0 {
		end = min(end, q.n)
	}
	for i := max(next, q.seen); i < end && len(out) < qMaxListed; i++ {
		if _, ok := q.held[i]; !ok {
			out = append(out, i)
		}
	}
	return out
}

// blockReq is req with its Q-Block1 option given as the Block1 of blk and
// payload as its body: what the firmware's Block1 code takes.
func blockReq(req *coapsrv.Request, blk coapsrv.Block, payload []byte) *coapsrv.Request {
	r := *req
	r.Options = make(message.Options, 0, len(req.Options))
	for _, o := range req.Options {
		if o.ID != message.QBlock1 && o.ID != message.Block1 {
			r.Options = append(r.Options, o)
		}
	}
	r.Options = r.Options.Add(blk.Option(message.Block1))
	r.Payload = payload
	return &r
}

// maxPayloads is the board's MAX_PAYLOADS.
func (b *Board) maxPayloads() int {
	if b.cfg.MaxPayloads > 0 {
		return b.cfg.MaxPayloads
	}
	return DefaultMaxPayloads
}

func (b *Board) nonReceiveTimeout() time.Duration {
	if b.cfg.NonReceiveTimeout > 0 {
		return b.cfg.NonReceiveTimeout
	}
	return DefaultNonReceiveTimeout
}

// qblockUpload takes one block of a Q-Block1 body (RFC 9177 §4.4). next
// is the block the firmware writes next; write is its Block1 code, which
// answers 2.31 for a block taken, 2.04 for the last one, anything else to
// refuse. Blocks go to write in order; what the sender hears:
//
//   - confirmable requests: an empty ACK each, the final answer piggybacked
//     on the request that completes the body;
//   - non-confirmable: 2.31 when every block up to a set's end (sets of
//     MaxPayloads blocks, by block number) is written, whether the set's
//     last block or a re-sent one completed it; 4.08 with the missing
//     blocks when a set's last block (or the body's) comes and some are
//     missing; nothing for the blocks inside a set; and a 4.08 listing the
//     missing blocks when none came for NonReceiveTimeout (at most
//     NON_MAX_RETRANSMIT times in a row).
func (b *Board) qblockUpload(ep uint64, r *ram, req *coapsrv.Request, next func() uint32, write func(*coapsrv.Request) (*coapsrv.Response, bool)) (*coapsrv.Response, bool) {
	blk, ok := req.QBlock1()
	if !ok {
		return failure(codes.BadOption, "", "bad Q-Block1 option"), false
	}
	set := b.maxPayloads()
	tag, _ := req.RequestTag()
	q := &r.q
	if !q.active || !bytes.Equal(tag, q.tag) || blk.SZX != q.szx {
		q.start(tag, blk.SZX)
	}
	q.stop()
	q.gen++
	q.retries = 0
	q.token = append(q.token[:0], req.Token...)
	q.origin = req.Origin()
	bs := uint32(fwproto.BlockSize(blk.SZX))
	if s1, ok := req.Size1(); ok && s1 > 0 {
		q.n = (s1 + bs - 1) / bs
	}
	if !blk.More {
		q.n = blk.Num + 1
	}
	q.seen = max(q.seen, blk.Num+1)

	var final *coapsrv.Response
	reset := false
	take := func(num uint32, payload []byte) (stop bool) {
		more := q.n == 0 || num+1 < q.n
		resp, rst := write(blockReq(req, coapsrv.Block{Num: num, More: more, SZX: blk.SZX}, payload))
		switch {
		case resp == nil: // power went while writing
			final, reset = nil, false
			return true
		case resp.Code == codes.Continue:
			return false
		default:
			final, reset = resp, rst
			return true
		}
	}
	switch n := next(); {
	case blk.Num < n:
		// Written already: a block sent again.
	case blk.Num == n:
		stop := take(blk.Num, req.Payload)
		for !stop {
			n = next()
			p, ok := q.held[n]
			if !ok {
				break
			}
			delete(q.held, n)
			stop = take(n, p)
		}
		if stop && final == nil {
			return nil, false // power lost: nothing is sent
		}
	default:
		if _, dup := q.held[blk.Num]; !dup && len(q.held) < set && blk.Num < n+uint32(2*set) {
			q.held[blk.Num] = bytes.Clone(req.Payload)
		}
	}
	if final != nil {
		q.end()
		final.Block1 = nil
		if final.Code == codes.Changed || final.Code == codes.Created {
			final.Options = append(final.Options, blk.Option(message.QBlock1))
		}
		return final, reset
	}
	if req.Type == message.Confirmable {
		return &coapsrv.Response{Code: codes.Empty}, false
	}
	b.armQTimer(ep, q)
	per := uint32(set)
	now := next()
	setEnd := (blk.Num+1)%per == 0 || blk.Num+1 == q.n
	switch {
	case len(q.held) == 0 && now%per == 0 && now > 0 && now > blk.Num && (now-1 == blk.Num || now-1 < q.seen):
		// Every block up to a set's end is written: this one ended the
		// set, or filled its last gap.
		return continueAt(now-1, q.n, blk.SZX), false
	case !setEnd:
		return nil, false // inside a set: the sender is not waiting
	case blk.Num < now:
		// A set's end sent again: its 2.31 was lost.
		return continueAt(blk.Num, q.n, blk.SZX), false
	}
	return missingBlocks(q.missing(now, blk.Num+1, set, false)), false
}

// continueAt is the 2.31 for the set ending at block num.
func continueAt(num, n uint32, szx uint8) *coapsrv.Response {
	more := n == 0 || num+1 < n
	return &coapsrv.Response{Code: codes.Continue, Options: message.Options{coapsrv.Block{Num: num, More: more, SZX: szx}.Option(message.QBlock1)}}
}

// missingBlocks is the 4.08 that lists blocks (RFC 9177 §5).
func missingBlocks(miss []uint32) *coapsrv.Response {
	return &coapsrv.Response{Code: codes.RequestEntityIncomplete, ContentFormat: coapopt.MediaTypeMissingBlocks, Payload: coapopt.AppendMissingBlocks(nil, miss)}
}

// armQTimer starts the NON_RECEIVE_TIMEOUT of the body's last request.
func (b *Board) armQTimer(ep uint64, q *qrx) {
	gen := q.gen
	q.timer = time.AfterFunc(b.nonReceiveTimeout(), func() { b.qSilence(ep, q, gen) })
}

// qSilence runs when no block of a body came for NonReceiveTimeout: the
// firmware asks for the blocks it lacks.
func (b *Board) qSilence(ep uint64, q *qrx, gen uint64) {
	b.cpu.Lock()
	r := b.current(ep)
	if r == nil || q != &r.q || !q.active || q.gen != gen {
		b.cpu.Unlock()
		return
	}
	next := b.qNext(r)
	miss := q.missing(next, q.seen, b.maxPayloads(), true)
	token, origin := slices.Clone(q.token), q.origin
	q.retries++
	retry := q.retries
	if retry < qNonMaxRetransmit {
		b.armQTimer(ep, q)
	} else {
		q.timer = nil // the sender is gone; the next block starts over
	}
	b.cpu.Unlock()
	if len(miss) == 0 {
		return
	}
	b.log.Debug("q-block1: blocks missing", "blocks", miss, "retry", retry)
	if err := origin.Send(token, missingBlocks(miss)); err != nil {
		b.log.Debug("q-block1: 4.08 not sent", "err", err)
	}
}

// qNext is the block the firmware writes next in the upload under way.
func (b *Board) qNext(r *ram) uint32 {
	switch {
	case r.mode == ModeRecovery && b.cfg.Strategy == InplaceRecovery:
		return r.next
	case r.naiveBusy:
		return r.naiveNext
	}
	return 0
}

// wellKnownCore serves the board's resources in CoRE Link Format (RFC
// 6690), block-wise when asked with Block2 or Q-Block2: a client probes
// Q-Block support by asking for its first block with Q-Block2 and looks
// for that option in the answer (RFC 9177 §4.1).
func (b *Board) wellKnownCore(r *ram, req *coapsrv.Request) *coapsrv.Response {
	links := `</boot>;ct=60,</fw>;title="firmware image, Block1 and Q-Block1"`
	switch {
	case r.mode == ModeApp:
		links += `,</fw/version>;ct=60`
		if b.cfg.Strategy == InplaceRecovery {
			links += `,</fw/prepare>;ct=60`
		}
	case r.mode == ModeRecovery:
		links += `,</fw/state>;ct=60`
	}
	body := []byte(links)
	resp := &coapsrv.Response{Code: codes.Content, ContentFormat: int(message.AppLinkFormat), Payload: body}
	id := message.QBlock2
	blk, ok := req.QBlock2()
	if !ok {
		id = message.Block2
		blk, ok = req.Block2()
	}
	if !ok {
		return resp
	}
	bs := blk.Size()
	off := int(blk.Num) * bs
	if off >= len(body) && !(off == 0 && len(body) == 0) {
		return failure(codes.BadOption, "", "block beyond the resource")
	}
	end := min(off+bs, len(body))
	resp.Payload = body[off:end]
	resp.Options = message.Options{coapsrv.Block{Num: blk.Num, More: end < len(body), SZX: blk.SZX}.Option(id)}
	return resp
}
