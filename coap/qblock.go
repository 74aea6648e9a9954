package coap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/internal/coapopt"
)

// OptionQBlock1 is the Q-Block1 option (RFC 9177 §4): the value format of
// Block1, for bodies sent in bursts of non-confirmable requests.
const OptionQBlock1 = message.QBlock1

// MediaTypeMissingBlocks is application/missing-blocks+cbor-seq (RFC 9177
// §5): the payload of a 4.08 that lists the blocks a server still lacks,
// as a CBOR sequence of unsigned integers in ascending order.
const MediaTypeMissingBlocks = coapopt.MediaTypeMissingBlocks

// QBlock holds the Q-Block1 congestion-control parameters (RFC 9177 §7.2).
// The zero value means the RFC's defaults.
type QBlock struct {
	MaxPayloads int // MAX_PAYLOADS, blocks in one burst; default 10
	// NonTimeout is NON_TIMEOUT, how long the client waits for the
	// server's answer to a burst before it sends the next one (default
	// 2 s); a random part of up to NonTimeout/2 is added (NON_TIMEOUT_RANDOM).
	NonTimeout time.Duration
	// NonMaxRetransmit is NON_MAX_RETRANSMIT: how often the last block is
	// sent again, when all blocks went out and the server said nothing,
	// before the transfer fails with ErrNoResponse (default 4).
	NonMaxRetransmit int
}

func (q QBlock) withDefaults() QBlock {
	if q.MaxPayloads <= 0 {
		q.MaxPayloads = 10
	}
	if q.NonTimeout <= 0 {
		q.NonTimeout = 2 * time.Second
	}
	if q.NonMaxRetransmit <= 0 {
		q.NonMaxRetransmit = 4
	}
	return q
}

// ErrMissingBlocks marks a missing-blocks payload that does not decode.
var ErrMissingBlocks = coapopt.ErrMissingBlocks

// DecodeMissingBlocks decodes an application/missing-blocks+cbor-seq
// payload: a CBOR sequence of unsigned integers (block numbers, at most
// 2^20-1 each). At most max numbers are accepted.
func DecodeMissingBlocks(p []byte, max int) ([]uint32, error) {
	return coapopt.DecodeMissingBlocks(p, max)
}

// AppendMissingBlocks appends nums as a CBOR sequence of unsigned integers
// in their shortest form.
func AppendMissingBlocks(b []byte, nums []uint32) []byte { return coapopt.AppendMissingBlocks(b, nums) }

// QEvents reports the progress of a Q-Block1 transfer on the requesting
// goroutine; any field may be nil.
type QEvents struct {
	// Sending is called before block num goes out (again, if resent).
	Sending func(num uint32, resent bool)
	// Answer is called with each answer of the server that the transfer
	// goes on from: 2.31 after a burst, 4.08 with the missing blocks.
	Answer func(r *Response, missing []uint32)
}

// QPut sends img (from block first on) to path with Q-Block1 (RFC 9177) in
// non-confirmable requests: bursts of q.MaxPayloads blocks, each burst
// answered by 2.31 Continue, or by 4.08 Request Entity Incomplete with the
// missing block numbers, which are sent again first. It returns the final
// answer (2.04 or 2.01). Any other answer is returned with a
// *StatusError; a 4.08 without a missing-blocks payload is one too (a
// device's own resynchronisation).
func (c *Client) QPut(ctx context.Context, path string, img []byte, first uint32, szx uint8, tag []byte, q QBlock, ev QEvents) (*Response, error) {
	return c.QPutUntil(ctx, path, img, first, 0, szx, tag, q, ev)
}

// QPutUntil is QPut that stops short of the end of img, when until is
// not 0 and below the image's block count: it sends blocks first to
// until−1 and returns the server's answer that every one of them arrived
// (a 2.31 naming block until−1 or a later one, or a 4.08 whose missing
// blocks all come after it), sending block until−1 again while the server
// stays silent. A bench that must hear of block until−1 before anything
// follows it (a power cut planned there) stops the transfer there, then
// goes on with QPut from until. until−1 should end a set of MaxPayloads
// blocks, where the server answers at once.
func (c *Client) QPutUntil(ctx context.Context, path string, img []byte, first, until uint32, szx uint8, tag []byte, q QBlock, ev QEvents) (*Response, error) {
	q = q.withDefaults()
	if c.osc != nil {
		return nil, errors.New("coap: Q-Block1 over OSCORE is not supported")
	}
	if szx > 6 {
		return nil, fmt.Errorf("coap: szx %d out of range", szx)
	}
	bs := uint32(BlockSize(szx))
	n := (uint32(len(img)) + bs - 1) / bs
	if n == 0 {
		n = 1
	}
	if first >= n {
		return nil, fmt.Errorf("coap: block %d beyond a %d-byte image", first, len(img))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watch(ctx)
	if err := c.handshake(ctx, time.Now().Add(c.maxWait)); err != nil {
		return nil, fmt.Errorf("coap: PUT %s%s: %w", c.addr, path, err)
	}

	if until == 0 || until > n {
		until = n
	}
	if until <= first {
		return nil, fmt.Errorf("coap: blocks %d to %d: nothing to send", first, until-1)
	}
	queue := make([]uint32, 0, until-first) // blocks to send, in order
	for i := first; i < until; i++ {
		queue = append(queue, i)
	}
	sent := make([]bool, n)
	firstTok := c.tokSeq + 1
	probes := 0
	heard := false // the last wait ended with an answer
	for {
		burst := burstLen(queue, q.MaxPayloads)
		// Everything went out. After an answer (a 2.31 for the last set)
		// the final one may be on its way: wait for it without sending.
		// When the server said nothing, the last block again asks it for
		// its answer.
		if burst == 0 && !heard {
			if probes >= q.NonMaxRetransmit {
				return nil, fmt.Errorf("coap: PUT %s%s: %w after the last block was sent %d times: %w", c.addr, path, ErrNoResponse, probes+1, context.DeadlineExceeded)
			}
			probes++
			queue = append(queue, until-1)
			burst = 1
		}
		for _, num := range queue[:burst] {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("coap: PUT %s%s: %w", c.addr, path, err)
			}
			if ev.Sending != nil {
				ev.Sending(num, sent[num])
			}
			if err := c.qsend(path, img, num, n, szx, tag); err != nil {
				return nil, fmt.Errorf("coap: PUT %s%s block %d: %w", c.addr, path, num, err)
			}
			sent[num] = true
		}
		queue = queue[burst:]
		wait := q.NonTimeout + time.Duration(rand.Int64N(int64(q.NonTimeout)/2+1))
		r, err := c.qwait(ctx, time.Now().Add(wait), firstTok)
		if err != nil {
			return nil, fmt.Errorf("coap: PUT %s%s: %w", c.addr, path, err)
		}
		heard = r != nil
		if r == nil {
			continue // no answer to this burst: on with the next one
		}
		switch r.Code {
		case codes.Changed, codes.Created:
			return r, nil
		case codes.Continue:
			probes = 0
			if ev.Answer != nil {
				ev.Answer(r, nil)
			}
			if until < n && r.Block1 != nil && r.Block1.Num+1 >= until {
				return r, nil
			}
			continue
		case codes.RequestEntityIncomplete:
			if r.ContentFormat == MediaTypeMissingBlocks {
				missing, err := DecodeMissingBlocks(r.Payload, int(n))
				if err != nil {
					return r, err
				}
				probes = 0
				if ev.Answer != nil {
					ev.Answer(r, missing)
				}
				if until < n && (len(missing) == 0 || missing[0] >= until) {
					return r, nil
				}
				queue = requeue(queue, missing, until)
				continue
			}
		}
		return r, &StatusError{Op: fmt.Sprintf("PUT %s (Q-Block1)", path), Code: r.Code, Payload: r.Payload}
	}
}

// burstLen is how many blocks of queue the next burst sends: at most max,
// and up to the first block that ends a set of max blocks (block numbers
// k·max−1), where the server answers 2.31 (RFC 9177 §4.4, sets counted by
// block number as libcoap does): a burst begun mid-set after a resume
// ends where the server's set does.
func burstLen(queue []uint32, max int) int {
	n := 0
	for n < len(queue) && n < max {
		n++
		if (queue[n-1]+1)%uint32(max) == 0 {
			break
		}
	}
	return n
}

// requeue puts the missing blocks (below n, not already queued) in front
// of queue.
func requeue(queue, missing []uint32, n uint32) []uint32 {
	queued := make(map[uint32]bool, len(queue))
	for _, q := range queue {
		queued[q] = true
	}
	out := make([]uint32, 0, len(missing)+len(queue))
	for _, m := range missing {
		if m < n && !queued[m] {
			queued[m] = true
			out = append(out, m)
		}
	}
	return append(out, queue...)
}

// qsend sends block num of n as a non-confirmable Q-Block1 request.
func (c *Client) qsend(path string, img []byte, num, n uint32, szx uint8, tag []byte) error {
	bs := uint32(BlockSize(szx))
	off := num * bs
	end := min(off+bs, uint32(len(img)))
	req := Request{
		Code: codes.PUT, Path: path, Payload: img[off:end], ContentFormat: -1,
		Block1: &Block{Num: num, More: num+1 < n, SZX: szx}, RequestTag: tag,
		QBlock1: true, NonConfirmable: true,
		// Size1 on every block: the server may see any block first.
		Size1: uint32(len(img)),
	}
	c.mid++
	c.tokSeq++
	var tok [8]byte
	binary.BigEndian.PutUint64(tok[:], c.tokBase+c.tokSeq)
	out, err := c.encode(&req, c.mid, tok[:])
	if err != nil {
		return err
	}
	if err := c.send(out); err != nil {
		return err
	}
	c.noteRequest(out)
	return nil
}

// qwait reads until deadline for a response to any request of the
// transfer (tokens from firstTok on); nil when none came.
func (c *Client) qwait(ctx context.Context, deadline time.Time, firstTok uint64) (*Response, error) {
	for {
		data, waited, err := c.readUntil(ctx, deadline)
		if err != nil {
			return nil, err
		}
		if data == nil {
			if waited {
				return nil, nil
			}
			continue
		}
		c.heard.Store(true)
		m := &c.msg
		if err := c.decode(data); err != nil {
			continue
		}
		mmid := uint16(m.MessageID)
		ours := false
		if len(m.Token) == 8 {
			t := binary.BigEndian.Uint64(m.Token) - c.tokBase
			ours = t >= firstTok && t <= c.tokSeq
		}
		if m.Type == message.Confirmable {
			if ours && isResponse(m.Code) {
				c.control(message.Acknowledgement, mmid)
			} else {
				c.control(message.Reset, mmid)
				continue
			}
		}
		if ours && isResponse(m.Code) && m.Type != message.Reset {
			return c.response(), nil
		}
	}
}

// ProbeQBlock asks the server whether it has Q-Block, as RFC 9177 §4.1
// suggests: a confirmable GET of /.well-known/core asking for its first
// 16 bytes with Q-Block2. refused is true when the server answers 4.02 Bad
// Option: it does not know the option, so it takes no Q-Block1 either. Any
// other answer (with Q-Block2, or a 4.04 from a device without
// /.well-known/core) is not a refusal. An error means no answer.
func (c *Client) ProbeQBlock(ctx context.Context) (refused bool, r *Response, err error) {
	r, err = c.Do(ctx, Request{Code: codes.GET, Path: "/.well-known/core", ContentFormat: -1, QBlock2: &Block{SZX: 0}})
	if err != nil {
		return false, nil, err
	}
	return r.Code == codes.BadOption, r, nil
}
