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

func TestDTLSWrongKey(t *testing.T) {
	d := &device{}
	s := listenDTLS(t, "127.0.0.1:0", d.handle)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := piondtls.ClientWithOptions(conn.(*net.UDPConn), conn.RemoteAddr(),
		clientDTLSOptions([]byte("wrong key"), piondtls.TLS_PSK_WITH_AES_128_CCM_8)...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.HandshakeContext(ctx); err == nil {
		t.Fatal("handshake with a wrong key succeeded")
	}
	if calls, _, _, _ := d.snapshot(); calls != 0 {
		t.Errorf("handler called %d times", calls)
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
