package coapsrv

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
	"github.com/pion/transport/v5/packetio"
)

// cipherSuites are the DTLS 1.2 PSK cipher suites offered:
// TLS_PSK_WITH_AES_128_CCM_8 is the one CoAP mandates (RFC 7252 §9.1.3.1);
// the others are what OpenSSL and GnuTLS builds of libcoap prefer.
var cipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_PSK_WITH_AES_128_CCM_8,
	dtls.TLS_PSK_WITH_AES_128_CCM,
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
}

const (
	// handshakeTimeout bounds a DTLS handshake that a peer abandons.
	handshakeTimeout = 30 * time.Second
	// maxDTLSPeers bounds the sessions kept at once, as a device's RAM would.
	maxDTLSPeers = 256
	// peerQueueBytes bounds the datagrams queued for one session.
	peerQueueBytes = 1 << 20
	// dtlsReadBuffer holds the largest DTLS record's plaintext.
	dtlsReadBuffer = 1 << 14
)

// DTLSOptions are the DTLS settings of a server, beyond its PSKs.
type DTLSOptions struct {
	// DTLSSessions is the server's session cache: a session a client
	// offers again in its ClientHello and that is found here gets an
	// abbreviated handshake (RFC 5246 §7.3). A store kept across a Close
	// and given to the next server is a device that kept its sessions in
	// flash. nil: no resumption, every handshake is a full one.
	DTLSSessions dtls.SessionStore
	// DTLSCID offers RFC 9146 connection IDs to a client that asks for
	// them. A record of content type tls12_cid reaches its session by its
	// CID whatever address it came from, and the session answers the
	// address of the latest record that authenticated (pion's reading of
	// RFC 9146 §6: a record that is not the newest, a replay or a late
	// copy, moves nothing). A client that offers no CID (libcoap over
	// OpenSSL 3) gets a session without one, routed by its address.
	DTLSCID bool
}

// cidLen is the length of the server's connection IDs. One length for all,
// so that the demultiplexer knows where a tls12_cid record's CID ends:
// RFC 9146 leaves it to the receiver, which chose it.
const cidLen = 8

// dtlsEndpoint demultiplexes the server's one UDP socket into a DTLS session
// per peer address, or per connection ID. Own code rather than pion's
// listener, so that Close releases the port before it returns and no
// close_notify leaves a board that has just lost power.
type dtlsEndpoint struct {
	s      *Server
	psk    PSKFunc
	opts   DTLSOptions
	mu     sync.Mutex
	peers  map[netip.AddrPort]*dtlsPeer // by the address that opened them
	cids   map[string]*dtlsPeer         // by the CID their records carry
	all    map[*dtlsPeer]struct{}       // restored sessions have no address
	lastID uint64
}

// ListenDTLS serves CoAP over DTLS 1.2 with a pre-shared key on addr. psk is
// asked for the key of each client's identity; the identity then reaches the
// handler as Request.PSKIdentity. Each peer address is one session; requests
// from all sessions still reach the handler one at a time.
func ListenDTLS(addr string, psk PSKFunc, h Handler, opts Options) (*Server, error) {
	return ListenDTLSWith(addr, psk, h, opts, DTLSOptions{})
}

// ListenDTLSWith is ListenDTLS with DTLS settings.
func ListenDTLSWith(addr string, psk PSKFunc, h Handler, opts Options, d DTLSOptions) (*Server, error) {
	if psk == nil {
		return nil, errors.New("coapsrv: nil PSK function")
	}
	s, err := newServer(h, opts)
	if err != nil {
		return nil, err
	}
	if err := s.bind(addr); err != nil {
		return nil, err
	}
	s.startDTLS(psk, d)
	return s, nil
}

// ServeDTLS is ListenDTLS on a socket the caller keeps; see ServeUDP.
func ServeDTLS(sock *net.UDPConn, psk PSKFunc, h Handler, opts Options) (*Server, error) {
	return ServeDTLSWith(sock, psk, h, opts, DTLSOptions{})
}

// ServeDTLSWith is ServeDTLS with DTLS settings.
func ServeDTLSWith(sock *net.UDPConn, psk PSKFunc, h Handler, opts Options, d DTLSOptions) (*Server, error) {
	if psk == nil {
		return nil, errors.New("coapsrv: nil PSK function")
	}
	s, err := newServer(h, opts)
	if err != nil {
		return nil, err
	}
	s.sock = sock
	s.startDTLS(psk, d)
	return s, nil
}

func (s *Server) startDTLS(psk PSKFunc, d DTLSOptions) {
	s.dtls = &dtlsEndpoint{
		s:     s,
		psk:   psk,
		opts:  d,
		peers: make(map[netip.AddrPort]*dtlsPeer),
		cids:  make(map[string]*dtlsPeer),
		all:   make(map[*dtlsPeer]struct{}),
	}
	go s.dtls.serve()
	s.log.Debug("coap listening", "addr", s.sock.LocalAddr().String(), "transport", "dtls", "cid", d.DTLSCID, "resumption", d.DTLSSessions != nil)
}

// fromKey tags a queued datagram with the address it came from when that
// is not the session's own (a CID record from a new address).
type fromKey struct{}

// serve reads the socket and queues each datagram for its session,
// starting a session on a handshake record from a new peer.
func (e *dtlsEndpoint) serve() {
	s := e.s
	buf := make([]byte, maxDatagram)
	for {
		n, from, ok := s.readFrom(buf)
		if !ok {
			return
		}
		p, d := e.route(from, buf[:n])
		if p == nil || len(d) == 0 {
			continue
		}
		var attrs packetio.Attributes
		if from != p.addr {
			attrs = packetio.Attributes{{Key: fromKey{}, Value: from}}
		}
		// A full queue drops the datagram, as a busy radio would.
		_, _ = p.in.Write(d, attrs)
	}
}

// route finds the session of datagram d from from, and what of d it is
// to read: a tls12_cid record goes to the session of its CID, less the
// records under a restored session's replay floor; anything else to the
// session of its address.
func (e *dtlsEndpoint) route(from netip.AddrPort, d []byte) (*dtlsPeer, []byte) {
	if e.opts.DTLSCID && len(d) > 0 && d[0] == contentTypeCID {
		cid, ok := recordCID(d, cidLen)
		if !ok {
			return nil, nil
		}
		e.mu.Lock()
		p := e.cids[string(cid)]
		e.mu.Unlock()
		if p == nil {
			return nil, nil // a session this device does not have (any more)
		}
		if p.floorSet {
			d = dropAtOrBelow(d, cidLen, p.floorEpoch, p.floor.Load())
		}
		return p, d
	}
	return e.peer(from, d), d
}

// peer finds or starts the session for from.
func (e *dtlsEndpoint) peer(from netip.AddrPort, first []byte) *dtlsPeer {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.peers[from]; p != nil {
		return p
	}
	// Only a handshake record (content type 22) opens a session.
	if e.s.closed.Load() || len(first) < 13 || first[0] != 22 {
		return nil
	}
	p := e.newPeerLocked(from)
	if p == nil {
		return nil
	}
	e.peers[from] = p
	go p.serve()
	return p
}

// newPeerLocked makes a session; from is its address (zero for a restored
// session, which has none until its first record). e.mu is held.
func (e *dtlsEndpoint) newPeerLocked(from netip.AddrPort) *dtlsPeer {
	if len(e.all) >= maxDTLSPeers {
		e.s.log.Warn("coap dtls session refused: too many sessions", "peer", from.String())
		return nil
	}
	e.lastID++
	p := &dtlsPeer{
		e:    e,
		id:   e.lastID,
		addr: from,
		ua:   net.UDPAddrFromAddrPort(from),
		in:   packetio.NewBuffer(),
		// One slot: settle needs a wake-up, not a count.
		asking: make(chan struct{}, 1),
	}
	p.lastFrom, p.lastUA = from, p.ua
	p.in.SetLimitSize(peerQueueBytes)
	e.all[p] = struct{}{}
	return p
}

// closeAll ends every session without a word to the peers: the server is
// already closed, so writes are dropped.
func (e *dtlsEndpoint) closeAll() {
	e.mu.Lock()
	ps := make([]*dtlsPeer, 0, len(e.all))
	for p := range e.all {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	for _, p := range ps {
		p.shutdown()
	}
}

// options are pion's options for a session of p, handshaken or restored.
func (p *dtlsPeer) options() []dtls.Option {
	opts := []dtls.Option{
		dtls.WithPSK(p.psk),
		dtls.WithCipherSuites(cipherSuites...),
	}
	if d := p.e.opts; d.DTLSSessions != nil {
		opts = append(opts, dtls.WithSessionStore(d.DTLSSessions))
	}
	if p.e.opts.DTLSCID {
		// pion asks for a CID only of a client that offered the
		// extension, in its ServerHello.
		opts = append(opts, dtls.WithConnectionIDGenerator(p.newCID))
	}
	return opts
}

// newCID makes the session's CID and makes it reachable by it.
func (p *dtlsPeer) newCID() []byte {
	cid := make([]byte, cidLen)
	_, _ = rand.Read(cid)
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	if p.cid != "" && p.e.cids[p.cid] == p {
		delete(p.e.cids, p.cid)
	}
	p.cid = string(cid)
	p.e.cids[p.cid] = p
	return cid
}

// dtlsPeer is one DTLS session. It is the net.PacketConn under pion's
// dtls.Conn: reads come from the demultiplexer's queue, writes go out
// through the server's gate.
type dtlsPeer struct {
	e    *dtlsEndpoint
	id   uint64
	addr netip.AddrPort // the address that opened the session
	ua   *net.UDPAddr
	in   *packetio.Buffer
	cid  string // the CID the peer puts on its records; guarded by e.mu

	// A restored session's replay floor (RestoreDTLS): its records of
	// floorEpoch numbered floor or lower are dropped. floorSet and
	// floorEpoch are set before the session is reachable; floor can be
	// raised by the handler (DTLSSession.SetRecvFloor).
	floorSet   bool
	floorEpoch uint16
	floor      atomic.Uint64

	// ReadFrom's state: pion's reader is its only caller.
	attrs    packetio.Attributes
	lastFrom netip.AddrPort
	lastUA   *net.UDPAddr
	// Calls of ReadFrom begun, and datagrams it returned: pion is done
	// with a datagram once it asks for the next (see settle).
	entered, returned atomic.Uint64
	asking            chan struct{}

	// refused is set once the PSK function has refused the client's
	// identity (see refusalAlert).
	refused atomic.Bool

	mu     sync.Mutex
	ended  bool
	conn   *dtls.Conn
	closer sync.Once
}

var _ net.PacketConn = (*dtlsPeer)(nil)

// setConn makes conn the session's; false if the session has ended.
func (p *dtlsPeer) setConn(conn *dtls.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return false
	}
	p.conn = conn
	return true
}

func (p *dtlsPeer) serve() {
	s := p.e.s
	opts := p.options()
	sopts := make([]dtls.ServerOption, len(opts))
	for i, o := range opts {
		sopts[i] = o
	}
	conn, err := dtls.ServerWithOptions(p, p.ua, sopts...)
	if err != nil {
		s.log.Error("coap dtls session not started", "peer", p.addr.String(), "err", err)
		_ = p.Close()
		return
	}
	if !p.setConn(conn) {
		_ = conn.Close()
		return
	}
	defer conn.Close()

	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	err = conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("coap dtls handshake failed", "peer", p.addr.String(), "err", err)
		return
	}
	p.run(conn)
}

// run answers the requests of an established session.
func (p *dtlsPeer) run(conn *dtls.Conn) {
	s := p.e.s
	w := newWorker(s, p.id)
	w.dconn = conn
	w.setPeer(p.remote(conn))
	ds := &DTLSSession{p: p, conn: conn}
	w.req.DTLS = ds
	suite := ""
	if st, ok := conn.ConnectionState(); ok {
		w.identity = st.IdentityHint
		suite = st.CipherSuiteID.String()
	}
	w.write = func(b []byte) {
		if _, err := conn.Write(b); err != nil {
			s.log.Debug("coap dtls send failed", "peer", w.peer.String(), "err", err)
		}
	}
	s.log.Debug("coap dtls session", "peer", w.peer.String(), "identity", string(w.identity), "suite", suite)
	buf := make([]byte, dtlsReadBuffer)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			s.log.Debug("coap dtls session ended", "peer", w.peer.String(), "err", err)
			return
		}
		// A session with a CID follows its peer from address to address.
		if p.hasCID() {
			p.settle()
		}
		w.setPeer(p.remote(conn))
		ds.reset()
		w.handle(buf[:n])
	}
}

// hasCID reports whether the session's peer puts a CID on its records.
func (p *dtlsPeer) hasCID() bool {
	p.e.mu.Lock()
	defer p.e.mu.Unlock()
	return p.cid != ""
}

// settle waits until pion is done with every datagram handed to it so far.
// pion hands a record's plaintext to Read before it moves the session to
// the address the record came from; without the wait, the answer to the
// first request of a session that moved (or was restored and has no
// address yet) could go to the old address, or nowhere.
func (p *dtlsPeer) settle() {
	n := p.returned.Load()
	if p.entered.Load() > n {
		return
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	for p.entered.Load() <= n {
		select {
		case <-p.asking:
		case <-t.C:
			return // pion's reader has stopped: the session is ending
		}
	}
}

// remote is the address conn answers to.
func (p *dtlsPeer) remote(conn *dtls.Conn) netip.AddrPort {
	if ua, ok := conn.RemoteAddr().(*net.UDPAddr); ok && ua != p.ua {
		return unmap(ua.AddrPort())
	}
	return p.addr
}

func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// psk asks the server's PSK function for the key of the client's identity
// and remembers a refusal.
func (p *dtlsPeer) psk(identity []byte) ([]byte, error) {
	key, err := p.e.psk(identity)
	if err != nil {
		p.refused.Store(true)
	}
	return key, err
}

// shutdown closes the session from the server's side.
func (p *dtlsPeer) shutdown() {
	p.mu.Lock()
	p.ended = true
	c := p.conn
	p.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	_ = p.Close()
}

// ReadFrom implements net.PacketConn. The address is the one the
// datagram came from: pion moves a CID session to it once a record from
// there authenticates as the newest.
func (p *dtlsPeer) ReadFrom(b []byte) (int, net.Addr, error) {
	p.entered.Add(1)
	select {
	case p.asking <- struct{}{}:
	default:
	}
	n, attrs, err := p.in.Read(b, p.attrs[:0])
	if err == nil {
		p.returned.Add(1)
	}
	p.attrs = attrs
	from := p.addr
	if v, ok := attrs.Get(fromKey{}).(netip.AddrPort); ok {
		from = v
	}
	if from != p.lastFrom {
		p.lastFrom, p.lastUA = from, net.UDPAddrFromAddrPort(from)
	}
	return n, p.lastUA, err
}

// WriteTo implements net.PacketConn: to is pion's peer address, the
// session's own unless a CID moved it. A restored session that has heard
// nothing yet has no address and sends nothing.
func (p *dtlsPeer) WriteTo(b []byte, to net.Addr) (int, error) {
	n := len(b)
	dst := p.addr
	if ua, ok := to.(*net.UDPAddr); ok && ua != p.ua {
		dst = unmap(ua.AddrPort())
	}
	if !dst.IsValid() || dst.Port() == 0 {
		return n, nil
	}
	if p.refused.Load() {
		b = refusalAlert(b)
	}
	p.e.s.writeUDP(b, dst)
	return n, nil
}

// Record layer and alert values (RFC 6347 §4.1, RFC 5246 §7.2, RFC 4279 §2,
// RFC 9146 §4).
const (
	recordHeaderLen         = 13
	contentTypeAlert        = 21
	contentTypeCID          = 25
	alertFatal              = 2
	alertInternalError      = 80
	alertUnknownPSKIdentity = 115
)

// refusalAlert returns datagram b with a fatal internal_error alert turned
// into unknown_psk_identity. pion answers an identity the PSK function
// refuses with internal_error; a device's DTLS stack (mbedTLS, OpenSSL)
// answers unknown_psk_identity, which tells a bench that the device does
// not know the identity rather than that it failed. The alert goes out
// before any key is agreed, in plaintext: a 2-byte fragment (a protected
// one is longer). b itself is left as it is.
func refusalAlert(b []byte) []byte {
	out, copied := b, false
	for off := 0; off+recordHeaderLen <= len(b); {
		n := int(binary.BigEndian.Uint16(b[off+11:]))
		frag := off + recordHeaderLen
		if frag+n > len(b) {
			break
		}
		if b[off] == contentTypeAlert && n == 2 && b[frag] == alertFatal && b[frag+1] == alertInternalError {
			if !copied {
				out, copied = append([]byte(nil), b...), true
			}
			out[frag+1] = alertUnknownPSKIdentity
		}
		off = frag + n
	}
	return out
}

// Close implements net.PacketConn: it forgets the session so that the
// address can open a new one.
func (p *dtlsPeer) Close() error {
	p.closer.Do(func() {
		_ = p.in.Close()
		p.e.mu.Lock()
		if p.e.peers[p.addr] == p {
			delete(p.e.peers, p.addr)
		}
		if p.cid != "" && p.e.cids[p.cid] == p {
			delete(p.e.cids, p.cid)
		}
		delete(p.e.all, p)
		p.e.mu.Unlock()
	})
	return nil
}

// LocalAddr implements net.PacketConn.
func (p *dtlsPeer) LocalAddr() net.Addr { return p.e.s.sock.LocalAddr() }

// SetDeadline implements net.PacketConn; only reads can block.
func (p *dtlsPeer) SetDeadline(t time.Time) error { return p.in.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (p *dtlsPeer) SetReadDeadline(t time.Time) error { return p.in.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn; writes never block.
func (p *dtlsPeer) SetWriteDeadline(time.Time) error { return nil }
