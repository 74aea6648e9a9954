package coap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"encoding/gob"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/pion/dtls/v3/pkg/crypto/ccm"
	"github.com/pion/dtls/v3/pkg/crypto/prf"
)

// DTLS 1.2 over this client: pion runs the handshake; the application data
// records that follow are sealed and opened here, on the caller's
// goroutine and the connected socket, because pion's record path spends a
// goroutine per read and per write and a channel hop per datagram.
//
// Only the two AEAD suites offered (AES-128-CCM-8 and AES-128-GCM, RFC 6655
// and 5288, both with a 4-byte implicit and an 8-byte explicit nonce) are
// handled. RFC 9146 connection IDs are: a record to a device that gave the
// bench a CID is a tls12_cid record (content type 25) carrying the CID,
// with the real content type inside the encrypted DTLSInnerPlaintext and
// the RFC 9146 §5 additional data.

const (
	ctAlert           = 21
	ctHandshake       = 22
	ctApplicationData = 23
	ctCID             = 25 // tls12_cid, RFC 9146
	recordHeaderLen   = 13
	explicitNonceLen  = 8
	maxCIDLen         = 255
)

// errDTLSAlert ends an exchange when the device sent a fatal alert or
// close_notify: its session is gone.
var errDTLSAlert = errors.New("dtls: the device closed the session")

// RecordSeen describes one record from the device that authenticated
// (see Client.OnRecord). A device that restored its DTLS state from flash
// can send a second, different record under the same key, epoch and
// sequence number: an AEAD nonce reused. A network duplicate has the same
// CTHash; a reuse has another.
type RecordSeen struct {
	// KeyFP is the first 8 bytes of SHA-256 over the device's write key
	// and write IV: it tells sessions apart without revealing the key.
	KeyFP  [8]byte
	Epoch  uint16
	Seq    uint64 // 48-bit record sequence number
	CTHash uint64 // first 8 bytes of SHA-256 over the record's fragment (explicit nonce, ciphertext, tag)
}

// sessionKeys are the keys of a session's record layer.
type sessionKeys struct {
	suite               piondtls.CipherSuiteID
	localKey, remoteKey []byte
	localIV, remoteIV   [4]byte
}

// recordLayer seals and opens DTLS 1.2 records of epoch 1 onwards.
type recordLayer struct {
	keys              sessionKeys
	local, remote     cipher.AEAD
	localIV, remoteIV [4]byte
	epoch             uint16
	seq               uint64 // next sequence number to send
	sendCID           []byte // CID on records sent (the device's); empty: none
	recvCID           []byte // CID on records received (the bench's); empty: none
	keyFP             [8]byte
	opened            uint64 // records that authenticated
	nonce             [12]byte
	aad               [13]byte
	aadCID            []byte
}

// pionState mirrors the fields of pion's serialised State that are needed
// (gob matches fields by name).
type pionState struct {
	LocalEpoch     uint16
	LocalRandom    [32]byte
	RemoteRandom   [32]byte
	CipherSuiteID  uint16
	MasterSecret   []byte
	SequenceNumber uint64
	IsClient       bool
	SessionID      []byte

	LocalConnectionID  []byte
	RemoteConnectionID []byte
}

// decodePionState reads the fields of st that the record layer needs.
func decodePionState(st *piondtls.State) (*pionState, error) {
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("dtls: session state: %w", err)
	}
	var ps pionState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&ps); err != nil {
		return nil, fmt.Errorf("dtls: session state: %w", err)
	}
	return &ps, nil
}

// newRecordLayer takes over the session of a handshaken client conn whose
// state is st.
func newRecordLayer(st *piondtls.State) (*recordLayer, error) {
	ps, err := decodePionState(st)
	if err != nil {
		return nil, err
	}
	if !ps.IsClient || ps.LocalEpoch == 0 || len(ps.MasterSecret) == 0 || len(ps.LocalConnectionID) > maxCIDLen || len(ps.RemoteConnectionID) > maxCIDLen {
		return nil, errors.New("dtls: unexpected session state")
	}
	keys, err := prf.GenerateEncryptionKeys(ps.MasterSecret, ps.LocalRandom[:], ps.RemoteRandom[:], 0, 16, 4, sha256.New)
	if err != nil {
		return nil, fmt.Errorf("dtls: keys: %w", err)
	}
	k := sessionKeys{
		suite:     piondtls.CipherSuiteID(ps.CipherSuiteID),
		localKey:  keys.ClientWriteKey,
		remoteKey: keys.ServerWriteKey,
	}
	copy(k.localIV[:], keys.ClientWriteIV)
	copy(k.remoteIV[:], keys.ServerWriteIV)
	return recordLayerFrom(k, ps.LocalEpoch, ps.SequenceNumber, ps.RemoteConnectionID, ps.LocalConnectionID)
}

// recordLayerFrom makes the record layer of a session with keys k whose
// next record to send is (epoch, seq).
func recordLayerFrom(k sessionKeys, epoch uint16, seq uint64, sendCID, recvCID []byte) (*recordLayer, error) {
	mk := func(key []byte) (cipher.AEAD, error) {
		blk, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("dtls: %w", err)
		}
		switch k.suite {
		case piondtls.TLS_PSK_WITH_AES_128_CCM_8:
			return ccm.NewCCM(blk, 8, 12)
		case piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256:
			return cipher.NewGCM(blk)
		}
		return nil, fmt.Errorf("dtls: cipher suite %#04x not handled", uint16(k.suite))
	}
	rl := &recordLayer{
		keys:     k,
		epoch:    epoch,
		seq:      seq,
		localIV:  k.localIV,
		remoteIV: k.remoteIV,
		sendCID:  bytes.Clone(sendCID),
		recvCID:  bytes.Clone(recvCID),
		aadCID:   make([]byte, 0, 23+maxCIDLen),
	}
	var err error
	if rl.local, err = mk(k.localKey); err != nil {
		return nil, err
	}
	if rl.remote, err = mk(k.remoteKey); err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(k.remoteKey)
	h.Write(k.remoteIV[:])
	copy(rl.keyFP[:], h.Sum(nil))
	return rl, nil
}

// snapshot is what a continued session needs: the keys and the next
// record to send.
func (r *recordLayer) snapshot() *dtlsSnapshot {
	return &dtlsSnapshot{keys: r.keys, epoch: r.epoch, seq: r.seq, sendCID: bytes.Clone(r.sendCID), recvCID: bytes.Clone(r.recvCID)}
}

// seal appends a record of content type ct carrying payload to dst.
func (r *recordLayer) seal(dst []byte, ct byte, payload []byte) []byte {
	seq64 := uint64(r.epoch)<<48 | r.seq&(1<<48-1)
	r.seq++
	copy(r.nonce[:4], r.localIV[:])
	binary.BigEndian.PutUint64(r.nonce[4:], seq64)
	if len(r.sendCID) == 0 {
		var hdr [recordHeaderLen + explicitNonceLen]byte
		hdr[0] = ct
		hdr[1], hdr[2] = 0xfe, 0xfd // DTLS 1.2
		binary.BigEndian.PutUint64(hdr[3:11], seq64)
		binary.BigEndian.PutUint16(hdr[11:13], uint16(explicitNonceLen+len(payload)+r.local.Overhead()))
		binary.BigEndian.PutUint64(hdr[13:21], seq64)
		r.setAAD(seq64, ct, len(payload))
		dst = append(dst, hdr[:]...)
		return r.local.Seal(dst, r.nonce[:], payload, r.aad[:])
	}
	// RFC 9146 §4: the header carries the CID, the length follows it, and
	// what is encrypted is the DTLSInnerPlaintext: the content, then its
	// real type (no padding). It is sealed in place, so dst gets room for
	// the whole record first.
	hl := recordHeaderLen + len(r.sendCID)
	inner := len(payload) + 1
	start := len(dst)
	dst = slices.Grow(dst, hl+explicitNonceLen+inner+r.local.Overhead())
	dst = dst[:start+hl+explicitNonceLen]
	h := dst[start:]
	h[0] = ctCID
	h[1], h[2] = 0xfe, 0xfd
	binary.BigEndian.PutUint64(h[3:11], seq64)
	copy(h[11:], r.sendCID)
	binary.BigEndian.PutUint16(h[hl-2:hl], uint16(explicitNonceLen+inner+r.local.Overhead()))
	binary.BigEndian.PutUint64(h[hl:], seq64)
	dst = append(dst, payload...)
	dst = append(dst, ct)
	body := dst[start+hl+explicitNonceLen:]
	out := r.local.Seal(body[:0], r.nonce[:], body, r.setAADCID(seq64, r.sendCID, inner))
	return dst[:start+hl+explicitNonceLen+len(out)]
}

func (r *recordLayer) setAAD(seq64 uint64, ct byte, n int) {
	binary.BigEndian.PutUint64(r.aad[0:8], seq64)
	r.aad[8] = ct
	r.aad[9], r.aad[10] = 0xfe, 0xfd
	binary.BigEndian.PutUint16(r.aad[11:13], uint16(n))
}

// setAADCID is the additional data of a tls12_cid record (RFC 9146 §5):
// seq_num_placeholder, tls12_cid, cid_length, tls12_cid, version, epoch,
// sequence number, cid, length of the DTLSInnerPlaintext.
func (r *recordLayer) setAADCID(seq64 uint64, cid []byte, n int) []byte {
	a := append(r.aadCID[:0], 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ctCID, byte(len(cid)), ctCID, 0xfe, 0xfd)
	a = binary.BigEndian.AppendUint64(a, seq64)
	a = append(a, cid...)
	a = binary.BigEndian.AppendUint16(a, uint16(n))
	r.aadCID = a
	return a
}

// open walks the records of one datagram and returns the plaintext of the
// first application data record that authenticates, appended to dst, and
// the records after it (the caller opens them next); ok is false when
// there is none. A close_notify or fatal alert is an error. Records of
// the handshake (a repeated flight) and anything that does not
// authenticate are skipped. Every record that authenticates is reported
// to seen (when not nil), a sequence number seen before included: a
// device that reuses one is to be found out, not hidden, and a
// byte-identical network duplicate does no harm above (its CoAP message
// is a duplicate too).
func (r *recordLayer) open(dst, datagram []byte, seen func(RecordSeen)) (out []byte, ok bool, rest []byte, err error) {
	for len(datagram) >= recordHeaderLen {
		ct := datagram[0]
		hl := recordHeaderLen
		if ct == ctCID {
			if len(r.recvCID) == 0 {
				// The CID's length is unknown, and so is where this
				// record ends.
				return dst, false, nil, nil
			}
			hl += len(r.recvCID)
			if len(datagram) < hl {
				return dst, false, nil, nil
			}
		}
		n := int(binary.BigEndian.Uint16(datagram[hl-2 : hl]))
		if len(datagram) < hl+n {
			return dst, false, nil, nil
		}
		hdr, rec := datagram[:hl], datagram[hl:hl+n]
		datagram = datagram[hl+n:]
		epoch := binary.BigEndian.Uint16(hdr[3:5])
		seq64 := binary.BigEndian.Uint64(hdr[3:11])
		if epoch != r.epoch || len(rec) < explicitNonceLen+r.remote.Overhead() {
			continue
		}
		switch ct {
		case ctCID:
			if !bytes.Equal(hdr[11:hl-2], r.recvCID) {
				continue
			}
		case ctApplicationData, ctAlert:
			if len(r.recvCID) > 0 {
				// Once a CID is agreed every protected record carries
				// it (RFC 9146 §3), as pion also insists.
				continue
			}
		default:
			continue
		}
		copy(r.nonce[:4], r.remoteIV[:])
		copy(r.nonce[4:], rec[:explicitNonceLen])
		body := rec[explicitNonceLen:]
		plen := len(body) - r.remote.Overhead()
		var aad []byte
		if ct == ctCID {
			aad = r.setAADCID(seq64, r.recvCID, plen)
		} else {
			r.setAAD(seq64, ct, plen)
			aad = r.aad[:]
		}
		pt, err := r.remote.Open(dst, r.nonce[:], body, aad)
		if err != nil {
			continue
		}
		r.opened++
		if seen != nil {
			sum := sha256.Sum256(rec)
			seen(RecordSeen{KeyFP: r.keyFP, Epoch: epoch, Seq: seq64 & (1<<48 - 1), CTHash: binary.BigEndian.Uint64(sum[:8])})
		}
		if ct == ctCID {
			// The real type is the last byte that is not padding.
			i := len(pt) - 1
			for i >= len(dst) && pt[i] == 0 {
				i--
			}
			if i < len(dst) {
				continue
			}
			ct, pt = pt[i], pt[:i]
		}
		switch ct {
		case ctAlert:
			// level 2 is fatal; description 0 is close_notify.
			if len(pt) >= len(dst)+2 && (pt[len(dst)] == 2 || pt[len(dst)+1] == 0) {
				return dst, false, datagram, errDTLSAlert
			}
		case ctApplicationData:
			return pt, true, datagram, nil
		}
	}
	return dst, false, nil, nil
}

// pionSock is the connected socket as the net.PacketConn under pion's DTLS
// client. An ICMP error is a lost datagram, not the end of the session.
// Once the client takes the session over (detach), pion's reader parks
// here until the pion session is closed, and pion's writes are dropped.
type pionSock struct {
	c        *net.UDPConn
	detached atomic.Bool

	// What went through pion, for the handshake's telemetry: UDP payload
	// bytes and datagrams each way.
	sent, recvd, sentN, recvdN atomic.Int64
	// last is the last datagram pion wrote: a request's, while pion keeps
	// the records.
	lastMu sync.Mutex
	last   []byte

	parked   chan struct{} // closed when pion's reader has parked
	park     sync.Once
	stop     chan struct{} // closed by Close
	stopOnce sync.Once
}

var _ net.PacketConn = (*pionSock)(nil)

func newPionSock(c *net.UDPConn) *pionSock {
	return &pionSock{c: c, parked: make(chan struct{}), stop: make(chan struct{})}
}

// detach hands the socket over from pion's reader to the client: it wakes
// the reader out of its blocking read until it has parked. It reports
// false if the reader did not park in time (it then keeps the socket).
func (p *pionSock) detach() bool {
	p.detached.Store(true)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		_ = p.c.SetReadDeadline(past)
		select {
		case <-p.parked:
			return true
		case <-time.After(time.Millisecond):
		}
	}
	p.detached.Store(false)
	return false
}

func (p *pionSock) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		if p.detached.Load() {
			p.park.Do(func() { close(p.parked) })
			<-p.stop
			return 0, nil, net.ErrClosed
		}
		n, err := p.c.Read(b)
		if p.detached.Load() {
			continue // no longer pion's: parks above
		}
		if err != nil && refused(err) {
			continue
		}
		if err == nil {
			p.recvd.Add(int64(n))
			p.recvdN.Add(1)
		}
		return n, p.c.RemoteAddr(), err
	}
}

// counts returns the bytes and datagrams that went through pion so far.
func (p *pionSock) counts() (sent, received, datagrams int) {
	return int(p.sent.Load()), int(p.recvd.Load()), int(p.sentN.Load() + p.recvdN.Load())
}

// lastWrite appends the last datagram pion wrote to dst.
func (p *pionSock) lastWrite(dst []byte) []byte {
	p.lastMu.Lock()
	defer p.lastMu.Unlock()
	return append(dst, p.last...)
}

func (p *pionSock) WriteTo(b []byte, _ net.Addr) (int, error) {
	if p.detached.Load() {
		return len(b), nil
	}
	p.sent.Add(int64(len(b)))
	p.sentN.Add(1)
	p.lastMu.Lock()
	p.last = append(p.last[:0], b...)
	p.lastMu.Unlock()
	n, err := p.c.Write(b)
	if err != nil && refused(err) {
		return len(b), nil
	}
	return n, err
}

// Close ends pion's use of the socket: its reader is woken and returns;
// the socket stays open for the next session (Client.Close closes it).
func (p *pionSock) Close() error {
	p.stopOnce.Do(func() {
		wasDetached := p.detached.Swap(true)
		close(p.stop)
		if !wasDetached {
			// Wake a blocked reader, give it a moment to leave, and clear
			// the deadline for whoever reads next.
			_ = p.c.SetReadDeadline(past)
			select {
			case <-p.parked:
			case <-time.After(50 * time.Millisecond):
			}
			_ = p.c.SetReadDeadline(time.Time{})
		}
	})
	return nil
}

func (p *pionSock) LocalAddr() net.Addr { return p.c.LocalAddr() }

// Deadlines reach the socket only while pion owns it: after the take-over
// they are the client's.
func (p *pionSock) SetDeadline(t time.Time) error {
	if p.detached.Load() {
		return nil
	}
	return p.c.SetDeadline(t)
}

func (p *pionSock) SetReadDeadline(t time.Time) error {
	if p.detached.Load() {
		return nil
	}
	return p.c.SetReadDeadline(t)
}

func (p *pionSock) SetWriteDeadline(t time.Time) error {
	if p.detached.Load() {
		return nil
	}
	return p.c.SetWriteDeadline(t)
}
