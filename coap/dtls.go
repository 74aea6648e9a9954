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
// handled; connection IDs are not negotiated.

const (
	ctAlert           = 21
	ctHandshake       = 22
	ctApplicationData = 23
	recordHeaderLen   = 13
	explicitNonceLen  = 8
)

// errDTLSAlert ends an exchange when the device sent a fatal alert or
// close_notify: its session is gone.
var errDTLSAlert = errors.New("dtls: the device closed the session")

// recordLayer seals and opens DTLS 1.2 records of epoch 1 onwards.
type recordLayer struct {
	local, remote     cipher.AEAD
	localIV, remoteIV [4]byte
	epoch             uint16
	seq               uint64 // next sequence number to send
	nonce             [12]byte
	aad               [13]byte
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

	LocalConnectionID  []byte
	RemoteConnectionID []byte
}

// newRecordLayer takes over the session of a handshaken client conn.
func newRecordLayer(dc *piondtls.Conn) (*recordLayer, error) {
	st, ok := dc.ConnectionState()
	if !ok {
		return nil, errors.New("dtls: no session state")
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("dtls: session state: %w", err)
	}
	var ps pionState
	if err := gob.NewDecoder(bytes.NewReader(raw)).Decode(&ps); err != nil {
		return nil, fmt.Errorf("dtls: session state: %w", err)
	}
	if !ps.IsClient || ps.LocalEpoch == 0 || len(ps.MasterSecret) == 0 || len(ps.LocalConnectionID) > 0 || len(ps.RemoteConnectionID) > 0 {
		return nil, errors.New("dtls: unexpected session state")
	}
	keys, err := prf.GenerateEncryptionKeys(ps.MasterSecret, ps.LocalRandom[:], ps.RemoteRandom[:], 0, 16, 4, sha256.New)
	if err != nil {
		return nil, fmt.Errorf("dtls: keys: %w", err)
	}
	mk := func(key []byte) (cipher.AEAD, error) {
		blk, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		switch piondtls.CipherSuiteID(ps.CipherSuiteID) {
		case piondtls.TLS_PSK_WITH_AES_128_CCM_8:
			return ccm.NewCCM(blk, 8, 12)
		case piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256:
			return cipher.NewGCM(blk)
		}
		return nil, fmt.Errorf("dtls: cipher suite %#04x not handled", ps.CipherSuiteID)
	}
	rl := &recordLayer{epoch: ps.LocalEpoch, seq: ps.SequenceNumber}
	if rl.local, err = mk(keys.ClientWriteKey); err != nil {
		return nil, err
	}
	if rl.remote, err = mk(keys.ServerWriteKey); err != nil {
		return nil, err
	}
	copy(rl.localIV[:], keys.ClientWriteIV)
	copy(rl.remoteIV[:], keys.ServerWriteIV)
	return rl, nil
}

// seal appends a record of content type ct carrying payload to dst.
func (r *recordLayer) seal(dst []byte, ct byte, payload []byte) []byte {
	seq64 := uint64(r.epoch)<<48 | r.seq&(1<<48-1)
	r.seq++
	var hdr [recordHeaderLen + explicitNonceLen]byte
	hdr[0] = ct
	hdr[1], hdr[2] = 0xfe, 0xfd // DTLS 1.2
	binary.BigEndian.PutUint64(hdr[3:11], seq64)
	binary.BigEndian.PutUint16(hdr[11:13], uint16(explicitNonceLen+len(payload)+r.local.Overhead()))
	binary.BigEndian.PutUint64(hdr[13:21], seq64)
	copy(r.nonce[:4], r.localIV[:])
	binary.BigEndian.PutUint64(r.nonce[4:], seq64)
	r.setAAD(seq64, ct, len(payload))
	dst = append(dst, hdr[:]...)
	return r.local.Seal(dst, r.nonce[:], payload, r.aad[:])
}

func (r *recordLayer) setAAD(seq64 uint64, ct byte, n int) {
	binary.BigEndian.PutUint64(r.aad[0:8], seq64)
	r.aad[8] = ct
	r.aad[9], r.aad[10] = 0xfe, 0xfd
	binary.BigEndian.PutUint16(r.aad[11:13], uint16(n))
}

// open walks the records of one datagram and returns the plaintext of the
// first application data record that authenticates, appended to dst; ok
// is false when there is none. A close_notify or fatal alert is an error.
// Records of the handshake (a repeated flight) and anything that does not
// authenticate are skipped.
func (r *recordLayer) open(dst, datagram []byte) (out []byte, ok bool, err error) {
	for len(datagram) >= recordHeaderLen {
		ct := datagram[0]
		n := int(binary.BigEndian.Uint16(datagram[11:13]))
		if len(datagram) < recordHeaderLen+n {
			return dst, false, nil
		}
		rec := datagram[recordHeaderLen : recordHeaderLen+n]
		epoch := binary.BigEndian.Uint16(datagram[3:5])
		seq64 := binary.BigEndian.Uint64(datagram[3:11])
		datagram = datagram[recordHeaderLen+n:]
		if (ct != ctApplicationData && ct != ctAlert) || epoch != r.epoch || len(rec) < explicitNonceLen+r.remote.Overhead() {
			continue
		}
		copy(r.nonce[:4], r.remoteIV[:])
		copy(r.nonce[4:], rec[:explicitNonceLen])
		ct2 := rec[explicitNonceLen:]
		r.setAAD(seq64, ct, len(ct2)-r.remote.Overhead())
		pt, err := r.remote.Open(dst, r.nonce[:], ct2, r.aad[:])
		if err != nil {
			continue
		}
		if ct == ctAlert {
			// level 2 is fatal; description 0 is close_notify.
			if len(pt) >= len(dst)+2 && (pt[len(dst)] == 2 || pt[len(dst)+1] == 0) {
				return dst, false, errDTLSAlert
			}
			continue
		}
		return pt, true, nil
	}
	return dst, false, nil
}

// pionSock is the connected socket as the net.PacketConn under pion's DTLS
// client. An ICMP error is a lost datagram, not the end of the session.
// Once the client takes the session over (detach), pion's reader parks
// here until the pion session is closed, and pion's writes are dropped.
type pionSock struct {
	c        *net.UDPConn
	detached atomic.Bool
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
		return n, p.c.RemoteAddr(), err
	}
}

func (p *pionSock) WriteTo(b []byte, _ net.Addr) (int, error) {
	if p.detached.Load() {
		return len(b), nil
	}
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
