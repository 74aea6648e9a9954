package coapsrv

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

var (
	testIdentity = []byte("bench-1")
	testKey      = []byte("secretPSK-0123456")
)

func testPSK(identity []byte) ([]byte, error) {
	if !bytes.Equal(identity, testIdentity) {
		return nil, errors.New("unknown identity")
	}
	return testKey, nil
}

func listenDTLS(t testing.TB, addr string, h Handler) *Server {
	t.Helper()
	s, err := ListenDTLS(addr, testPSK, h, Options{})
	if err != nil {
		var oe *net.OpError
		if addr[0] == '[' && errors.As(err, &oe) {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		t.Fatalf("ListenDTLS(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func clientDTLSOptions(key []byte, suite piondtls.CipherSuiteID) []piondtls.ClientOption {
	return []piondtls.ClientOption{
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint(testIdentity),
		piondtls.WithCipherSuites(suite),
	}
}

func TestGoCoapClientDTLS(t *testing.T) {
	suites := []piondtls.CipherSuiteID{
		piondtls.TLS_PSK_WITH_AES_128_CCM_8,
		piondtls.TLS_PSK_WITH_AES_128_CCM,
		piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		for _, suite := range suites {
			t.Run(addr+"/"+suite.String(), func(t *testing.T) {
				d := &device{}
				s := listenDTLS(t, addr, d.handle)
				cc, err := coapdtls.Dial(s.Addr().String(), coapdtls.NewDTLSClientOptions(clientDTLSOptions(testKey, suite)...),
					options.WithBlockwise(false, blockwise.SZX1024, time.Second))
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer cc.Close()
				exercise(t, cc, d)
				d.mu.Lock()
				defer d.mu.Unlock()
				for _, id := range d.identities {
					if id != string(testIdentity) {
						t.Fatalf("PSKIdentity %q, want %q", id, testIdentity)
					}
				}
			})
		}
	}
}

// dtlsHandshake runs a pion client handshake with identity and key
// against addr from an unconnected socket, as the bench's client does.
func dtlsHandshake(t *testing.T, addr net.Addr, identity, key []byte, timeout time.Duration) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := piondtls.ClientWithOptions(pc, addr,
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint(identity),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	err = c.HandshakeContext(ctx)
	return time.Since(start), err
}

// alertOf returns the level and description of the DTLS alert that ended
// a handshake. pion's alert error type is unexported; its method set is
// what a caller can match.
func alertOf(err error) (level, desc byte, ok bool) {
	var a interface {
		Marshal() ([]byte, error)
		IsFatalOrCloseNotify() bool
	}
	if !errors.As(err, &a) {
		return 0, 0, false
	}
	b, err := a.Marshal()
	if err != nil || len(b) != 2 {
		return 0, 0, false
	}
	return b[0], b[1], true
}

// TestDTLSUnknownIdentity: an identity the PSK function refuses gets a
// fatal unknown_psk_identity alert at once, not a timeout.
func TestDTLSUnknownIdentity(t *testing.T) {
	d := &device{}
	s := listenDTLS(t, "127.0.0.1:0", d.handle)
	took, err := dtlsHandshake(t, s.Addr(), []byte("stranger"), testKey, 10*time.Second)
	if err == nil {
		t.Fatal("handshake with an unknown identity succeeded")
	}
	var he *piondtls.HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("%T %v: not a *dtls.HandshakeError", err, err)
	}
	level, desc, ok := alertOf(err)
	if !ok || level != alertFatal || desc != alertUnknownPSKIdentity {
		t.Fatalf("%v after %v: want a fatal unknown_psk_identity alert (2, 115), got (%d, %d, %v)", err, took, level, desc, ok)
	}
	var ne net.Error
	if !errors.As(err, &ne) || ne.Timeout() {
		t.Errorf("%v: want a net.Error that is not a timeout", err)
	}
	if calls, _, _, _ := d.snapshot(); calls != 0 {
		t.Errorf("handler called %d times", calls)
	}
	// The refusal ended only that session: the right identity still works.
	if _, err := dtlsHandshake(t, s.Addr(), testIdentity, testKey, 10*time.Second); err != nil {
		t.Fatalf("handshake with the known identity after a refusal: %v", err)
	}
}

// TestDTLSWrongKey: a known identity with the wrong key gets no alert. The
// server cannot decrypt the client's Finished and drops it, as DTLS drops
// every record that fails its check (RFC 6347 §4.1.2.7), so the client
// times out, as it would against mbedTLS or OpenSSL.
func TestDTLSWrongKey(t *testing.T) {
	d := &device{}
	s := listenDTLS(t, "127.0.0.1:0", d.handle)
	_, err := dtlsHandshake(t, s.Addr(), testIdentity, []byte("wrong key"), time.Second)
	if err == nil {
		t.Fatal("handshake with a wrong key succeeded")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%T %v: want a timeout", err, err)
	}
	if _, _, ok := alertOf(err); ok {
		t.Errorf("%v: an alert for a wrong key", err)
	}
	if calls, _, _, _ := d.snapshot(); calls != 0 {
		t.Errorf("handler called %d times", calls)
	}
}

func TestRefusalAlert(t *testing.T) {
	rec := func(typ byte, epoch uint16, frag ...byte) []byte {
		h := []byte{typ, 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1, 0, byte(len(frag))}
		return append(h, frag...)
	}
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	internal := rec(contentTypeAlert, 0, alertFatal, alertInternalError)
	unknown := rec(contentTypeAlert, 0, alertFatal, alertUnknownPSKIdentity)
	hello := rec(22, 0, 1, 2, 3, 4)
	tests := []struct {
		name    string
		in, out []byte
	}{
		{"alone", internal, unknown},
		{"after a handshake record", cat(hello, internal), cat(hello, unknown)},
		{"warning", rec(contentTypeAlert, 0, 1, alertInternalError), rec(contentTypeAlert, 0, 1, alertInternalError)},
		{"other alert", rec(contentTypeAlert, 0, alertFatal, 40), rec(contentTypeAlert, 0, alertFatal, 40)},
		{"protected", rec(contentTypeAlert, 1, make([]byte, 18)...), rec(contentTypeAlert, 1, make([]byte, 18)...)},
		{"truncated", internal[:14], internal[:14]},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			if got := refusalAlert(in); !bytes.Equal(got, tt.out) {
				t.Errorf("got % x, want % x", got, tt.out)
			}
			if !bytes.Equal(in, tt.in) {
				t.Errorf("input changed to % x", in)
			}
		})
	}
}

// countingConn counts datagrams that reach a DTLS client.
type countingConn struct {
	*net.UDPConn
	reads atomic.Int32
}

func (c *countingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, a, err := c.UDPConn.ReadFrom(b)
	if err == nil {
		c.reads.Add(1)
	}
	return n, a, err
}

func TestDTLSCloseIsSilent(t *testing.T) {
	d := &device{}
	s := listenDTLS(t, "127.0.0.1:0", d.handle)
	addr := s.Addr().String()
	raddr := s.Addr().(*net.UDPAddr)
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	cc := &countingConn{UDPConn: uc}
	c, err := piondtls.ClientWithOptions(cc, raddr, clientDTLSOptions(testKey, piondtls.TLS_PSK_WITH_AES_128_CCM_8)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	req := make([]byte, 64)
	n, _ := coder.DefaultCoder.Encode(message.Message{Code: codes.GET, Type: message.Confirmable, MessageID: 1,
		Options: message.Options{{ID: message.URIPath, Value: []byte("boot")}}}, req)
	if _, err := c.Write(req[:n]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(buf); err != nil || decodeMsg(t, buf[:n]).Code != codes.Content {
		t.Fatalf("first reply: %v", err)
	}

	before := cc.reads.Load()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write(req[:n])
	time.Sleep(300 * time.Millisecond)
	if after := cc.reads.Load(); after != before {
		t.Errorf("%d datagrams (a close_notify?) reached the client after Close", after-before)
	}
	// The port is free again at once, as a rebooted board needs.
	s2, err := ListenDTLS(addr, testPSK, d.handle, Options{})
	if err != nil {
		t.Fatalf("relisten on %s right after Close: %v", addr, err)
	}
	_ = s2.Close()
}

func TestListenErrors(t *testing.T) {
	h := (&device{}).handle
	tests := []struct {
		name string
		f    func() (*Server, error)
	}{
		{"nil handler", func() (*Server, error) { return ListenUDP("127.0.0.1:0", nil, Options{}) }},
		{"negative option", func() (*Server, error) { return ListenUDP("127.0.0.1:0", h, Options{MaxCached: -1}) }},
		{"bad address", func() (*Server, error) { return ListenUDP("127.0.0.1:notaport", h, Options{}) }},
		{"nil psk", func() (*Server, error) { return ListenDTLS("127.0.0.1:0", nil, h, Options{}) }},
		{"dtls bad address", func() (*Server, error) { return ListenDTLS("256.0.0.1:0", testPSK, h, Options{}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.f()
			if err == nil {
				_ = s.Close()
				t.Fatal("no error")
			}
		})
	}
}
