// Package coapsrv is a lean CoAP server endpoint (RFC 7252) for the simulated
// board, over plain UDP and over DTLS 1.2 with a pre-shared key.
//
// It uses go-coap's message codec but its own socket loops, because go-coap's
// UDP server walks its whole reply cache on every datagram and so slows down
// as a block-wise upload grows. Here the reply cache used for deduplication
// is a map plus a ring in arrival order: expiry and eviction are O(1)
// amortised, and the cache is bounded (Options.MaxCached).
//
// The endpoint behaves like a microcontroller main loop:
//
//   - Handler calls are sequential per Server, across all peers and DTLS
//     sessions: one request is handled at a time, in arrival order per peer.
//     This also keeps the blocks of an upload in order.
//   - A confirmable request gets its response piggybacked in an ACK with the
//     same message ID and token; a non-confirmable request gets a
//     non-confirmable response with a fresh message ID. A nil Response sends
//     nothing at all.
//   - A confirmable request whose (peer, message ID) was answered within
//     Options.ExchangeLifetime gets the same reply bytes again and the
//     handler is not called (RFC 7252 §4.5); a duplicate non-confirmable
//     request is ignored.
//   - An empty confirmable message (a CoAP ping) and a confirmable message
//     that is not a request get a Reset; ACK and RST from peers are ignored.
//     A datagram that does not decode gets a Reset when its header shows a
//     confirmable message, and is dropped otherwise.
//   - A confirmable request with a critical option this endpoint does not
//     recognise gets 4.02 Bad Option without reaching the handler.
//   - A handler that answers a Response with code codes.Empty sends an empty
//     ACK to a confirmable request (and nothing to a non-confirmable one):
//     the request was taken, its response comes later or with another
//     request (RFC 9177 §4.4, the blocks of a Q-Block1 body).
//   - Origin.Send sends a separate non-confirmable response later, to where
//     an earlier request came from (a 4.08 listing the Q-Block1 blocks still
//     missing, when none came for a while).
//   - Close is a power cut: it returns at once, and after it returns no
//     datagram (not even a DTLS close_notify) is sent and no new handler call
//     starts. A handler already running is not waited for; its context is
//     cancelled and its reply is dropped.
package coapsrv

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/internal/coapopt"
)

// Handler answers one request. It returns nil to send no reply at all (a
// device that lost power while handling, or a non-confirmable request that
// needs no answer). ctx is cancelled when the Server is closed. The Request
// is valid only until Handler returns.
type Handler func(ctx context.Context, r *Request) *Response

// PSKFunc returns the pre-shared key for a client's PSK identity, or an
// error to refuse the handshake: the client gets a fatal
// unknown_psk_identity alert at once (RFC 4279 §2).
type PSKFunc func(identity []byte) ([]byte, error)

// Options tunes a Server. The zero value is usable.
type Options struct {
	Logger *slog.Logger // nil: discard
	// ExchangeLifetime is how long a reply is kept for deduplication;
	// 0 means DefaultExchangeLifetime.
	ExchangeLifetime time.Duration
	// MaxCached bounds the number of remembered exchanges; the oldest is
	// forgotten first. 0 means DefaultMaxCached. Keeping it well below
	// 32768 also means that a client which reuses message IDs early (go-coap
	// spends two per block) is not answered with a stale reply.
	MaxCached int
	// OSCORE accepts the OSCORE option (9, RFC 8613), which the handler
	// acts on; without it the option is an unknown critical one (4.02).
	OSCORE bool
	// QBlock1 accepts the Q-Block1 and Q-Block2 options (19 and 31, RFC
	// 9177), which the handler acts on; without it they are unknown
	// critical ones (4.02 to a confirmable request, a non-confirmable one
	// is dropped), which is how a client learns that the endpoint has no
	// Q-Block (RFC 9177 §4.1).
	QBlock1 bool
}

// optOSCORE is the OSCORE option number (RFC 8613 §2).
const optOSCORE = 9

// Defaults for Options.
const (
	DefaultExchangeLifetime = 247 * time.Second // EXCHANGE_LIFETIME, RFC 7252 §4.8.2
	DefaultMaxCached        = 8192
)

// maxDatagram is the largest UDP payload; reading into a buffer this size
// never truncates a datagram.
const maxDatagram = 65535

// Server is one CoAP endpoint on one UDP socket.
type Server struct {
	h      Handler
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	start  time.Time
	sock   *net.UDPConn

	// sendMu orders every write against Close, so that once Close has
	// returned nothing more leaves the socket.
	sendMu sync.Mutex
	closed atomic.Bool
	// readMu is held by a reader for the length of one socket read, and
	// by Detach to know that no read of this server is under way or will
	// start (a reader checks closed before it reads). A handler runs
	// outside it: Detach never waits for one.
	readMu sync.Mutex

	// handleMu makes handler calls sequential and guards cache.
	handleMu sync.Mutex
	cache    *replyCache
	nextMID  atomic.Uint32

	dtls   *dtlsEndpoint // nil over plain UDP
	oscore bool          // the OSCORE option is the handler's
	qblock bool          // the Q-Block1 option is the handler's
}

func newServer(h Handler, opts Options) (*Server, error) {
	if h == nil {
		return nil, errors.New("coapsrv: nil handler")
	}
	if opts.ExchangeLifetime < 0 || opts.MaxCached < 0 {
		return nil, fmt.Errorf("coapsrv: negative option: ExchangeLifetime %v, MaxCached %d", opts.ExchangeLifetime, opts.MaxCached)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ExchangeLifetime == 0 {
		opts.ExchangeLifetime = DefaultExchangeLifetime
	}
	if opts.MaxCached == 0 {
		opts.MaxCached = DefaultMaxCached
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		h:      h,
		log:    opts.Logger,
		ctx:    ctx,
		cancel: cancel,
		start:  time.Now(),
		cache:  newReplyCache(opts.MaxCached, int64(opts.ExchangeLifetime)),
		oscore: opts.OSCORE,
		qblock: opts.QBlock1,
	}
	s.nextMID.Store(uint32(message.RandMID()))
	return s, nil
}

func (s *Server) bind(addr string) error {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("coapsrv: resolve %q: %w", addr, err)
	}
	sock, err := net.ListenUDP("udp", ua)
	if err != nil {
		return fmt.Errorf("coapsrv: listen %q: %w", addr, err)
	}
	s.sock = sock
	return nil
}

// ListenUDP serves CoAP over plain UDP on addr ("127.0.0.1:0",
// "[::1]:5683").
func ListenUDP(addr string, h Handler, opts Options) (*Server, error) {
	s, err := newServer(h, opts)
	if err != nil {
		return nil, err
	}
	if err := s.bind(addr); err != nil {
		return nil, err
	}
	s.startUDP()
	return s, nil
}

// ServeUDP serves CoAP over plain UDP on a socket the caller keeps: Detach
// stops the server and hands the socket back, still bound, so that no
// other socket can take its port in between (a device's address outlives
// its power cycles).
func ServeUDP(sock *net.UDPConn, h Handler, opts Options) (*Server, error) {
	s, err := newServer(h, opts)
	if err != nil {
		return nil, err
	}
	s.sock = sock
	s.startUDP()
	return s, nil
}

func (s *Server) startUDP() {
	w := newWorker(s, 0)
	w.write = func(b []byte) { s.writeUDP(b, w.peer) }
	go s.serveUDP(w)
	s.log.Debug("coap listening", "addr", s.sock.LocalAddr().String(), "transport", "udp")
}

// Addr is the local address of the socket.
func (s *Server) Addr() net.Addr { return s.sock.LocalAddr() }

// Close cuts the endpoint off at once; see the package documentation. It is
// safe to call more than once.
func (s *Server) Close() error {
	s.sendMu.Lock()
	was := s.closed.Swap(true)
	s.sendMu.Unlock()
	if was {
		return nil
	}
	s.cancel()
	err := s.sock.Close()
	if s.dtls != nil {
		s.dtls.closeAll()
	}
	if err != nil {
		return fmt.Errorf("coapsrv: close %v: %w", s.sock.LocalAddr(), err)
	}
	return nil
}

// Detach stops the server as Close does, at once, but leaves its socket
// open and returns it once no goroutine of the server reads it any more.
// Datagrams that arrive from then on wait in the socket for its next user.
func (s *Server) Detach() *net.UDPConn {
	s.sendMu.Lock()
	was := s.closed.Swap(true)
	s.sendMu.Unlock()
	if was {
		return s.sock
	}
	s.cancel()
	// A read deadline in the past wakes a reader blocked in the socket;
	// once readMu is ours no read is under way, and the reader sees
	// closed before it would read again.
	_ = s.sock.SetReadDeadline(time.Unix(1, 0))
	s.readMu.Lock()
	_ = s.sock.SetReadDeadline(time.Time{})
	s.readMu.Unlock()
	if s.dtls != nil {
		s.dtls.closeAll()
	}
	return s.sock
}

// readFrom reads one datagram for the server's reader; ok is false once
// the server is closed or detached.
func (s *Server) readFrom(buf []byte) (n int, from netip.AddrPort, ok bool) {
	for {
		s.readMu.Lock()
		if s.closed.Load() {
			s.readMu.Unlock()
			return 0, from, false
		}
		n, from, err := s.sock.ReadFromUDPAddrPort(buf)
		s.readMu.Unlock()
		if err == nil {
			return n, from, true
		}
		if s.closed.Load() || errors.Is(err, net.ErrClosed) {
			return 0, from, false
		}
		s.log.Warn("coap read failed", "err", err)
	}
}

// now is the server's monotonic clock in nanoseconds.
func (s *Server) now() int64 { return int64(time.Since(s.start)) }

// writeUDP sends one datagram unless the server is closed.
func (s *Server) writeUDP(b []byte, to netip.AddrPort) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.closed.Load() {
		return
	}
	if _, err := s.sock.WriteToUDPAddrPort(b, to); err != nil {
		s.log.Debug("coap send failed", "peer", to.String(), "err", err)
	}
}

func (s *Server) serveUDP(w *worker) {
	buf := make([]byte, maxDatagram)
	for {
		n, from, ok := s.readFrom(buf)
		if !ok {
			return
		}
		w.setPeer(from)
		w.handle(buf[:n])
	}
}

// worker holds the per-reader state and buffers: one for the UDP socket, one
// per DTLS session. Everything here is reused from datagram to datagram.
type worker struct {
	s        *Server
	conn     uint64    // DTLS session number; 0 over plain UDP
	dconn    io.Writer // the DTLS session, for Server.Send; nil over plain UDP
	peer     netip.AddrPort
	peerAddr net.Addr // peer as a net.Addr, converted once per new peer
	identity []byte
	write    func(b []byte)

	msg      message.Message
	req      Request
	out      []byte
	respOpts message.Options
	optBuf   [12]byte
	pathBuf  []byte
	path     string
	query    []string
}

func newWorker(s *Server, conn uint64) *worker {
	return &worker{
		s:        s,
		conn:     conn,
		msg:      message.Message{Options: make(message.Options, 0, 16)},
		out:      make([]byte, 1280),
		respOpts: make(message.Options, 0, 8),
		path:     "/",
	}
}

func (w *worker) setPeer(p netip.AddrPort) {
	if p != w.peer || w.peerAddr == nil {
		w.peer = p
		w.peerAddr = net.UDPAddrFromAddrPort(p)
	}
}

// decode decodes data into w.msg, growing the options slice when a message
// carries more options than it has room for, up to coapopt.MaxOptions.
func (w *worker) decode(data []byte) error {
	return coapopt.Decode(data, &w.msg)
}

// handle decodes and answers one datagram from w.peer.
func (w *worker) handle(data []byte) {
	s := w.s
	if err := w.decode(data); err != nil {
		if len(data) >= 4 && data[0]>>6 == 1 && message.Type(data[0]>>4&3) == message.Confirmable {
			w.reset(binary.BigEndian.Uint16(data[2:4]))
		}
		if s.log.Enabled(s.ctx, slog.LevelDebug) {
			s.log.Debug("coap datagram not decodable", "peer", w.peer.String(), "len", len(data), "err", err)
		}
		return
	}
	m := &w.msg
	mid := uint16(m.MessageID)
	if m.Type == message.Acknowledgement || m.Type == message.Reset {
		// This endpoint never sends a confirmable message, so nothing waits
		// for these.
		return
	}
	if m.Code == codes.Empty || m.Code > 31 {
		// A ping, or a response or reserved code sent to a server.
		if m.Type == message.Confirmable {
			w.reset(mid)
		}
		return
	}

	s.handleMu.Lock()
	defer s.handleMu.Unlock()
	now := s.now()
	key := exchangeKey{peer: w.peer, conn: w.conn, mid: mid}
	if reply, dup := s.cache.get(key, now); dup {
		if m.Type == message.Confirmable && len(reply) > 0 {
			w.write(reply)
		}
		return
	}
	var resp *Response
	if unknownCritical(m.Options, s.oscore, s.qblock) {
		if m.Type != message.Confirmable {
			return // rejected silently, RFC 7252 §5.4.1
		}
		resp = &badOption
	} else {
		if s.closed.Load() {
			return
		}
		w.fillRequest()
		resp = s.h(s.ctx, &w.req)
		if s.closed.Load() {
			return
		}
	}
	var out []byte
	if resp != nil && resp.Code == codes.Empty {
		if m.Type == message.Confirmable {
			out = w.emptyAck(mid)
			w.write(out)
		}
	} else if resp != nil {
		out = w.encode(resp)
		if out == nil {
			return
		}
		w.write(out)
		if resp.AfterSend != nil {
			resp.AfterSend()
		}
	}
	switch {
	case m.Type == message.NonConfirmable:
		s.cache.put(key, now, nil)
	case out != nil:
		s.cache.put(key, now, out)
	}
	// A confirmable request left unanswered is not remembered: its
	// retransmission reaches the handler again, as on a device that
	// rebooted before answering.
}

var badOption = Response{Code: codes.BadOption, ContentFormat: NoContentFormat}

// unknownCritical reports whether opts hold a critical (odd-numbered) option
// this endpoint does not act on, or a known critical option of illegal
// length (RFC 7252 §5.4.1, §5.4.3). Q-Block and proxying are not offered.
func unknownCritical(opts message.Options, oscore, qblock bool) bool {
	for _, o := range opts {
		if o.ID&1 == 0 || (oscore && o.ID == optOSCORE) {
			continue
		}
		if qblock && (o.ID == message.QBlock1 || o.ID == message.QBlock2) && len(o.Value) <= 3 {
			continue
		}
		switch o.ID {
		case message.QBlock1, message.QBlock2, message.ProxyURI, message.ProxyScheme:
			return true
		}
		def, ok := message.CoapOptionDefs[o.ID]
		if !ok || len(o.Value) < int(def.MinLen) || len(o.Value) > int(def.MaxLen) {
			return true
		}
	}
	return false
}

// fillRequest points w.req at the decoded message.
func (w *worker) fillRequest() {
	m := &w.msg
	r := &w.req
	r.Peer = w.peerAddr
	r.PSKIdentity = w.identity
	r.Code = m.Code
	r.Type = m.Type
	r.MessageID = uint16(m.MessageID)
	r.Token = m.Token
	r.Options = m.Options
	r.Payload = m.Payload
	r.origin = Origin{w: w, addr: w.peer}

	w.pathBuf = w.pathBuf[:0]
	w.query = w.query[:0]
	for _, o := range m.Options {
		switch o.ID {
		case message.URIPath:
			w.pathBuf = append(w.pathBuf, '/')
			w.pathBuf = append(w.pathBuf, o.Value...)
		case message.URIQuery:
			w.query = append(w.query, string(o.Value))
		}
	}
	if len(w.pathBuf) == 0 {
		w.pathBuf = append(w.pathBuf, '/')
	}
	// Requests of one upload share a path: keep the string instead of
	// allocating a new one per block.
	if string(w.pathBuf) != w.path {
		w.path = string(w.pathBuf)
	}
	r.Path = w.path
	r.Query = nil
	if len(w.query) > 0 {
		r.Query = w.query
	}
}

// encode renders resp as the reply to w.msg into w.out. It returns nil when
// resp cannot be encoded (a handler bug, logged).
func (w *worker) encode(resp *Response) []byte {
	m := &w.msg
	typ, mid := message.Acknowledgement, m.MessageID
	if m.Type == message.NonConfirmable {
		typ, mid = message.NonConfirmable, int32(uint16(w.s.nextMID.Add(1)))
	}
	w.respOpts = responseOptions(w.respOpts[:0], w.optBuf[:], resp)
	var err error
	w.out, err = w.s.render(w.out, message.Message{Token: m.Token, Options: w.respOpts, Code: resp.Code, Payload: resp.Payload, MessageID: mid, Type: typ})
	if err != nil {
		w.s.log.Error("coap response not encodable", "path", w.path, "err", err)
		return nil
	}
	return w.out
}

// responseOptions appends resp's options to opts; buf holds their values
// (12 bytes).
func responseOptions(opts message.Options, buf []byte, resp *Response) message.Options {
	if resp.ContentFormat >= 0 && len(resp.Payload) > 0 {
		opts = opts.Add(message.Option{ID: message.ContentFormat, Value: coapopt.PutUint(buf[0:4], uint32(resp.ContentFormat))})
	}
	if b := resp.Block1; b != nil {
		opts = opts.Add(message.Option{ID: message.Block1, Value: coapopt.PutUint(buf[4:8], b.value())})
	}
	if resp.Size1 != 0 {
		opts = opts.Add(message.Option{ID: message.Size1, Value: coapopt.PutUint(buf[8:12], resp.Size1)})
	}
	for _, o := range resp.Options {
		opts = opts.Add(o)
	}
	return opts
}

// render encodes m into buf (grown when too small) and returns the
// encoded bytes. An invalid code (a handler bug) becomes 5.00.
func (s *Server) render(buf []byte, m message.Message) ([]byte, error) {
	if m.Code > 255 {
		s.log.Error("coap handler returned an invalid code", "code", uint16(m.Code))
		m.Code = codes.InternalServerError
	}
	n, err := coder.DefaultCoder.Encode(m, buf[:cap(buf)])
	if errors.Is(err, message.ErrTooSmall) {
		buf = make([]byte, n)
		n, err = coder.DefaultCoder.Encode(m, buf)
	}
	if err != nil {
		return buf, fmt.Errorf("%s: %w", m.Code, err)
	}
	return buf[:n], nil
}

// emptyAck renders an empty ACK for mid into the worker's buffer.
func (w *worker) emptyAck(mid uint16) []byte {
	b := w.out[:4]
	b[0] = 1<<6 | byte(message.Acknowledgement)<<4
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], mid)
	return b
}

// Origin is where a request came from: its peer, and its DTLS session if
// any. It stays valid after the handler returns, for Send.
type Origin struct {
	w    *worker
	addr netip.AddrPort
}

// Send sends resp to o as a separate non-confirmable response with token
// (RFC 7252 §5.2.2, §5.2.3): a reply that no request is waiting in the
// server for. It may be called from any goroutine, a handler's included,
// and does not wait for handler calls. Once the
// server is closed it sends nothing and returns net.ErrClosed; over DTLS,
// a session that has ended returns its error.
func (o Origin) Send(token []byte, resp *Response) error {
	if o.w == nil {
		return errors.New("coapsrv: send to the origin of no request")
	}
	s := o.w.s
	var optBuf [12]byte
	opts := responseOptions(nil, optBuf[:], resp)
	out, err := s.render(nil, message.Message{Token: token, Options: opts, Code: resp.Code, Payload: resp.Payload,
		MessageID: int32(uint16(s.nextMID.Add(1))), Type: message.NonConfirmable})
	if err != nil {
		return fmt.Errorf("coapsrv: separate response: %w", err)
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if s.closed.Load() {
		return net.ErrClosed
	}
	if o.w.conn == 0 {
		if _, err := s.sock.WriteToUDPAddrPort(out, o.addr); err != nil {
			return fmt.Errorf("coapsrv: separate response to %v: %w", o.addr, err)
		}
		return nil
	}
	if _, err := o.w.dconn.Write(out); err != nil {
		return fmt.Errorf("coapsrv: separate response to %v: %w", o.addr, err)
	}
	return nil
}

// reset sends an RST for mid.
func (w *worker) reset(mid uint16) {
	b := w.optBuf[:4]
	b[0] = 1<<6 | byte(message.Reset)<<4
	b[1] = 0
	binary.BigEndian.PutUint16(b[2:], mid)
	w.write(b)
}
