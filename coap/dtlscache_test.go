package coap_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

// A recovery bootloader on the bench: one UDP port that outlives its power
// cycles, and a DTLS server on it that a reboot replaces.

var (
	cacheKey = []byte("cache-test-psk-01")
	cacheTx  = coap.Transmission{AckTimeout: 150 * time.Millisecond, MaxRetransmit: 2}
)

// bootloader is the handler: GET /boot answers; GET /snap also keeps the
// session's state (what the device writes to flash); GET /seq keeps the
// sequence number of the request's record (a replay floor).
type bootloader struct {
	mu       sync.Mutex
	calls    map[string]int
	peers    []string
	state    []byte
	stateSeq uint64 // the device's next send number when state was taken
	lastRecv uint64
}

func (d *bootloader) handle(_ context.Context, r *coapsrv.Request) *coapsrv.Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.calls == nil {
		d.calls = make(map[string]int)
	}
	d.calls[r.Path]++
	d.peers = append(d.peers, r.Peer.String())
	switch r.Path {
	case "/snap":
		st, err := r.DTLS.State()
		if err != nil {
			return &coapsrv.Response{Code: codes.InternalServerError, ContentFormat: coapsrv.NoContentFormat}
		}
		d.state, d.stateSeq = st, r.DTLS.NextSendSeq()
	case "/seq":
		d.lastRecv = r.DTLS.LastRecvSeq()
	}
	return &coapsrv.Response{Code: codes.Content, ContentFormat: coapsrv.NoContentFormat, Payload: []byte("app " + strconv.Itoa(d.calls[r.Path]))}
}

func (d *bootloader) count(path string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls[path]
}

// board is the device's port and its current server.
type board struct {
	t    *testing.T
	d    *bootloader
	opts coapsrv.DTLSOptions
	srv  *coapsrv.Server
	addr string
}

func newBoard(t *testing.T, opts coapsrv.DTLSOptions) *board {
	t.Helper()
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b := &board{t: t, d: &bootloader{}, opts: opts, addr: sock.LocalAddr().String()}
	b.serve(sock)
	t.Cleanup(func() {
		_ = b.srv.Close()
	})
	return b
}

func (b *board) serve(sock *net.UDPConn) {
	b.t.Helper()
	srv, err := coapsrv.ServeDTLSWith(sock, func([]byte) ([]byte, error) { return cacheKey, nil }, b.d.handle, coapsrv.Options{}, b.opts)
	if err != nil {
		b.t.Fatal(err)
	}
	b.srv = srv
}

// reboot is a power cycle: the server goes at once, without a word, and a
// new one starts on the same port with nothing but opts (the flash).
func (b *board) reboot(opts coapsrv.DTLSOptions) {
	b.t.Helper()
	sock := b.srv.Detach()
	b.opts = opts
	b.serve(sock)
}

// handshakes is a client's handshake telemetry.
type handshakes struct {
	mu sync.Mutex
	hs []coap.Handshake
}

func (h *handshakes) add(x coap.Handshake) {
	h.mu.Lock()
	h.hs = append(h.hs, x)
	h.mu.Unlock()
}

func (h *handshakes) kinds() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var k []string
	for _, x := range h.hs {
		k = append(k, x.Kind)
	}
	return k
}

// dialCached dials the board with cache and records the client's
// handshakes.
func (b *board) dial(cache *coap.DTLSCache) (*coap.Client, *handshakes) {
	b.t.Helper()
	c, err := coap.Dial(context.Background(), b.addr, &coap.PSK{Identity: "bench", Key: cacheKey, Cache: cache}, cacheTx)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = c.Close() })
	h := &handshakes{}
	c.OnHandshake = h.add
	return c, h
}

func get(t *testing.T, c *coap.Client, path string) *coap.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Get(ctx, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if r.Code != codes.Content {
		t.Fatalf("GET %s: %v", path, r.Code)
	}
	return r
}

func newCache(t *testing.T, mode string) *coap.DTLSCache {
	t.Helper()
	cache, err := coap.NewDTLSCache(mode)
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

func wantKinds(t *testing.T, h *handshakes, want ...string) coap.Handshake {
	t.Helper()
	got := h.kinds()
	if len(got) != len(want) {
		t.Fatalf("handshakes %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("handshakes %q, want %q", got, want)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hs[len(h.hs)-1]
}

func TestNewDTLSCache(t *testing.T) {
	for _, m := range []string{coap.DTLSCacheNone, coap.DTLSCacheSession, coap.DTLSCacheState} {
		c, err := coap.NewDTLSCache(m)
		if err != nil || c.Mode() != m {
			t.Fatalf("%s: %v %v", m, c, err)
		}
	}
	if _, err := coap.NewDTLSCache("flash"); err == nil {
		t.Fatal("mode flash accepted")
	}
}

func TestDTLSCacheNone(t *testing.T) {
	b := newBoard(t, coapsrv.DTLSOptions{})
	cache := newCache(t, coap.DTLSCacheNone)
	c1, h1 := b.dial(cache)
	get(t, c1, "/boot")
	full := wantKinds(t, h1, coap.HandshakeFull)
	_ = c1.Close()
	b.reboot(coapsrv.DTLSOptions{})
	c2, h2 := b.dial(cache)
	get(t, c2, "/boot")
	wantKinds(t, h2, coap.HandshakeFull)
	if full.Sent == 0 || full.Received == 0 || full.Datagrams < 4 || full.Duration <= 0 {
		t.Fatalf("full handshake %+v", full)
	}
	t.Logf("full handshake: %d bytes sent, %d received, %d datagrams, %v", full.Sent, full.Received, full.Datagrams, full.Duration)
}

func TestDTLSCacheSession(t *testing.T) {
	flash := &coapsrv.MemorySessions{}
	b := newBoard(t, coapsrv.DTLSOptions{DTLSSessions: flash})
	cache := newCache(t, coap.DTLSCacheSession)

	c1, h1 := b.dial(cache)
	get(t, c1, "/boot")
	full := wantKinds(t, h1, coap.HandshakeFull)
	_ = c1.Close()
	if flash.Len() != 1 {
		t.Fatalf("device keeps %d sessions", flash.Len())
	}

	// The device kept its sessions across the cut.
	b.reboot(coapsrv.DTLSOptions{DTLSSessions: flash})
	c2, h2 := b.dial(cache)
	get(t, c2, "/boot")
	abbr := wantKinds(t, h2, coap.HandshakeAbbreviated)
	if c2.DTLSRecords() != "client" {
		t.Fatalf("records kept by %q after resumption", c2.DTLSRecords())
	}
	// One flight fewer. Not fewer bytes sent: with a PSK the client's
	// key exchange is a few bytes, less than the session ID it offers
	// twice (before and after the cookie).
	if abbr.Datagrams != full.Datagrams-1 || abbr.Received >= full.Received {
		t.Fatalf("abbreviated %+v against full %+v", abbr, full)
	}
	t.Logf("full handshake: %d bytes sent, %d received, %d datagrams, %v", full.Sent, full.Received, full.Datagrams, full.Duration)
	t.Logf("abbreviated handshake: %d bytes sent, %d received, %d datagrams, %v", abbr.Sent, abbr.Received, abbr.Datagrams, abbr.Duration)
	_ = c2.Close()

	// A device that lost them does a full handshake, and the cache learns
	// the new session.
	b.reboot(coapsrv.DTLSOptions{DTLSSessions: &coapsrv.MemorySessions{}})
	c3, h3 := b.dial(cache)
	get(t, c3, "/boot")
	wantKinds(t, h3, coap.HandshakeFull)
	_ = c3.Close()
	c4, h4 := b.dial(cache)
	get(t, c4, "/boot")
	wantKinds(t, h4, coap.HandshakeAbbreviated)

	// A device without resumption: full, every time.
	b.reboot(coapsrv.DTLSOptions{})
	c5, h5 := b.dial(cache)
	get(t, c5, "/boot")
	wantKinds(t, h5, coap.HandshakeFull)
}

// ledger is a nonce ledger across clients: the ciphertext hash seen per
// (key, epoch, sequence number).
type ledger struct {
	mu     sync.Mutex
	seen   map[coap.RecordSeen]uint64
	reused []coap.RecordSeen
	dups   int
}

func (l *ledger) add(r coap.RecordSeen) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.seen == nil {
		l.seen = make(map[coap.RecordSeen]uint64)
	}
	k := r
	k.CTHash = 0
	if h, ok := l.seen[k]; ok {
		if h != r.CTHash {
			l.reused = append(l.reused, r)
		} else {
			l.dups++
		}
		return
	}
	l.seen[k] = r.CTHash
}

func (l *ledger) snapshot() (n int, reused []coap.RecordSeen) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen), append([]coap.RecordSeen(nil), l.reused...)
}

// stateBoard runs a first session with CIDs up to the state the device
// keeps (GET /snap) and one more request (GET /seq), closes the client,
// and cuts the power. It returns the cache, the device's state and the
// datagram of the last request.
func stateBoard(t *testing.T, l *ledger) (b *board, cache *coap.DTLSCache, lastReq []byte, oldPeer string) {
	t.Helper()
	b = newBoard(t, coapsrv.DTLSOptions{DTLSCID: true})
	cache = newCache(t, coap.DTLSCacheState)
	c1, h1 := b.dial(cache)
	if l != nil {
		c1.OnRecord = l.add
	}
	get(t, c1, "/snap")
	get(t, c1, "/seq")
	full := wantKinds(t, h1, coap.HandshakeFull)
	t.Logf("full handshake with a CID: %d bytes sent, %d received, %d datagrams, %v", full.Sent, full.Received, full.Datagrams, full.Duration)
	if c1.DTLSRecords() != "client" {
		t.Fatalf("records kept by %q with CIDs", c1.DTLSRecords())
	}
	lastReq = c1.LastRequestDatagram()
	if len(lastReq) == 0 || lastReq[0] != 25 {
		t.Fatalf("last request datagram % x: not a tls12_cid record", lastReq)
	}
	b.d.mu.Lock()
	oldPeer = b.d.peers[len(b.d.peers)-1]
	b.d.mu.Unlock()
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	return b, cache, lastReq, oldPeer
}

func (b *board) restore(sendSeq func(stateSeq uint64) uint64, floor bool) {
	b.t.Helper()
	b.reboot(coapsrv.DTLSOptions{DTLSCID: true})
	b.d.mu.Lock()
	st, seq, last := b.d.state, b.d.stateSeq, b.d.lastRecv
	b.d.mu.Unlock()
	if !floor {
		last = 0
	}
	if err := b.srv.RestoreDTLS(st, sendSeq(seq), last); err != nil {
		b.t.Fatalf("RestoreDTLS: %v", err)
	}
}

func safeSeq(seq uint64) uint64 { return seq + 1000 }

func TestDTLSCacheState(t *testing.T) {
	b, cache, _, oldPeer := stateBoard(t, nil)
	b.restore(safeSeq, true)

	c2, h2 := b.dial(cache)
	get(t, c2, "/boot")
	none := wantKinds(t, h2, coap.HandshakeNone)
	if none != (coap.Handshake{Kind: coap.HandshakeNone}) {
		t.Fatalf("continued session telemetry %+v", none)
	}
	if c2.DTLSRecords() != "client" {
		t.Fatalf("records kept by %q", c2.DTLSRecords())
	}
	b.d.mu.Lock()
	newPeer := b.d.peers[len(b.d.peers)-1]
	b.d.mu.Unlock()
	if newPeer == oldPeer {
		t.Fatalf("the continued session came from the same address %s: CID routing not shown", newPeer)
	}
	get(t, c2, "/boot")
	_ = c2.Close()

	// The cache kept the continued session (the device answered it): a
	// device that kept it still is reached with no handshake again.
	c3, h3 := b.dial(cache)
	get(t, c3, "/boot")
	wantKinds(t, h3, coap.HandshakeNone)
	_ = c3.Close()

	// A device that lost its state answers nothing: that client fails,
	// its session is not kept, and the next one does a full handshake.
	b.reboot(coapsrv.DTLSOptions{DTLSCID: true})
	c4, h4 := b.dial(cache)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c4.Get(ctx, "/boot"); !errors.Is(err, coap.ErrNoResponse) {
		t.Fatalf("GET on a lost session: %v, want no response", err)
	}
	wantKinds(t, h4, coap.HandshakeNone)
	_ = c4.Close()
	c5, h5 := b.dial(cache)
	get(t, c5, "/boot")
	wantKinds(t, h5, coap.HandshakeFull)
}

// TestDTLSStateLiveSession: with no reboot at all, the next client
// continues the session the device still has from a new port. Had the
// closed client sent close_notify, the session would be gone.
func TestDTLSStateLiveSession(t *testing.T) {
	b := newBoard(t, coapsrv.DTLSOptions{DTLSCID: true})
	cache := newCache(t, coap.DTLSCacheState)
	for i, want := range []string{coap.HandshakeFull, coap.HandshakeNone, coap.HandshakeNone} {
		c, h := b.dial(cache)
		get(t, c, "/boot")
		get(t, c, "/boot")
		wantKinds(t, h, want)
		_ = c.Close()
		if b.d.count("/boot") != 2*(i+1) {
			t.Fatalf("%d requests handled", b.d.count("/boot"))
		}
	}
}

// TestDTLSStateNonceReuse: a device that restores its send sequence number
// as it was sends a second record under a (key, epoch, seq) it used before
// the cut. The bench sees it, with another ciphertext, and the request
// still completes.
func TestDTLSStateNonceReuse(t *testing.T) {
	l := &ledger{}
	b, cache, _, _ := stateBoard(t, l)
	n, reused := l.snapshot()
	// At least one record per answer (more if a retransmission was
	// answered again under a race detector's load).
	if n < 2 || len(reused) != 0 {
		t.Fatalf("before the cut: %d records, %d reused", n, len(reused))
	}
	b.restore(func(seq uint64) uint64 { return seq }, true)

	c2, _ := b.dial(cache)
	c2.OnRecord = l.add
	r := get(t, c2, "/boot")
	if !bytes.HasPrefix(r.Payload, []byte("app ")) {
		t.Fatalf("payload %q", r.Payload)
	}
	_, reused = l.snapshot()
	if len(reused) == 0 {
		t.Fatal("no reuse seen")
	}
	b.d.mu.Lock()
	seq := b.d.stateSeq
	b.d.mu.Unlock()
	if reused[0].Seq != seq || reused[0].Epoch != 1 {
		t.Fatalf("reuse at %+v, want epoch 1 seq %d", reused[0], seq)
	}
	// And the safe device reuses nothing.
	l2 := &ledger{}
	b2, cache2, _, _ := stateBoard(t, l2)
	b2.restore(safeSeq, true)
	c3, _ := b2.dial(cache2)
	c3.OnRecord = l2.add
	get(t, c3, "/boot")
	get(t, c3, "/boot")
	if n, reused := l2.snapshot(); n < 4 || len(reused) != 0 {
		t.Fatalf("safe device: %d records, %d reused", n, len(reused))
	}
}

// TestDTLSStateReplay: the last request from before the cut, replayed as
// it went on the wire, is dropped by a device with a replay floor and
// answered by one without.
func TestDTLSStateReplay(t *testing.T) {
	for _, floor := range []bool{true, false} {
		t.Run("floor="+strconv.FormatBool(floor), func(t *testing.T) {
			b, cache, replay, _ := stateBoard(t, nil)
			b.restore(safeSeq, floor)
			c2, _ := b.dial(cache)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c2.SendRaw(ctx, replay, 300*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if floor {
				if resp != nil || b.d.count("/seq") != 1 {
					t.Fatalf("replay answered (% x), /seq handled %d times", resp, b.d.count("/seq"))
				}
			} else {
				m := message.Message{Options: make(message.Options, 0, 8)}
				if _, err := coder.DefaultCoder.Decode(resp, &m); err != nil || m.Code != codes.Content || !bytes.Equal(m.Payload, []byte("app 2")) {
					t.Fatalf("replay answer % x: %v %v", resp, m.Code, err)
				}
				if b.d.count("/seq") != 2 {
					t.Fatalf("/seq handled %d times", b.d.count("/seq"))
				}
			}
			// The session goes on either way.
			get(t, c2, "/boot")
		})
	}
}

// TestSendRawOldSession: a record of a session the device no longer has
// is not answered, over a new full handshake.
func TestSendRawOldSession(t *testing.T) {
	b := newBoard(t, coapsrv.DTLSOptions{})
	cache := newCache(t, coap.DTLSCacheNone)
	c1, _ := b.dial(cache)
	get(t, c1, "/boot")
	replay := c1.LastRequestDatagram()
	_ = c1.Close()
	b.reboot(coapsrv.DTLSOptions{})
	c2, h2 := b.dial(cache)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c2.SendRaw(ctx, replay, 200*time.Millisecond)
	if err != nil || resp != nil {
		t.Fatalf("old record: % x %v", resp, err)
	}
	wantKinds(t, h2, coap.HandshakeFull)
	if b.d.count("/boot") != 1 {
		t.Fatalf("/boot handled %d times", b.d.count("/boot"))
	}
}

// TestSendRawUDP: over plain UDP the datagram is the CoAP message.
func TestSendRawUDP(t *testing.T) {
	_, srv := listenSink(t)
	c := dial(t, srv.Addr().String(), nil, fastTx)
	if c.LastRequestDatagram() != nil {
		t.Fatal("a request datagram before any request")
	}
	ctx := context.Background()
	if _, err := c.Get(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	req := c.LastRequestDatagram()
	resp, err := c.SendRaw(ctx, req, time.Second)
	if err != nil || len(resp) < 4 || resp[1] != byte(codes.Content) || !bytes.Equal(resp[2:4], req[2:4]) {
		t.Fatalf("raw answer % x %v to % x", resp, err, req)
	}
}

// TestStateCloseDuringExchange: closing a state-mode client while its
// request waits (a handshake with a silent device, or a continued session
// the device lost) ends the request at once, and Close returns soon too.
func TestStateCloseDuringExchange(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	slow := coap.Transmission{AckTimeout: 20 * time.Second, MaxRetransmit: 4}
	for _, continued := range []bool{false, true} {
		t.Run("continued="+strconv.FormatBool(continued), func(t *testing.T) {
			cache := newCache(t, coap.DTLSCacheState)
			addr := silent.LocalAddr().String()
			if continued {
				b := newBoard(t, coapsrv.DTLSOptions{DTLSCID: true})
				c0, _ := b.dial(cache)
				get(t, c0, "/boot")
				_ = c0.Close()
				b.reboot(coapsrv.DTLSOptions{DTLSCID: true})
				addr = b.addr
			}
			c, err := coap.Dial(context.Background(), addr, &coap.PSK{Identity: "bench", Key: cacheKey, Cache: cache}, slow)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := c.Get(context.Background(), "/boot")
				done <- err
			}()
			time.Sleep(100 * time.Millisecond)
			start := time.Now()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Fatalf("Close took %v", took)
			}
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("request succeeded")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("request did not end on close")
			}
		})
	}
}
