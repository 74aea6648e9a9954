package coap_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

var fastTx = coap.Transmission{AckTimeout: 100 * time.Millisecond, MaxRetransmit: 3}

// uploadSink is a CoAP server that takes a Block1 PUT upload, as a device
// would, and keeps the bytes.
type uploadSink struct {
	mu    sync.Mutex
	data  []byte
	done  bool
	calls atomic.Int64
}

func (u *uploadSink) handle(_ context.Context, r *coapsrv.Request) *coapsrv.Response {
	u.calls.Add(1)
	if r.Code == codes.GET {
		return &coapsrv.Response{Code: codes.Content, ContentFormat: coapsrv.NoContentFormat, Payload: []byte("ok")}
	}
	b, ok := r.Block1()
	if !ok {
		return &coapsrv.Response{Code: codes.BadRequest, ContentFormat: coapsrv.NoContentFormat}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if off := int(b.Num) * b.Size(); off != len(u.data) {
		return &coapsrv.Response{Code: codes.RequestEntityIncomplete, ContentFormat: coapsrv.NoContentFormat}
	}
	u.data = append(u.data, r.Payload...)
	if b.More {
		return &coapsrv.Response{Code: codes.Continue, Block1: &b}
	}
	u.done = true
	return &coapsrv.Response{Code: codes.Changed, Block1: &b}
}

func (u *uploadSink) bytes() []byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]byte(nil), u.data...)
}

func listenSink(t testing.TB) (*uploadSink, *coapsrv.Server) {
	t.Helper()
	u := &uploadSink{}
	srv, err := coapsrv.ListenUDP("127.0.0.1:0", u.handle, coapsrv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return u, srv
}

func randomBytes(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// upload sends img in blocks of 16<<szx to path with the block1 profile.
func upload(ctx context.Context, c *coap.Client, path string, img []byte, szx uint8) (retransmits int, err error) {
	n := fwproto.Blocks(uint32(len(img)), szx)
	for num := uint32(0); num < n; num++ {
		r, err := c.SendBlock(ctx, path, img, num, szx, nil)
		if err != nil {
			return retransmits, err
		}
		retransmits += r.Retransmits
	}
	return retransmits, nil
}

func dial(t testing.TB, addr string, psk *coap.PSK, tx coap.Transmission) *coap.Client {
	t.Helper()
	c, err := coap.Dial(context.Background(), addr, psk, tx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestSimBoard runs the update protocol's reads and a block1 upload
// against a simulated board over UDP and DTLS-PSK.
func TestSimBoard(t *testing.T) {
	sb, err := sim.New(sim.Config{Name: "transport-sim", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	base, err := fwimage.Build(fwimage.Spec{Version: "1.0.0", Seq: 1, Size: 4096, Seed: 1}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.FactoryProgram(base); err != nil {
		t.Fatal(err)
	}
	sb.SetPower(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sb.WaitMode(ctx, sim.ModeApp); err != nil {
		t.Fatal(err)
	}
	udp, dtls := sb.Endpoints()
	for _, tc := range []struct {
		name string
		addr string
		psk  *coap.PSK
	}{
		{"udp", udp[0], nil},
		{"dtls", dtls, &coap.PSK{Identity: "fudbench", Key: sim.DevPSK}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fwclient.New(dial(t, tc.addr, tc.psk, fastTx))
			boot, err := c.Boot(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if boot.Mode != fwproto.ModeApp {
				t.Fatalf("boot mode %q, want app", boot.Mode)
			}
			v, err := c.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if v.Version != "1.0.0" || len(v.Digest) == 0 {
				t.Fatalf("version %+v", v)
			}
			// A block for a resource the app does not have is a status,
			// not a transport error.
			_, err = c.SendBlock(ctx, "/no/such", []byte("x"), 0, 6, nil)
			var se *coap.StatusError
			if !errors.As(err, &se) || se.Code != codes.NotFound {
				t.Fatalf("PUT /no/such: %v, want a 4.04 StatusError", err)
			}
		})
	}
}

// TestUploadUDPAndDTLS uploads to a coapsrv endpoint over both transports
// and compares the bytes it took.
func TestUploadUDPAndDTLS(t *testing.T) {
	img := randomBytes(100_000, 1)
	key := []byte("upload-key")
	for _, dtls := range []bool{false, true} {
		u := &uploadSink{}
		var srv *coapsrv.Server
		var err error
		var psk *coap.PSK
		if dtls {
			psk = &coap.PSK{Identity: "bench", Key: key}
			srv, err = coapsrv.ListenDTLS("127.0.0.1:0", func(id []byte) ([]byte, error) {
				if string(id) != "bench" {
					return nil, errors.New("unknown identity")
				}
				return key, nil
			}, u.handle, coapsrv.Options{})
		} else {
			srv, err = coapsrv.ListenUDP("127.0.0.1:0", u.handle, coapsrv.Options{})
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
		c := dial(t, srv.Addr().String(), psk, fastTx)
		if _, err := upload(context.Background(), c, "/up", img, 6); err != nil {
			t.Fatalf("dtls %v: %v", dtls, err)
		}
		if !bytes.Equal(u.bytes(), img) {
			t.Fatalf("dtls %v: server took %d bytes, not the %d sent", dtls, len(u.bytes()), len(img))
		}
		// The fast record path must be the one in use: a pion upgrade
		// that changes its session state falls back silently otherwise.
		if want := map[bool]string{false: "", true: "client"}[dtls]; c.DTLSRecords() != want {
			t.Errorf("dtls %v: records sealed by %q, want %q", dtls, c.DTLSRecords(), want)
		}
	}
}

// lossyProxy relays datagrams between one client and server and drops the
// first copy of every datagram for which drop returns true.
type lossyProxy struct {
	conn    *net.UDPConn
	server  *net.UDPAddr
	drop    func(toServer bool, data []byte) bool
	dropped atomic.Int64
}

func startProxy(t *testing.T, server net.Addr, drop func(toServer bool, data []byte) bool) *lossyProxy {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, server.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	p := &lossyProxy{conn: conn, server: server.(*net.UDPAddr), drop: drop}
	t.Cleanup(func() { conn.Close(); up.Close() })
	var client atomic.Pointer[net.UDPAddr]
	seen := map[string]bool{}
	var mu sync.Mutex
	pass := func(toServer bool, b []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		k := string(rune('0'+boolInt(toServer))) + string(b)
		if !seen[k] && p.drop(toServer, b) {
			seen[k] = true
			p.dropped.Add(1)
			return false
		}
		seen[k] = true
		return true
	}
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			client.Store(from)
			if pass(true, buf[:n]) {
				up.Write(buf[:n])
			}
		}
	}()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if to := client.Load(); to != nil && pass(false, buf[:n]) {
				conn.WriteToUDP(buf[:n], to)
			}
		}
	}()
	return p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestLossyPath drops the first copy of some requests and of some
// responses: the client retransmits, the server's reply cache answers
// the copies it already handled, and the upload lands whole.
func TestLossyPath(t *testing.T) {
	u, srv := listenSink(t)
	p := startProxy(t, srv.Addr(), func(toServer bool, b []byte) bool {
		if len(b) < 4 {
			return false
		}
		mid := binary.BigEndian.Uint16(b[2:4])
		if toServer {
			return mid%5 == 0
		}
		return mid%7 == 3
	})
	c := dial(t, p.conn.LocalAddr().String(), nil, coap.Transmission{AckTimeout: 20 * time.Millisecond, MaxRetransmit: 4})
	var hook atomic.Int64
	c.OnRetransmit = func(int) { hook.Add(1) }
	img := randomBytes(40*256, 2)
	rt, err := upload(context.Background(), c, "/up", img, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(u.bytes(), img) {
		t.Fatalf("server took %d bytes, not the %d sent", len(u.bytes()), len(img))
	}
	if p.dropped.Load() == 0 || rt == 0 {
		t.Fatalf("%d datagrams dropped, %d retransmissions: the path was not lossy", p.dropped.Load(), rt)
	}
	if int64(rt) != hook.Load() || int64(rt) < p.dropped.Load() {
		t.Fatalf("%d retransmissions in responses, %d by the hook, %d datagrams dropped", rt, hook.Load(), p.dropped.Load())
	}
}

// rawDevice is a UDP peer scripted by the test.
type rawDevice struct {
	conn *net.UDPConn
}

func newRawDevice(t *testing.T) *rawDevice {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawDevice{conn: conn}
}

func (d *rawDevice) addr() string { return d.conn.LocalAddr().String() }

// read reads one message within a generous time.
func (d *rawDevice) read(t *testing.T) (message.Message, *net.UDPAddr) {
	t.Helper()
	buf := make([]byte, 2048)
	d.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := d.conn.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("device read: %v", err)
	}
	var m message.Message
	m.Options = make(message.Options, 0, 16)
	if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
		t.Fatalf("device decode: %v", err)
	}
	m.Token = append(message.Token(nil), m.Token...)
	m.Payload = append([]byte(nil), m.Payload...)
	return m, from
}

func (d *rawDevice) send(t *testing.T, to *net.UDPAddr, m message.Message) {
	t.Helper()
	buf := make([]byte, 2048)
	n, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.conn.WriteToUDP(buf[:n], to); err != nil {
		t.Fatal(err)
	}
}

// TestSeparateResponse answers with an empty ACK first and the response
// later in its own confirmable message (RFC 7252 §5.2.2), with a stray
// confirmable message and a duplicate ACK in between: the client takes the
// response, acknowledges it, and resets the stray message.
func TestSeparateResponse(t *testing.T) {
	for _, typ := range []message.Type{message.Confirmable, message.NonConfirmable} {
		t.Run(typ.String(), func(t *testing.T) {
			d := newRawDevice(t)
			c := dial(t, d.addr(), nil, coap.Transmission{AckTimeout: 50 * time.Millisecond, MaxRetransmit: 3})
			type result struct {
				r   *coap.Response
				err error
			}
			done := make(chan result, 1)
			go func() {
				r, err := c.Get(context.Background(), "/slow/thing")
				done <- result{r, err}
			}()
			req, from := d.read(t)
			if p, _ := req.Options.Path(); p != "/slow/thing" || req.Type != message.Confirmable || req.Code != codes.GET {
				t.Fatalf("request %v %v %q", req.Type, req.Code, p)
			}
			ack := message.Message{Type: message.Acknowledgement, MessageID: req.MessageID}
			d.send(t, from, ack)
			d.send(t, from, ack) // duplicate
			// The client must now wait past its ACK timeout without
			// retransmitting.
			time.Sleep(200 * time.Millisecond)
			d.send(t, from, message.Message{Type: message.Confirmable, Code: codes.Content, MessageID: 999, Token: message.Token("other"), Payload: []byte("not yours")})
			rst, _ := d.read(t)
			if rst.Type != message.Reset || rst.MessageID != 999 || rst.Code != codes.Empty {
				t.Fatalf("stray CON answered with %v %v mid %d, want an RST for 999 (or the client retransmitted after an ACK)", rst.Type, rst.Code, rst.MessageID)
			}
			sep := message.Message{Type: typ, Code: codes.Content, MessageID: 1234, Token: req.Token, Payload: []byte("late")}
			d.send(t, from, sep)
			res := <-done
			if res.err != nil {
				t.Fatal(res.err)
			}
			if res.r.Code != codes.Content || string(res.r.Payload) != "late" || res.r.Retransmits != 0 {
				t.Fatalf("response %v %q after %d retransmissions", res.r.Code, res.r.Payload, res.r.Retransmits)
			}
			if typ == message.Confirmable {
				a, _ := d.read(t)
				if a.Type != message.Acknowledgement || a.MessageID != 1234 || a.Code != codes.Empty {
					t.Fatalf("separate response acknowledged with %v %v mid %d", a.Type, a.Code, a.MessageID)
				}
				// The ACK got lost: the copy is acknowledged again, also while
				// the next request waits.
				go func() {
					_, err := c.Get(context.Background(), "/next")
					done <- result{nil, err}
				}()
				next, _ := d.read(t)
				d.send(t, from, sep)
				a, _ = d.read(t)
				for a.MessageID == next.MessageID { // a retransmission of /next
					a, _ = d.read(t)
				}
				if a.Type != message.Acknowledgement || a.MessageID != 1234 {
					t.Fatalf("copy of the separate response answered with %v mid %d", a.Type, a.MessageID)
				}
				d.send(t, from, message.Message{Type: message.Acknowledgement, Code: codes.Content, MessageID: next.MessageID, Token: next.Token})
				if res := <-done; res.err != nil {
					t.Fatal(res.err)
				}
			}
		})
	}
}

// TestIgnoresStrayAnswers feeds answers to other exchanges before the real
// one: an ACK for another message ID, a piggybacked answer with another
// token, an RST for another message ID and bytes that are not CoAP.
func TestIgnoresStrayAnswers(t *testing.T) {
	d := newRawDevice(t)
	c := dial(t, d.addr(), nil, coap.Transmission{AckTimeout: 5 * time.Second, MaxRetransmit: 1})
	done := make(chan error, 1)
	var resp *coap.Response
	go func() {
		var err error
		resp, err = c.Get(context.Background(), "/x")
		done <- err
	}()
	req, from := d.read(t)
	d.send(t, from, message.Message{Type: message.Acknowledgement, Code: codes.Content, MessageID: req.MessageID + 1, Token: req.Token, Payload: []byte("wrong mid")})
	d.send(t, from, message.Message{Type: message.Acknowledgement, Code: codes.Content, MessageID: req.MessageID, Token: message.Token("zz"), Payload: []byte("wrong token")})
	d.send(t, from, message.Message{Type: message.Reset, MessageID: req.MessageID + 2})
	d.conn.WriteToUDP([]byte{0xff, 0, 1}, from)
	d.send(t, from, message.Message{Type: message.Acknowledgement, Code: codes.Content, MessageID: req.MessageID, Token: req.Token, Payload: []byte("right")})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if string(resp.Payload) != "right" {
		t.Fatalf("took %q", resp.Payload)
	}
}

// TestReset: an RST for the request ends the exchange with ErrReset.
func TestReset(t *testing.T) {
	d := newRawDevice(t)
	c := dial(t, d.addr(), nil, coap.Transmission{AckTimeout: 5 * time.Second, MaxRetransmit: 1})
	done := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), "/x")
		done <- err
	}()
	req, from := d.read(t)
	d.send(t, from, message.Message{Type: message.Reset, MessageID: req.MessageID})
	if err := <-done; !errors.Is(err, coap.ErrReset) {
		t.Fatalf("err %v, want ErrReset", err)
	}
}

// TestSilentDevice: a device that never answers gets MAX_RETRANSMIT+1
// copies with growing gaps, and the request fails within
// MAX_TRANSMIT_WAIT.
func TestSilentDevice(t *testing.T) {
	d := newRawDevice(t)
	tx := coap.Transmission{AckTimeout: 30 * time.Millisecond, MaxRetransmit: 3}
	c := dial(t, d.addr(), nil, tx)
	var hook []int
	c.OnRetransmit = func(n int) { hook = append(hook, n) }
	var got atomic.Int64
	var times []time.Time
	var mu sync.Mutex
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := d.conn.ReadFromUDP(buf); err != nil {
				return
			}
			mu.Lock()
			times = append(times, time.Now())
			mu.Unlock()
			got.Add(1)
		}
	}()
	start := time.Now()
	_, err := c.Get(context.Background(), "/x")
	took := time.Since(start)
	if !errors.Is(err, coap.ErrNoResponse) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want ErrNoResponse", err)
	}
	// Generous: the bound is MAX_TRANSMIT_WAIT, plus scheduling on a busy
	// machine.
	if max := tx.MaxTransmitWait() + 2*time.Second; took > max {
		t.Fatalf("gave up after %v, bound %v", took, tx.MaxTransmitWait())
	}
	time.Sleep(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if got.Load() != 4 || len(hook) != 3 || hook[2] != 3 {
		t.Fatalf("device saw %d copies, hook %v; want 4 copies and retransmissions 1..3", got.Load(), hook)
	}
	// Exponential backoff: each gap is at least the previous doubled
	// ACK_TIMEOUT's lower bound.
	for i := 1; i < len(times); i++ {
		if min := tx.AckTimeout << (i - 1); times[i].Sub(times[i-1]) < min {
			t.Errorf("gap %d is %v, less than %v", i, times[i].Sub(times[i-1]), min)
		}
	}
}

// TestPortUnreachable: while nothing listens on the device's port (ICMP
// port unreachable), requests time out like lost datagrams; once a server
// binds the port the same client gets answers.
func TestPortUnreachable(t *testing.T) {
	hold, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := hold.LocalAddr().String()
	hold.Close()
	c := dial(t, addr, nil, coap.Transmission{AckTimeout: 20 * time.Millisecond, MaxRetransmit: 2})
	_, err = c.Get(context.Background(), "/x")
	if !errors.Is(err, coap.ErrNoResponse) {
		t.Fatalf("err %v, want ErrNoResponse while the port is closed", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	_, err = c.Get(ctx, "/x")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want a deadline error", err)
	}
	u := &uploadSink{}
	srv, err := coapsrv.ListenUDP(addr, u.handle, coapsrv.Options{})
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	defer srv.Close()
	r, err := c.Get(context.Background(), "/x")
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != codes.Content {
		t.Fatalf("code %v", r.Code)
	}
}

// TestCancel: cancelling the context or closing the client ends a request
// to a silent device at once, long before its ACK timeout.
func TestCancel(t *testing.T) {
	d := newRawDevice(t)
	tx := coap.Transmission{AckTimeout: 20 * time.Second, MaxRetransmit: 4}
	t.Run("context", func(t *testing.T) {
		c := dial(t, d.addr(), nil, tx)
		ctx, cancel := context.WithCancel(context.Background())
		// An earlier exchange with the same context registers the wake-up.
		done := make(chan error, 1)
		go func() {
			_, err := c.Get(ctx, "/x")
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err %v, want context.Canceled", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("returned %v after the cancel", took)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("request did not end on cancel")
		}
		// The client goes on with another context.
		ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel2()
		if _, err := c.Get(ctx2, "/x"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want DeadlineExceeded", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		c, err := coap.Dial(context.Background(), d.addr(), nil, tx)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			_, err := c.Get(context.Background(), "/x")
			done <- err
		}()
		time.Sleep(50 * time.Millisecond)
		c.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("err %v, want net.ErrClosed", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("request did not end on close")
		}
	})
}

// TestDTLSDeviceOff: a DTLS client dialled while the device is off fails
// its first request within the exchange bound, and shakes hands once the
// device is up.
func TestDTLSDeviceOff(t *testing.T) {
	hold, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := hold.LocalAddr().String()
	hold.Close()
	key := []byte("k")
	c := dial(t, addr, &coap.PSK{Identity: "bench", Key: key}, coap.Transmission{AckTimeout: 100 * time.Millisecond, MaxRetransmit: 3})
	start := time.Now()
	if _, err := c.Get(context.Background(), "/x"); err == nil {
		t.Fatal("request to a device that is off succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("took %v", took)
	}
	u := &uploadSink{}
	srv, err := coapsrv.ListenDTLS(addr, func([]byte) ([]byte, error) { return key, nil }, u.handle, coapsrv.Options{})
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	defer srv.Close()
	r, err := c.Get(context.Background(), "/x")
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != codes.Content {
		t.Fatalf("code %v", r.Code)
	}
}
