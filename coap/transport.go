package coap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap/oscore"
	"github.com/fudbench/fudbench/internal/coapopt"
)

// maxDatagram is the largest UDP payload: reading into a buffer this size
// never truncates a datagram or a DTLS record.
const maxDatagram = 65535

// ErrNoResponse is returned (wrapped, together with
// context.DeadlineExceeded) when a request was transmitted MAX_RETRANSMIT+1
// times, or until MAX_TRANSMIT_WAIT or the context's deadline, without an
// answer.
var ErrNoResponse = errors.New("coap: no response")

// ErrRefused is returned (wrapped) when the device answered the DTLS
// handshake with a fatal alert: it does not accept the PSK identity or
// key, a configuration matter.
var ErrRefused = errors.New("coap: the device refused the DTLS handshake")

// ErrReset is returned (wrapped) when the device rejected a request with a
// Reset message.
var ErrReset = errors.New("coap: reset by the device")

// past is a deadline that has already expired: setting it wakes a blocked
// read at once.
var past = time.Unix(1, 0)

// Client is a CoAP client connection to one device. Requests are lock-step:
// a second Do waits until the first has its answer. OnRetransmit, when
// set, is called on the requesting goroutine before each retransmission
// with its number (1 for the first); set it before the first request.
type Client struct {
	OnRetransmit func(num int)
	// OnHandshake, when set, is called on the requesting goroutine once
	// the DTLS session is established: after a handshake, or at the first
	// exchange of a session continued from the cache (Kind "none"). Set
	// it before the first request.
	OnHandshake func(Handshake)
	// OnRecord, when set, is called on the requesting goroutine for every
	// record from the device that authenticates while the client seals
	// and opens the records itself (DTLSRecords "client"), a sequence
	// number already seen included. Set it before the first request.
	OnRecord func(RecordSeen)
	// OnNonce, when set, is called on the requesting goroutine for every
	// OSCORE response that verifies, with the nonce the device used.
	OnNonce func(NonceSeen)
	// OnEcho, when set, is called when the device challenged a request
	// with an Echo option (RFC 9175) and the client sends it again with
	// the Echo value.
	OnEcho func()
	// OnWire, when set, is given the UDP payload bytes of every datagram
	// the client sends and receives after the DTLS handshake (whose bytes
	// OnHandshake reports).
	OnWire func(sent, recv int)

	osc     *OSCORE          // nil: no OSCORE
	oscX    *oscore.Exchange // the last OSCORE request's exchange
	oscSent oscore.Exchange  // *oscX as it was sent, before any answer

	addr    string
	sock    *net.UDPConn
	conn    net.Conn // sock, or the DTLS session over it
	tx      Transmission
	maxWait time.Duration
	closed  atomic.Bool
	heard   atomic.Bool // a datagram came from the device

	// DTLS: pion's session runs the handshake, then rl seals and opens
	// the records (nil: pion does, when the take-over failed). The session
	// is started again after a failed handshake or the device's alert. A
	// session continued from the cache has rl and no pion session.
	dtlsOpts    []piondtls.ClientOption // nil over plain UDP
	cache       *DTLSCache
	store       *clientSessionStore // session mode
	dtls        *piondtls.Conn
	ps          *pionSock
	rl          *recordLayer
	shaken      bool
	continued   bool   // rl was continued from the cache
	triedResume bool   // the cache was asked for a session to continue
	raw         []byte // received records
	pend        []byte // records of raw not opened yet
	rec         []byte // record being sent
	lastReq     []byte // the last request's datagram as sent

	mu      sync.Mutex // one exchange at a time; guards what follows
	mid     uint16
	tokBase uint64
	tokSeq  uint64
	lastSep int32 // message ID of the last separate CON response taken, -1 none
	out     []byte
	in      []byte
	msg     message.Message
	opts    message.Options
	pathBuf []byte
	tagBuf  []byte
	optBuf  [16]byte
	ackBuf  [4]byte

	// Cancellation of the context of the running exchange wakes its read.
	// wmu also guards conn and dtls against Close and the wake-up.
	wmu     sync.Mutex
	watched context.Context
	unwatch func() bool
}

// newDTLS starts a new DTLS client session over the socket.
func (c *Client) newDTLS() error {
	_ = c.sock.SetReadDeadline(time.Time{})
	ps := newPionSock(c.sock)
	dc, err := piondtls.ClientWithOptions(ps, c.sock.RemoteAddr(), c.dtlsOpts...)
	if err != nil {
		return fmt.Errorf("dtls: %w", err)
	}
	c.wmu.Lock()
	c.dtls, c.ps, c.rl, c.conn, c.shaken = dc, ps, nil, dc, false
	c.wmu.Unlock()
	c.continued, c.pend = false, nil
	if c.raw == nil {
		c.raw = make([]byte, maxDatagram)
	}
	return nil
}

// endDTLS drops the session without a word to the device.
func (c *Client) endDTLS() {
	if c.dtls != nil {
		_ = c.ps.Close()
		_ = c.dtls.Close()
	}
}

// takeOver moves the handshaken session (state st) from pion to the client.
func (c *Client) takeOver(st *piondtls.State) {
	rl, err := newRecordLayer(st)
	if err != nil {
		return // pion keeps the session: slower, still correct
	}
	if !c.ps.detach() {
		return
	}
	c.wmu.Lock()
	c.rl, c.conn = rl, c.sock
	c.wmu.Unlock()
}

// handshake establishes the DTLS session unless done: the first exchange
// continues the session kept in a DTLSCacheState cache if there is one,
// otherwise pion runs the handshake, bounded by deadline and ctx. A
// failed session is replaced, so the next exchange tries afresh.
func (c *Client) handshake(ctx context.Context, deadline time.Time) error {
	if c.dtlsOpts == nil || c.shaken {
		return nil
	}
	if c.closed.Load() {
		// Not even the cache's session: Close may just have left it
		// there for the next client.
		return fmt.Errorf("dtls handshake: %w", net.ErrClosed)
	}
	if c.cache.keepsState() && !c.triedResume {
		c.triedResume = true
		if c.continueSession() {
			return nil
		}
	}
	if c.dtls == nil {
		if err := c.newDTLS(); err != nil {
			return err
		}
	}
	hctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	start := time.Now()
	err := c.dtls.HandshakeContext(hctx)
	if err == nil {
		h := Handshake{Kind: HandshakeFull, Duration: time.Since(start)}
		h.Sent, h.Received, h.Datagrams = c.ps.counts()
		c.shaken = true
		if st, ok := c.dtls.ConnectionState(); ok {
			if c.store != nil && c.store.resumed(st.SessionID) {
				h.Kind = HandshakeAbbreviated
			}
			c.takeOver(&st)
		}
		if c.OnHandshake != nil {
			c.OnHandshake(h)
		}
		return nil
	}
	c.endDTLS()
	if c.closed.Load() {
		return fmt.Errorf("dtls handshake: %w", net.ErrClosed)
	}
	if nerr := c.newDTLS(); nerr != nil {
		return errors.Join(fmt.Errorf("dtls handshake: %w", err), nerr)
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("dtls handshake: %w", ErrNoResponse)
	}
	// A fatal alert is the device's answer: it refuses the handshake
	// (an unknown PSK identity, a key that does not match).
	var alert interface{ IsFatalOrCloseNotify() bool }
	if errors.As(err, &alert) && alert.IsFatalOrCloseNotify() {
		return fmt.Errorf("dtls handshake: %w: %w", ErrRefused, err)
	}
	return fmt.Errorf("dtls handshake: %w", err)
}

// watch makes cancellation of ctx wake the exchange's blocked read. The
// registration is kept for the next exchange with the same ctx: the blocks
// of one transfer share one context.
func (c *Client) watch(ctx context.Context) {
	if ctx.Done() == nil {
		return
	}
	c.wmu.Lock()
	if c.watched == ctx {
		c.wmu.Unlock()
		return
	}
	old := c.unwatch
	c.watched = ctx
	c.unwatch = context.AfterFunc(ctx, func() {
		c.wmu.Lock()
		mine, conn := c.watched == ctx, c.conn
		c.wmu.Unlock()
		if mine {
			_ = conn.SetReadDeadline(past)
		}
	})
	c.wmu.Unlock()
	if old != nil {
		old()
	}
}

// Do sends one confirmable request and waits for its response. A CoAP
// error code is a response, not an error: check Response.Code.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, c.wrap(&r, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err := c.exchange(ctx, &r)
	if err == nil && resp.Code == codes.Unauthorized && resp.Echo != nil && r.Echo == nil {
		// The device cannot tell the request fresh (it lost its replay
		// window with its RAM): the same request once more, with its Echo
		// value (RFC 9175 §2.3).
		if c.OnEcho != nil {
			c.OnEcho()
		}
		r.Echo = resp.Echo
		resp, err = c.exchange(ctx, &r)
	}
	if err != nil {
		return nil, c.wrap(&r, err)
	}
	return resp, nil
}

// wrap adds the request to err. The path is copied so that r does not
// escape to the heap on the way that succeeds.
func (c *Client) wrap(r *Request, err error) error {
	return fmt.Errorf("coap: %v %s%s: %w", r.Code, c.addr, strings.Clone(r.Path), err)
}

// exchange runs one confirmable exchange (RFC 7252 §4.2, §5.2).
func (c *Client) exchange(ctx context.Context, r *Request) (*Response, error) {
	start := time.Now()
	limit := start.Add(c.maxWait)
	if d, ok := ctx.Deadline(); ok && d.Before(limit) {
		limit = d
	}
	c.watch(ctx)
	if err := c.handshake(ctx, limit); err != nil {
		return nil, err
	}
	c.mid++
	mid := c.mid
	c.tokSeq++
	var tok [8]byte
	binary.BigEndian.PutUint64(tok[:], c.tokBase+c.tokSeq)
	out, err := c.encode(r, mid, tok[:])
	if err != nil {
		return nil, err
	}

	timeout := c.tx.AckTimeout + time.Duration(rand.Int64N(int64(c.tx.AckTimeout)/2+1))
	next := start.Add(timeout) // next retransmission
	retransmits := 0
	acked := false // an empty ACK came: wait for the separate response
	if err := c.send(out); err != nil {
		return nil, err
	}
	c.noteRequest(out)
	for {
		wake := limit
		if !acked && next.Before(wake) {
			wake = next
		}
		data, waited, err := c.readUntil(ctx, wake)
		if err != nil {
			return nil, err
		}
		if data == nil {
			if !waited {
				continue
			}
			now := time.Now()
			if !now.Before(limit) || retransmits >= int(c.tx.MaxRetransmit) {
				return nil, fmt.Errorf("%w after %d transmissions in %v: %w", ErrNoResponse, retransmits+1, now.Sub(start).Round(time.Millisecond), context.DeadlineExceeded)
			}
			retransmits++
			timeout *= 2
			next = now.Add(timeout)
			if c.OnRetransmit != nil {
				c.OnRetransmit(retransmits)
			}
			if err := c.send(out); err != nil {
				return nil, err
			}
			c.noteRequest(out)
			continue
		}
		// Something came from the device, even if it answers nothing we
		// asked: it is there, and misbehaving is its own matter.
		c.heard.Store(true)
		resp, done, err := c.match(data, mid, tok[:], &acked)
		if err != nil {
			return nil, err
		}
		if done {
			resp.Retransmits = retransmits
			return resp, nil
		}
	}
}

// readUntil reads one datagram, waiting until wake at most. data is nil
// when none came: waited says wake has passed; otherwise the read ended
// early for nothing (a datagram refused by a closed port, which is as good
// as a lost one for a device that is off or rebooting, or a stale
// cancellation wake-up) and the caller reads again. An error is final.
func (c *Client) readUntil(ctx context.Context, wake time.Time) (data []byte, waited bool, err error) {
	if err := c.conn.SetReadDeadline(wake); err != nil {
		return nil, false, fmt.Errorf("read deadline: %w", err)
	}
	data, err = c.read()
	switch {
	case err == nil:
		return data, false, nil
	case errors.Is(err, errDTLSAlert):
		return nil, false, c.sessionEnded(err)
	case ctx.Err() != nil:
		return nil, false, ctx.Err()
	case c.closed.Load() || errors.Is(err, net.ErrClosed):
		return nil, false, fmt.Errorf("read: %w", net.ErrClosed)
	case refused(err):
		return nil, false, nil
	case !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err):
		return nil, false, fmt.Errorf("read: %w", err)
	}
	return nil, !time.Now().Before(wake), nil
}

// read reads one CoAP message; over DTLS, records that are not
// application data for this session are skipped.
func (c *Client) read() ([]byte, error) {
	if c.rl == nil {
		n, err := c.conn.Read(c.in)
		if n > 0 && c.OnWire != nil {
			c.OnWire(0, n)
		}
		return c.in[:n], err
	}
	for {
		if len(c.pend) == 0 {
			n, err := c.conn.Read(c.raw)
			if err != nil {
				return nil, err
			}
			if c.OnWire != nil {
				c.OnWire(0, n)
			}
			c.pend = c.raw[:n]
		}
		pt, ok, rest, err := c.rl.open(c.in[:0], c.pend, c.OnRecord)
		c.pend = rest
		if err != nil || ok {
			return pt, err
		}
	}
}

// send writes one datagram; a refused send (ICMP from an earlier one) is
// a lost datagram.
func (c *Client) send(b []byte) error {
	if c.rl != nil {
		c.rec = c.rl.seal(c.rec[:0], ctApplicationData, b)
		b = c.rec
	}
	if c.OnWire != nil {
		c.OnWire(len(b), 0)
	}
	if _, err := c.conn.Write(b); err != nil && !refused(err) {
		if c.closed.Load() {
			return fmt.Errorf("write: %w", net.ErrClosed)
		}
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// match looks at one datagram received during the exchange of (mid, tok).
// done reports the response; anything else is handled (a separate CON
// response acknowledged, a stray CON reset) or ignored.
// isResponse reports a response code: class 2 (success), 4 (client
// error) or 5 (server error). Classes 1, 3, 6 and 7 are reserved over UDP.
func isResponse(c codes.Code) bool {
	switch c >> 5 {
	case 2, 4, 5:
		return true
	}
	return false
}

func (c *Client) match(data []byte, mid uint16, tok []byte, acked *bool) (resp *Response, done bool, err error) {
	m := &c.msg
	if err := c.decode(data); err != nil {
		if len(data) >= 4 && data[0]>>6 == 1 && message.Type(data[0]>>4&3) == message.Confirmable {
			c.control(message.Reset, binary.BigEndian.Uint16(data[2:4]))
		}
		return nil, false, nil
	}
	mmid := uint16(m.MessageID)
	switch m.Type {
	case message.Acknowledgement:
		if mmid != mid {
			return nil, false, nil
		}
		if m.Code == codes.Empty {
			*acked = true
			return nil, false, nil
		}
		// An ACK carries a response or nothing (RFC 7252 §4.2): any other
		// code is a format error, silently ignored.
		if !isResponse(m.Code) || string(m.Token) != string(tok) {
			return nil, false, nil
		}
		if c.osc != nil && !c.unprotectResponse() {
			return nil, false, nil
		}
		return c.response(), true, nil
	case message.Reset:
		if mmid == mid {
			return nil, false, ErrReset
		}
		return nil, false, nil
	}
	// CON or NON: only a response with our token is awaited.
	if isResponse(m.Code) && string(m.Token) == string(tok) {
		if c.osc != nil && !c.unprotectResponse() {
			return nil, false, nil
		}
		if m.Type == message.Confirmable {
			c.control(message.Acknowledgement, mmid)
			c.lastSep = int32(mmid)
		}
		return c.response(), true, nil
	}
	if m.Type == message.Confirmable {
		if int32(mmid) == c.lastSep {
			// A copy of a separate response already taken: its ACK was lost.
			c.control(message.Acknowledgement, mmid)
		} else {
			c.control(message.Reset, mmid)
		}
	}
	return nil, false, nil
}

// control sends an empty ACK or RST for mid.
func (c *Client) control(typ message.Type, mid uint16) {
	b := c.ackBuf[:]
	b[0] = 1<<6 | byte(typ)<<4
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], mid)
	_ = c.send(b)
}

// decode decodes data into c.msg, growing the options slice when a message
// carries more options than it has room for, up to coapopt.MaxOptions: a
// datagram of 65,000 one-byte options is refused rather than decoded into
// 2 MiB of them.
func (c *Client) decode(data []byte) error {
	return coapopt.Decode(data, &c.msg)
}

// response copies the decoded response in c.msg out of the client's
// buffers.
func (c *Client) response() *Response {
	m := &c.msg
	out := &Response{Code: m.Code}
	if len(m.Payload) > 0 {
		out.Payload = append([]byte(nil), m.Payload...)
	}
	out.ContentFormat = -1
	if v, ok := coapopt.Uint(m.Options, message.ContentFormat, 2); ok {
		out.ContentFormat = int(v)
	}
	v, ok := coapopt.Uint(m.Options, message.Block1, 3)
	if !ok {
		v, ok = coapopt.Uint(m.Options, message.QBlock1, 3)
	}
	if ok && v&7 != 7 {
		out.block = Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}
		out.Block1 = &out.block
	}
	if v, ok := coapopt.Uint(m.Options, message.QBlock2, 3); ok && v&7 != 7 {
		out.qblock2 = Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}
		out.QBlock2 = &out.qblock2
	}
	if v, ok := coapopt.Uint(m.Options, message.Size1, 4); ok {
		out.Size1 = v
	}
	if m.Code == codes.Unauthorized {
		for _, o := range m.Options {
			if o.ID == message.Echo {
				out.Echo = append([]byte(nil), o.Value...)
			}
		}
	}
	return out
}

// encode renders r as a confirmable request into c.out.
func (c *Client) encode(r *Request, mid uint16, tok []byte) ([]byte, error) {
	if r.Code > 31 || r.Code == codes.Empty {
		return nil, fmt.Errorf("%v is not a request code", r.Code)
	}
	// Options in ascending number, so no sorting is needed: Uri-Path (11),
	// Content-Format (12), Q-Block1 (19) or Block1 (27), Q-Block2 (31),
	// Size1 (60), Request-Tag (292).
	opts := c.opts[:0]
	c.pathBuf = append(c.pathBuf[:0], r.Path...)
	for i := 0; i < len(c.pathBuf); {
		if c.pathBuf[i] == '/' {
			i++
			continue
		}
		j := i
		for j < len(c.pathBuf) && c.pathBuf[j] != '/' {
			j++
		}
		if j-i > 255 {
			return nil, errors.New("path segment longer than 255 bytes")
		}
		opts = append(opts, message.Option{ID: message.URIPath, Value: c.pathBuf[i:j]})
		i = j
	}
	ob := c.optBuf[:]
	if r.ContentFormat >= 0 && r.Payload != nil {
		opts = append(opts, message.Option{ID: message.ContentFormat, Value: coapopt.PutUint(ob[0:4], uint32(r.ContentFormat))})
	}
	if b := r.Block1; b != nil {
		if b.SZX > 6 || b.Num >= 1<<20 {
			return nil, fmt.Errorf("block option: num %d szx %d out of range", b.Num, b.SZX)
		}
		v := b.Num<<4 | uint32(b.SZX)
		if b.More {
			v |= 8
		}
		id := message.Block1
		if r.QBlock1 {
			id = message.QBlock1 // 19: still after Content-Format (12)
		}
		opts = append(opts, message.Option{ID: id, Value: coapopt.PutUint(ob[4:8], v)})
	}
	if b := r.QBlock2; b != nil {
		if b.SZX > 6 || b.Num >= 1<<20 {
			return nil, fmt.Errorf("q-block2 option: num %d szx %d out of range", b.Num, b.SZX)
		}
		opts = append(opts, message.Option{ID: message.QBlock2, Value: coapopt.PutUint(ob[12:16], b.Num<<4|uint32(b.SZX))})
	}
	if r.Size1 != 0 {
		opts = append(opts, message.Option{ID: message.Size1, Value: coapopt.PutUint(ob[8:12], r.Size1)})
	}
	if r.Echo != nil {
		opts = append(opts, message.Option{ID: message.Echo, Value: r.Echo})
	}
	if r.RequestTag != nil {
		// Copied, so that no part of r outlives the call: the request and
		// its Block1 stay on the caller's stack.
		c.tagBuf = append(c.tagBuf[:0], r.RequestTag...)
		opts = append(opts, message.Option{ID: OptionRequestTag, Value: c.tagBuf})
	}
	c.opts = opts
	code, payload := r.Code, r.Payload
	if c.osc != nil {
		var err error
		if code, opts, payload, err = c.protectRequest(code, opts, payload); err != nil {
			return nil, err
		}
	}

	buf := c.out[:cap(c.out)]
	need := 4 + len(tok) + 1 + len(payload)
	for _, o := range opts {
		need += 5 + len(o.Value) // header and extended delta/length at most 5
	}
	if need > len(buf) {
		buf = make([]byte, need)
		c.out = buf[:0]
	}
	typ := message.Confirmable
	if r.NonConfirmable {
		typ = message.NonConfirmable
	}
	buf[0] = 1<<6 | byte(typ)<<4 | byte(len(tok))
	buf[1] = byte(code)
	binary.BigEndian.PutUint16(buf[2:4], mid)
	n := 4 + copy(buf[4:], tok)
	on, err := opts.Marshal(buf[n:])
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	n += on
	if len(payload) > 0 {
		buf[n] = 0xff
		n++
		n += copy(buf[n:], payload)
	}
	return buf[:n], nil
}

// refused reports an ICMP port unreachable, which a connected UDP socket
// hands to the next read or write.
func refused(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
