package coap

import (
	"bytes"
	"fmt"
	"sync"
	"time"

	piondtls "github.com/pion/dtls/v3"
)

// DTLS cache modes (NewDTLSCache): what the bench keeps of a device's DTLS
// session from one client to the next, to match what a recovery
// bootloader keeps across a power cut.
const (
	// DTLSCacheNone: a full PSK handshake on every client.
	DTLSCacheNone = "none"
	// DTLSCacheSession: RFC 5246 session resumption, an abbreviated
	// handshake when the device still has the session.
	DTLSCacheSession = "session"
	// DTLSCacheState: no handshake at all; the next client continues the
	// record layer of the last one (keys, epoch, sequence numbers) from a
	// new socket, reaching the device by its RFC 9146 connection ID.
	DTLSCacheState = "state"
)

// DTLSCache is what the bench keeps of one device's DTLS session between
// the successive clients it dials to that device (PSK.Cache). One client
// at a time uses it; it is safe for concurrent use all the same.
//
// In state mode a client that is closed with a handshaken session which
// gave the bench a connection ID leaves a snapshot here (the record
// layer's keys, epoch, next send sequence number and CIDs), and sends
// nothing more, not even close_notify: the device may still hold the
// session. The snapshot is single use: the first exchange of the next
// client takes it and continues the session on its own socket without a
// handshake. A continued session that gets no authenticated record from
// the device is normally dropped (the device lost the state: the client
// after it does a full handshake and the cache learns that session). But
// while the caller expects the device to come back with the state
// (ExpectState: it has just powered the device on after a cut, or asked
// it to reboot into recovery), such a session is kept for the next
// client: the device may still be booting, and it drops records silently
// until its network is up.
type DTLSCache struct {
	mode string

	mu          sync.Mutex
	expectUntil time.Time
	sessions    map[string]piondtls.Session // session mode: pion's client store
	snap        *dtlsSnapshot               // state mode

	// recvCIDLen is the length of the CID the bench asks the device to put
	// on its records in state mode; 0 asks for none (the bench's socket is
	// connected, so it needs none). Tests set it to prove the receive side.
	recvCIDLen int
}

// NewDTLSCache returns an empty cache for mode: DTLSCacheNone,
// DTLSCacheSession or DTLSCacheState.
func NewDTLSCache(mode string) (*DTLSCache, error) {
	switch mode {
	case DTLSCacheNone, DTLSCacheSession, DTLSCacheState:
	default:
		return nil, fmt.Errorf("coap: DTLS cache mode %q: want %q, %q or %q", mode, DTLSCacheNone, DTLSCacheSession, DTLSCacheState)
	}
	return &DTLSCache{mode: mode, sessions: make(map[string]piondtls.Session)}, nil
}

// Mode is the cache's mode.
func (d *DTLSCache) Mode() string {
	if d == nil {
		return DTLSCacheNone
	}
	return d.mode
}

func (d *DTLSCache) keepsState() bool { return d != nil && d.mode == DTLSCacheState }

func (d *DTLSCache) keepsSessions() bool { return d != nil && d.mode == DTLSCacheSession }

// dtlsSnapshot is a client's record layer as it was closed.
type dtlsSnapshot struct {
	keys             sessionKeys
	epoch            uint16
	seq              uint64 // next to send
	sendCID, recvCID []byte
}

// ExpectState tells the cache that until the deadline the device is
// expected to come back with the session's state (it boots with its
// record layer restored): a continued session it has not answered yet is
// kept rather than given up for a full handshake. After the deadline, or
// once the device answers, the cache gives up on an unanswered one at
// once.
func (d *DTLSCache) ExpectState(until time.Time) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.expectUntil = until
	d.mu.Unlock()
}

// put keeps s for the next client, replacing what was there. answered
// says whether the device answered the session (a continued one may not
// have: see ExpectState).
func (d *DTLSCache) put(s *dtlsSnapshot, answered bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case answered, time.Now().Before(d.expectUntil):
		d.snap = s
	default:
		d.snap = nil
	}
}

// take hands the snapshot over, once.
func (d *DTLSCache) take() *dtlsSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.snap
	d.snap = nil
	return s
}

// clientSessionStore is pion's client session store over the cache's
// sessions, for one client: it remembers the session ID it handed pion to
// offer, so that the client can tell an abbreviated handshake (the device
// took that ID back) from a full one (a new ID).
type clientSessionStore struct {
	d       *DTLSCache
	mu      sync.Mutex
	offered []byte
}

var _ piondtls.SessionStore = (*clientSessionStore)(nil)

func (s *clientSessionStore) Set(key []byte, sess piondtls.Session) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.d.sessions[string(key)] = sess
	return nil
}

// Get returns the zero Session for a key without one: pion takes an error
// for a failure and aborts the handshake.
func (s *clientSessionStore) Get(key []byte) (piondtls.Session, error) {
	s.d.mu.Lock()
	sess := s.d.sessions[string(key)]
	s.d.mu.Unlock()
	s.mu.Lock()
	s.offered = bytes.Clone(sess.ID)
	s.mu.Unlock()
	return sess, nil
}

func (s *clientSessionStore) Del(key []byte) error {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	delete(s.d.sessions, string(key))
	return nil
}

// resumed reports whether a handshake that ended with session ID id
// resumed the session offered.
func (s *clientSessionStore) resumed(id []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.offered) > 0 && bytes.Equal(s.offered, id)
}

// Handshake kinds (Handshake.Kind).
const (
	HandshakeFull        = "full"
	HandshakeAbbreviated = "abbreviated"
	HandshakeNone        = "none" // a continued session (DTLSCacheState)
)

// Handshake is the telemetry of how a client's DTLS session was
// established (Client.OnHandshake).
type Handshake struct {
	Kind     string        // HandshakeFull, HandshakeAbbreviated or HandshakeNone
	Duration time.Duration // from the first handshake datagram to the session; 0 for none
	// Sent and Received count UDP payload bytes of the handshake, and
	// Datagrams the datagrams both ways, retransmissions included; all 0
	// for none.
	Sent, Received int
	Datagrams      int
}
