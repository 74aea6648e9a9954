package coapsrv

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// sessionProbe is a handler that keeps what Request.DTLS tells.
type sessionProbe struct {
	mu       sync.Mutex
	nilDTLS  int
	ids      [][]byte
	sessOK   []bool
	sendSeqs []uint64
	recvSeqs []uint64
	states   [][]byte
}

func (p *sessionProbe) handle(_ context.Context, r *Request) *Response {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.DTLS == nil {
		p.nilDTLS++
		return &Response{Code: codes.Content, ContentFormat: NoContentFormat}
	}
	st, err := r.DTLS.State()
	if err != nil {
		return &Response{Code: codes.InternalServerError, ContentFormat: NoContentFormat}
	}
	_, ok := r.DTLS.Session()
	p.ids = append(p.ids, r.DTLS.SessionID())
	p.sessOK = append(p.sessOK, ok)
	p.sendSeqs = append(p.sendSeqs, r.DTLS.NextSendSeq())
	p.recvSeqs = append(p.recvSeqs, r.DTLS.LastRecvSeq())
	p.states = append(p.states, st)
	return &Response{Code: codes.Content, ContentFormat: NoContentFormat, Payload: []byte("ok")}
}

// pionClient handshakes a pion DTLS client with s from a socket of its
// own; cid asks for a connection ID.
func pionClient(t *testing.T, s *Server, cid bool) (*piondtls.Conn, *net.UDPConn) {
	t.Helper()
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = uc.Close() })
	opts := clientDTLSOptions(testKey, piondtls.TLS_PSK_WITH_AES_128_CCM_8)
	if cid {
		opts = append(opts, piondtls.WithConnectionIDGenerator(piondtls.OnlySendCIDGenerator()))
	}
	c, err := piondtls.ClientWithOptions(uc, s.Addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c, uc
}

// ask sends a confirmable GET over c and returns the answer's payload.
func ask(t *testing.T, c *piondtls.Conn, mid uint16) []byte {
	t.Helper()
	if _, err := c.Write(encode(t, message.Confirmable, codes.GET, mid, []byte{byte(mid)}, "/x", nil)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("answer to %d: %v", mid, err)
	}
	return decodeMsg(t, buf[:n]).Payload
}

func TestRequestDTLSSession(t *testing.T) {
	p := &sessionProbe{}
	s, err := ListenDTLSWith("127.0.0.1:0", testPSK, p.handle, Options{}, DTLSOptions{DTLSSessions: &MemorySessions{}, DTLSCID: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, _ := pionClient(t, s, true)
	for mid := uint16(1); mid <= 3; mid++ {
		if got := ask(t, c, mid); string(got) != "ok" {
			t.Fatalf("answer %q", got)
		}
	}
	p.mu.Lock()
	for i := range 3 {
		if len(p.ids[i]) != 32 || !bytes.Equal(p.ids[i], p.ids[0]) || !p.sessOK[i] {
			t.Fatalf("request %d: session ID %x, in the cache %v", i, p.ids[i], p.sessOK[i])
		}
		if i > 0 && (p.sendSeqs[i] != p.sendSeqs[i-1]+1 || p.recvSeqs[i] != p.recvSeqs[i-1]+1) {
			t.Fatalf("send %v and receive %v sequence numbers: one record each way per request", p.sendSeqs, p.recvSeqs)
		}
		if seq, err := StateSendSeq(p.states[i]); err != nil || seq != p.sendSeqs[i] {
			t.Fatalf("state's send number %d %v, want %d", seq, err, p.sendSeqs[i])
		}
	}
	// The client's Finished is record 0 of epoch 1.
	if p.recvSeqs[0] != 1 {
		t.Fatalf("first request in record %d of epoch 1, want 1", p.recvSeqs[0])
	}
	p.mu.Unlock()

	// Over plain UDP there is no session.
	u := listenUDPOrSkip(t, "127.0.0.1:0", p.handle, Options{})
	if roundTrip(t, rawConn(t, u), encode(t, message.Confirmable, codes.GET, 9, nil, "/x", nil), time.Second) == nil {
		t.Fatal("no answer over plain UDP")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nilDTLS != 1 {
		t.Fatalf("plain UDP: DTLS nil %d times", p.nilDTLS)
	}
}

// TestStatePatchKeepsEverything: patching the send number in a marshalled
// state keeps every other field pion serialises. A pion upgrade that adds
// a field the mirror lacks fails here.
func TestStatePatchKeepsEverything(t *testing.T) {
	p := &sessionProbe{}
	s, err := ListenDTLSWith("127.0.0.1:0", testPSK, p.handle, Options{}, DTLSOptions{DTLSSessions: &MemorySessions{}, DTLSCID: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, _ := pionClient(t, s, true)
	ask(t, c, 1)
	p.mu.Lock()
	a := p.states[0]
	p.mu.Unlock()
	seq, err := StateSendSeq(a)
	if err != nil {
		t.Fatal(err)
	}
	b, err := SetStateSendSeq(a, seq)
	if err != nil {
		t.Fatal(err)
	}
	var st piondtls.State
	if err := st.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	c2, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, c2) {
		t.Fatal("a state patched with its own send number is not the state pion marshalled")
	}
	d, err := SetStateSendSeq(a, 7777)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := StateSendSeq(d); got != 7777 {
		t.Fatalf("patched send number reads %d", got)
	}
	if _, err := SetStateSendSeq(a, 1<<48); err == nil {
		t.Fatal("a 49-bit sequence number accepted")
	}
	if _, err := StateSendSeq([]byte("not gob")); err == nil {
		t.Fatal("garbage read as a state")
	}
}

func TestRestoreDTLSErrors(t *testing.T) {
	p := &sessionProbe{}
	plain, err := ListenDTLS("127.0.0.1:0", testPSK, p.handle, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = plain.Close() })
	c, _ := pionClient(t, plain, false)
	ask(t, c, 1)
	withCID, err := ListenDTLSWith("127.0.0.1:0", testPSK, p.handle, Options{}, DTLSOptions{DTLSCID: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = withCID.Close() })
	c2, _ := pionClient(t, withCID, true)
	ask(t, c2, 1)
	p.mu.Lock()
	noCID, good := p.states[0], p.states[1]
	p.mu.Unlock()
	u := listenUDPOrSkip(t, "127.0.0.1:0", p.handle, Options{})

	tests := []struct {
		name  string
		s     *Server
		state []byte
		seq   uint64
	}{
		{"plain UDP server", u, good, 0},
		{"server without CIDs", plain, good, 0},
		{"garbage", withCID, []byte{1, 2, 3}, 0},
		{"session without a CID", withCID, noCID, 0},
		{"sequence number too big", withCID, good, 1 << 48},
		{"CID in use", withCID, good, 100},
	}
	for _, tt := range tests {
		if err := tt.s.RestoreDTLS(tt.state, tt.seq, 0); err == nil {
			t.Errorf("%s: restored", tt.name)
		}
	}
	// The live session still answers: the refused restores took nothing.
	if got := ask(t, c2, 2); string(got) != "ok" {
		t.Fatalf("live session: %q", got)
	}
}

// cidRecord is a record header of content type 25 with cid, epoch and seq
// and a body of n bytes.
func cidRecord(cid []byte, epoch uint16, seq uint64, n int) []byte {
	b := []byte{contentTypeCID, 0xfe, 0xfd}
	b = binary.BigEndian.AppendUint64(b, uint64(epoch)<<48|seq)
	b = append(b, cid...)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	return append(b, bytes.Repeat([]byte{byte(seq)}, n)...)
}

func plainRecord(ct byte, epoch uint16, seq uint64, n int) []byte {
	b := []byte{ct, 0xfe, 0xfd}
	b = binary.BigEndian.AppendUint64(b, uint64(epoch)<<48|seq)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	return append(b, bytes.Repeat([]byte{byte(seq)}, n)...)
}

func TestDropAtOrBelow(t *testing.T) {
	cid := []byte("12345678")
	r := func(seq uint64) []byte { return cidRecord(cid, 1, seq, 20) }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	tests := []struct {
		name    string
		in, out []byte
	}{
		{"above", r(11), r(11)},
		{"at", r(10), nil},
		{"below", r(3), nil},
		{"mixed", cat(r(9), r(12), r(10), r(13)), cat(r(12), r(13))},
		{"other epoch", cidRecord(cid, 2, 5, 20), cidRecord(cid, 2, 5, 20)},
		{"plain record below", cat(plainRecord(23, 1, 4, 30), r(11)), r(11)},
		{"handshake epoch 0", plainRecord(22, 0, 1, 30), plainRecord(22, 0, 1, 30)},
		{"trailing bytes kept", cat(r(2), r(20), []byte{25, 1}), cat(r(20), []byte{25, 1})},
		{"truncated", r(3)[:15], r(3)[:15]},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		in := bytes.Clone(tt.in)
		if got := dropAtOrBelow(in, len(cid), 1, 10); !bytes.Equal(got, tt.out) {
			t.Errorf("%s: got % x, want % x", tt.name, got, tt.out)
		}
		if !bytes.Equal(in, tt.in) {
			t.Errorf("%s: input changed", tt.name)
		}
	}
}

// FuzzCIDRecord feeds arbitrary datagrams to the demultiplexer's CID path:
// a datagram reaches a session only by a whole record carrying its CID,
// and nothing at or under a restored session's floor gets through.
func FuzzCIDRecord(f *testing.F) {
	cid := []byte("ABCDEFGH")
	f.Add(cidRecord(cid, 1, 11, 30))
	f.Add(cidRecord(cid, 1, 3, 30))
	f.Add(append(cidRecord(cid, 1, 12, 3), cidRecord(cid, 1, 2, 5)...))
	f.Add(append(cidRecord(cid, 1, 12, 3), plainRecord(23, 1, 1, 4)...))
	f.Add(cidRecord([]byte("ABCDEFGX"), 1, 11, 30))
	f.Add([]byte{25, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 'A', 'B'})
	f.Add([]byte{})

	s, err := newServer((&device{}).handle, Options{})
	if err != nil {
		f.Fatal(err)
	}
	e := &dtlsEndpoint{s: s, opts: DTLSOptions{DTLSCID: true}, peers: map[netip.AddrPort]*dtlsPeer{}, cids: map[string]*dtlsPeer{}, all: map[*dtlsPeer]struct{}{}}
	p := e.newPeerLocked(netip.AddrPort{})
	p.cid, p.floorSet, p.floorEpoch = string(cid), true, 1
	p.floor.Store(10)
	e.cids[p.cid] = p
	from := netip.MustParseAddrPort("127.0.0.1:5000")

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != contentTypeCID {
			return // the address path starts sessions: not this target's
		}
		in := bytes.Clone(data)
		var (
			got *dtlsPeer
			d   []byte
		)
		// Bounded: routing reads the record in place: 4 KiB and
		// alloccheck.FuzzSlack, nothing a byte.
		alloccheck.Bound(t, "route", len(in), 0, 4<<10+alloccheck.FuzzSlack, func() { got, d = e.route(from, in) })
		if !bytes.Equal(in, data) {
			t.Fatal("datagram changed")
		}
		if got == nil {
			if d != nil {
				t.Fatal("bytes for no session")
			}
			return
		}
		if c, ok := recordCID(data, cidLen); !ok || !bytes.Equal(c, cid) {
			t.Fatalf("routed % x without the session's CID", data)
		}
		for rest := d; len(rest) >= recordHeaderLen; {
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
			if binary.BigEndian.Uint16(rest[3:5]) == 1 && binary.BigEndian.Uint64(rest[3:11])&(1<<48-1) <= 10 {
				t.Fatalf("record at or under the floor let through: % x", d)
			}
			rest = rest[end:]
		}
		if len(d) > len(data) {
			t.Fatalf("%d bytes out of %d", len(d), len(data))
		}
	})
}

// TestLibcoapDTLSWithCID: libcoap's clients, which offer no connection
// ID (OpenSSL 3) and do not resume, still get a session from a server
// that offers CIDs and keeps sessions.
func TestLibcoapDTLSWithCID(t *testing.T) {
	for _, prog := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		t.Run(prog, func(t *testing.T) {
			needProgram(t, prog)
			d := &device{}
			flash := &MemorySessions{}
			s, err := ListenDTLSWith("127.0.0.1:0", testPSK, d.handle, Options{}, DTLSOptions{DTLSSessions: flash, DTLSCID: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = s.Close() })
			for range 2 {
				out := runCoapClient(t, prog, "-k", string(testKey), "-u", string(testIdentity),
					"-m", "get", fmt.Sprintf("coaps://%s/boot", s.Addr()))
				if !bytes.Contains(out, bootPayload) {
					t.Fatalf("%s printed % x, want % x", prog, out, bootPayload)
				}
			}
			if calls, _, _, _ := d.snapshot(); calls != 2 {
				t.Fatalf("%d requests handled", calls)
			}
		})
	}
}
