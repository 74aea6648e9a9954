package coapsrv

import (
	"context"
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

// dtlsEndpoint demultiplexes the server's one UDP socket into a DTLS session
// per peer address. Own code rather than pion's listener, so that Close
// releases the port before it returns and no close_notify leaves a board
// that has just lost power.
type dtlsEndpoint struct {
	s      *Server
	psk    PSKFunc
	mu     sync.Mutex
	peers  map[netip.AddrPort]*dtlsPeer
	lastID uint64
}

// ListenDTLS serves CoAP over DTLS 1.2 with a pre-shared key on addr. psk is
// asked for the key of each client's identity; the identity then reaches the
// handler as Request.PSKIdentity. Each peer address is one session; requests
// from all sessions still reach the handler one at a time.
func ListenDTLS(addr string, psk PSKFunc, h Handler, opts Options) (*Server, error) {
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
	s.startDTLS(psk)
	return s, nil
}

// ServeDTLS is ListenDTLS on a socket the caller keeps; see ServeUDP.
func ServeDTLS(sock *net.UDPConn, psk PSKFunc, h Handler, opts Options) (*Server, error) {
	if psk == nil {
		return nil, errors.New("coapsrv: nil PSK function")
	}
	s, err := newServer(h, opts)
	if err != nil {
		return nil, err
	}
	s.sock = sock
	s.startDTLS(psk)
	return s, nil
}

func (s *Server) startDTLS(psk PSKFunc) {
	s.dtls = &dtlsEndpoint{
		s:     s,
		psk:   psk,
		peers: make(map[netip.AddrPort]*dtlsPeer),
	}
	go s.dtls.serve()
	s.log.Debug("coap listening", "addr", s.sock.LocalAddr().String(), "transport", "dtls")
}

// serve reads the socket and queues each datagram for its peer's session,
// starting a session on a handshake record from a new peer.
func (e *dtlsEndpoint) serve() {
	s := e.s
	buf := make([]byte, maxDatagram)
	for {
		n, from, ok := s.readFrom(buf)
		if !ok {
			return
		}
		p := e.peer(from, buf[:n])
		if p == nil {
			continue
		}
		// A full queue drops the datagram, as a busy radio would.
		_, _ = p.in.Write(buf[:n], nil)
	}
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
	if len(e.peers) >= maxDTLSPeers {
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
	}
	p.in.SetLimitSize(peerQueueBytes)
	e.peers[from] = p
	go p.serve()
	return p
}

// closeAll ends every session without a word to the peers: the server is
// already closed, so writes are dropped.
func (e *dtlsEndpoint) closeAll() {
	e.mu.Lock()
	ps := make([]*dtlsPeer, 0, len(e.peers))
	for _, p := range e.peers {
		ps = append(ps, p)
	}
	e.mu.Unlock()
	for _, p := range ps {
		p.shutdown()
	}
}

// dtlsPeer is one DTLS session. It is the net.PacketConn under pion's
// dtls.Conn: reads come from the demultiplexer's queue, writes go out
// through the server's gate.
type dtlsPeer struct {
	e    *dtlsEndpoint
	id   uint64
	addr netip.AddrPort
	ua   *net.UDPAddr
	in   *packetio.Buffer

	// refused is set once the PSK function has refused the client's
	// identity (see refusalAlert).
	refused atomic.Bool

	mu     sync.Mutex
	ended  bool
	conn   *dtls.Conn
	closer sync.Once
}

var _ net.PacketConn = (*dtlsPeer)(nil)

func (p *dtlsPeer) serve() {
	s := p.e.s
	conn, err := dtls.ServerWithOptions(p, p.ua,
		dtls.WithPSK(p.psk),
		dtls.WithCipherSuites(cipherSuites...))
	if err != nil {
		s.log.Error("coap dtls session not started", "peer", p.addr.String(), "err", err)
		_ = p.Close()
		return
	}
	p.mu.Lock()
	if p.ended {
		p.mu.Unlock()
		_ = conn.Close()
		return
	}
	p.conn = conn
	p.mu.Unlock()
	defer conn.Close()

	ctx, cancel := context.WithTimeout(s.ctx, handshakeTimeout)
	err = conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("coap dtls handshake failed", "peer", p.addr.String(), "err", err)
		return
	}
	w := newWorker(s, p.id)
	w.setPeer(p.addr)
	suite := ""
	if st, ok := conn.ConnectionState(); ok {
		w.identity = st.IdentityHint
		suite = st.CipherSuiteID.String()
	}
	w.write = func(b []byte) {
		if _, err := conn.Write(b); err != nil {
			s.log.Debug("coap dtls send failed", "peer", p.addr.String(), "err", err)
		}
	}
	s.log.Debug("coap dtls session", "peer", p.addr.String(), "identity", string(w.identity), "suite", suite)
	buf := make([]byte, dtlsReadBuffer)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			s.log.Debug("coap dtls session ended", "peer", p.addr.String(), "err", err)
			return
		}
		w.handle(buf[:n])
	}
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

// ReadFrom implements net.PacketConn.
func (p *dtlsPeer) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, err := p.in.Read(b, nil)
	return n, p.ua, err
}

// WriteTo implements net.PacketConn; the address is always the peer's.
func (p *dtlsPeer) WriteTo(b []byte, _ net.Addr) (int, error) {
	n := len(b)
	if p.refused.Load() {
		b = refusalAlert(b)
	}
	p.e.s.writeUDP(b, p.addr)
	return n, nil
}

// Record layer and alert values (RFC 6347 §4.1, RFC 5246 §7.2, RFC 4279 §2).
const (
	recordHeaderLen         = 13
	contentTypeAlert        = 21
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
