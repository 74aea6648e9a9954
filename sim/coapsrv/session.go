package coapsrv

import (
	"bytes"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/pion/dtls/v3"
)

// DTLSSession is the DTLS session a request came on (Request.DTLS). It is
// valid while the handler runs. Its methods read pion's state of the live
// session; what they return is computed once per request.
type DTLSSession struct {
	p    *dtlsPeer
	conn *dtls.Conn

	// Per request: pion's state as serialised, and its fields.
	done  bool
	raw   []byte
	state pionState
	err   error
}

// reset forgets what was read of the state for the previous request.
func (d *DTLSSession) reset() {
	d.done, d.raw, d.err = false, nil, nil
}

// load reads the session's state once per request.
func (d *DTLSSession) load() error {
	if d.done {
		return d.err
	}
	d.done = true
	st, ok := d.conn.ConnectionState()
	if !ok {
		d.err = errors.New("coapsrv: dtls session has no state")
		return d.err
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		d.err = fmt.Errorf("coapsrv: dtls session state: %w", err)
		return d.err
	}
	d.state = pionState{}
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&d.state); err != nil {
		d.err = fmt.Errorf("coapsrv: dtls session state: %w", err)
		return d.err
	}
	d.raw = raw
	return nil
}

// SessionID is the session's ID (RFC 5246 §7.4.1.3): non-empty when the
// server keeps sessions (DTLSOptions.DTLSSessions). nil if the state
// cannot be read.
func (d *DTLSSession) SessionID() []byte {
	if d.load() != nil {
		return nil
	}
	return bytes.Clone(d.state.SessionID)
}

// Session is the session as the server's session cache holds it, for a
// device model that persists it elsewhere; ok is false without a cache
// or when the cache does not have it.
func (d *DTLSSession) Session() (dtls.Session, bool) {
	store := d.p.e.opts.DTLSSessions
	id := d.SessionID()
	if store == nil || len(id) == 0 {
		return dtls.Session{}, false
	}
	s, err := store.Get(id)
	if err != nil || len(s.ID) == 0 {
		return dtls.Session{}, false
	}
	return s, true
}

// State is pion's MarshalBinary of the live session: what a device would
// write to flash to carry the session across a power cut, restorable with
// Server.RestoreDTLS. Its send sequence number is the next record's: a
// device that restores it as it is sends that number again (see
// StateSendSeq). It holds the master secret: keep it as a key.
func (d *DTLSSession) State() ([]byte, error) {
	if err := d.load(); err != nil {
		return nil, err
	}
	return bytes.Clone(d.raw), nil
}

// NextSendSeq is the sequence number of the next record the device sends
// in its current epoch (the reply to this request goes out with it).
func (d *DTLSSession) NextSendSeq() uint64 {
	if d.load() != nil {
		return 0
	}
	return d.state.SequenceNumber
}

// LastRecvSeq is the sequence number of the record that carried this
// request: the newest record that authenticated on the session when the
// handler asked (pion counts it; with one request in flight at a time it
// is the request's).
func (d *DTLSSession) LastRecvSeq() uint64 {
	if d.load() != nil || d.state.RemoteSequenceNumber == 0 {
		return 0
	}
	return d.state.RemoteSequenceNumber - 1
}

// Restored reports whether the session was restored from a state
// (Server.RestoreDTLS) rather than set up by a handshake.
func (d *DTLSSession) Restored() bool { return d.p.floorSet }

// SetRecvFloor raises a restored session's replay floor: records from the
// client numbered seq or lower are dropped from now on. A device calls it
// once it knows a request fresh (its Echo came back), so that anything
// older — a request captured before the cut and sent again — is refused.
// It does nothing on a session set up by a handshake, whose keys are new.
func (d *DTLSSession) SetRecvFloor(seq uint64) {
	if !d.p.floorSet {
		return
	}
	for {
		old := d.p.floor.Load()
		if seq <= old || d.p.floor.CompareAndSwap(old, seq) {
			return
		}
	}
}

// pionState mirrors every field of pion v3's serialised State, so that a
// state decoded and encoded again loses nothing (gob matches fields by
// name). TestStatePatchKeepsEverything guards it against a pion upgrade.
type pionState struct {
	RemoteSequenceNumber  uint64 // newest record received, plus one
	HandshakeComplete     bool
	LocalEpoch            uint16
	RemoteEpoch           uint16
	LocalRandom           [32]byte
	RemoteRandom          [32]byte
	CipherSuiteID         uint16
	MasterSecret          []byte
	SequenceNumber        uint64 // next record to send, in LocalEpoch
	SRTPProtectionProfile uint16
	PeerCertificates      [][]byte
	IdentityHint          []byte
	SessionID             []byte
	LocalConnectionID     []byte
	RemoteConnectionID    []byte
	IsClient              bool
	NegotiatedProtocol    string
}

func decodeState(state []byte) (*pionState, error) {
	var st pionState
	if err := gob.NewDecoder(bytes.NewReader(state)).Decode(&st); err != nil {
		return nil, fmt.Errorf("coapsrv: dtls state: %w", err)
	}
	return &st, nil
}

func (st *pionState) encode() ([]byte, error) {
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(st); err != nil {
		return nil, fmt.Errorf("coapsrv: dtls state: %w", err)
	}
	return b.Bytes(), nil
}

// StateSendSeq reads the send sequence number of a marshalled pion state
// (DTLSSession.State): the number of the next record in its epoch.
func StateSendSeq(state []byte) (uint64, error) {
	st, err := decodeState(state)
	if err != nil {
		return 0, err
	}
	return st.SequenceNumber, nil
}

// SetStateSendSeq returns a marshalled pion state with its send sequence
// number set to seq. pion restores a State's SequenceNumber as the next
// number of its current epoch and has no setter, so the field is patched
// in the gob encoding; the other fields are carried over unchanged.
func SetStateSendSeq(state []byte, seq uint64) ([]byte, error) {
	st, err := decodeState(state)
	if err != nil {
		return nil, err
	}
	if seq >= 1<<48 {
		return nil, fmt.Errorf("coapsrv: dtls send sequence number %d beyond 48 bits", seq)
	}
	st.SequenceNumber = seq
	return st.encode()
}

// RestoreDTLS makes a session from state (DTLSSession.State of a server,
// this one or one before a power cut) without a handshake, as a recovery
// bootloader that kept its DTLS context in flash does. The session is
// reachable by its connection ID only (it has no address until a record
// comes), so state must have one: the server needs DTLSOptions.DTLSCID.
//
// sendSeq is the sequence number of the session's next record: a safe
// device jumps past every number it may have used before the cut; one
// that restores the number in state sends numbers again under the same
// key (an AEAD nonce reused). recvFloor is the device's replay floor:
// records from the client of the session's epoch numbered recvFloor or
// lower are dropped before pion sees them. pion's own replay window
// starts empty after a restore, and the cutoff pion v3 derives from
// state is cleared here, so that the floor alone decides: 0 lets a
// replayed record from before the cut through, as on a device that kept
// no floor.
func (s *Server) RestoreDTLS(state []byte, sendSeq uint64, recvFloor uint64) error {
	e := s.dtls
	if e == nil {
		return errors.New("coapsrv: restore dtls session: not a DTLS server")
	}
	if !e.opts.DTLSCID {
		return errors.New("coapsrv: restore dtls session: the server offers no connection IDs (DTLSOptions.DTLSCID)")
	}
	st, err := decodeState(state)
	if err != nil {
		return fmt.Errorf("coapsrv: restore dtls session: %w", err)
	}
	switch {
	case st.IsClient || !st.HandshakeComplete:
		return errors.New("coapsrv: restore dtls session: not an established server session")
	case len(st.LocalConnectionID) != cidLen:
		return fmt.Errorf("coapsrv: restore dtls session: connection ID of %d bytes, want %d", len(st.LocalConnectionID), cidLen)
	case sendSeq >= 1<<48:
		return fmt.Errorf("coapsrv: restore dtls session: send sequence number %d beyond 48 bits", sendSeq)
	}
	st.SequenceNumber = sendSeq
	st.RemoteSequenceNumber = 0
	raw, err := st.encode()
	if err != nil {
		return fmt.Errorf("coapsrv: restore dtls session: %w", err)
	}
	var ps dtls.State
	if err := ps.UnmarshalBinary(raw); err != nil {
		return fmt.Errorf("coapsrv: restore dtls session: %w", err)
	}

	e.mu.Lock()
	if s.closed.Load() {
		e.mu.Unlock()
		return errors.New("coapsrv: restore dtls session: server closed")
	}
	cid := string(st.LocalConnectionID)
	if e.cids[cid] != nil {
		e.mu.Unlock()
		return errors.New("coapsrv: restore dtls session: a session with its connection ID exists")
	}
	p := e.newPeerLocked(netip.AddrPort{})
	if p == nil {
		e.mu.Unlock()
		return errors.New("coapsrv: restore dtls session: too many sessions")
	}
	p.cid = cid
	p.floorSet, p.floorEpoch = true, st.RemoteEpoch
	p.floor.Store(recvFloor)
	e.mu.Unlock()

	conn, err := dtls.ResumeWithOptions(&ps, p, p.ua, p.options()...)
	if err != nil {
		_ = p.Close()
		return fmt.Errorf("coapsrv: restore dtls session: %w", err)
	}
	if !p.setConn(conn) {
		_ = conn.Close()
		return errors.New("coapsrv: restore dtls session: server closed")
	}
	// Reachable only now that the session can read.
	e.mu.Lock()
	e.cids[cid] = p
	e.mu.Unlock()
	go func() {
		defer conn.Close()
		if err := conn.HandshakeContext(s.ctx); err != nil {
			s.log.Debug("coap dtls restored session not started", "err", err)
			return
		}
		p.run(conn)
	}()
	s.log.Debug("coap dtls session restored", "send_seq", sendSeq, "recv_floor", recvFloor)
	return nil
}

// recordCID returns the CID of the tls12_cid record that starts d, for
// CIDs of n bytes; ok is false when d does not start with a whole one.
func recordCID(d []byte, n int) (cid []byte, ok bool) {
	if len(d) < recordHeaderLen+n || d[0] != contentTypeCID {
		return nil, false
	}
	l := int(binary.BigEndian.Uint16(d[11+n:]))
	if len(d) < recordHeaderLen+n+l {
		return nil, false
	}
	return d[11 : 11+n], true
}

// dropAtOrBelow returns datagram d without its records of epoch numbered
// floor or lower (a replay floor); records are parsed with CIDs of cidLen
// bytes in tls12_cid records. Bytes after the last whole record are kept
// for pion to discard. d is not changed; nil when nothing is left.
func dropAtOrBelow(d []byte, cidLen int, epoch uint16, floor uint64) []byte {
	var out []byte
	dropped := false
	rest := d
	for len(rest) >= recordHeaderLen {
		hl := recordHeaderLen
		if rest[0] == contentTypeCID {
			hl += cidLen
		}
		if len(rest) < hl {
			break
		}
		end := hl + int(binary.BigEndian.Uint16(rest[hl-2:]))
		if len(rest) < end {
			break
		}
		seq := binary.BigEndian.Uint64(rest[3:11]) & (1<<48 - 1)
		if binary.BigEndian.Uint16(rest[3:5]) == epoch && seq <= floor {
			if !dropped {
				dropped = true
				out = append(make([]byte, 0, len(d)), d[:len(d)-len(rest)]...)
			}
		} else if dropped {
			out = append(out, rest[:end]...)
		}
		rest = rest[end:]
	}
	if !dropped {
		return d
	}
	out = append(out, rest...)
	if len(out) == 0 {
		return nil
	}
	return out
}

// MemorySessions is a DTLS session cache in memory, for
// DTLSOptions.DTLSSessions: handed from one Server to the next, it is a
// device's flash.
type MemorySessions struct {
	mu sync.Mutex
	m  map[string]dtls.Session
}

var _ dtls.SessionStore = (*MemorySessions)(nil)

// Set implements dtls.SessionStore.
func (m *MemorySessions) Set(key []byte, s dtls.Session) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m == nil {
		m.m = make(map[string]dtls.Session)
	}
	m.m[string(key)] = s
	return nil
}

// Get implements dtls.SessionStore: the zero Session for an unknown key,
// which pion takes as none (an error would abort the handshake).
func (m *MemorySessions) Get(key []byte) (dtls.Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.m[string(key)], nil
}

// Del implements dtls.SessionStore.
func (m *MemorySessions) Del(key []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, string(key))
	return nil
}

// Len is the number of sessions kept.
func (m *MemorySessions) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.m)
}
