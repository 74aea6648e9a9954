package coapsrv

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// needProgram returns the path of an external program, skipping the test
// when it is missing — except under CI=true, where it must be installed.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI (Debian package libcoap3-bin): %v", name, err)
	}
	t.Skipf("%s not installed (Debian package libcoap3-bin): %v", name, err)
	return ""
}

var bootPayload = []byte{0xa1, 0x64, 'm', 'o', 'd', 'e', 0x63, 'a', 'p', 'p'} // {"mode":"app"} in CBOR

// device is a test handler: GET /boot, and PUT /fw with or without Block1,
// checking that blocks come in order the way a flash writer would.
type device struct {
	mu         sync.Mutex
	calls      int
	blocks     []uint32
	body       []byte
	done       bool
	tags       [][]byte
	identities []string
	queries    [][]string
	types      []message.Type
}

func (d *device) handle(_ context.Context, r *Request) *Response {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	d.identities = append(d.identities, string(r.PSKIdentity))
	d.types = append(d.types, r.Type)
	switch {
	case r.Path == "/boot" && r.Code == codes.GET:
		d.queries = append(d.queries, append([]string(nil), r.Query...))
		return &Response{Code: codes.Content, ContentFormat: int(message.AppCBOR), Payload: bootPayload}
	case r.Path == "/fw" && r.Code == codes.PUT:
		if tag, ok := r.RequestTag(); ok {
			d.tags = append(d.tags, bytes.Clone(tag))
		}
		b, ok := r.Block1()
		if !ok {
			d.body = append(d.body[:0], r.Payload...)
			d.done = true
			return &Response{Code: codes.Changed, ContentFormat: NoContentFormat}
		}
		if b.Num == 0 {
			d.body, d.blocks, d.done = d.body[:0], d.blocks[:0], false
		}
		if b.Num*uint32(b.Size()) != uint32(len(d.body)) || (b.More && len(r.Payload) != b.Size()) {
			return &Response{Code: codes.RequestEntityIncomplete, ContentFormat: NoContentFormat}
		}
		d.blocks = append(d.blocks, b.Num)
		d.body = append(d.body, r.Payload...)
		echo := b
		if b.More {
			return &Response{Code: codes.Continue, ContentFormat: NoContentFormat, Block1: &echo}
		}
		d.done = true
		return &Response{Code: codes.Changed, ContentFormat: NoContentFormat, Block1: &echo}
	}
	return &Response{Code: codes.NotFound, ContentFormat: NoContentFormat}
}

func (d *device) snapshot() (calls int, blocks []uint32, body []byte, done bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.calls, append([]uint32(nil), d.blocks...), bytes.Clone(d.body), d.done
}

func listenUDPOrSkip(t testing.TB, addr string, h Handler, opts Options) *Server {
	t.Helper()
	s, err := ListenUDP(addr, h, opts)
	if err != nil {
		var oe *net.OpError
		if addr[0] == '[' && errors.As(err, &oe) {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		t.Fatalf("ListenUDP(%q): %v", addr, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// encode builds a CoAP datagram.
func encode(t testing.TB, typ message.Type, code codes.Code, mid uint16, token []byte, path string, payload []byte, extra ...message.Option) []byte {
	t.Helper()
	opts := message.Options{}
	buf := make([]byte, 256)
	var err error
	if path != "" {
		opts, _, err = opts.SetPath(buf, path)
		if err != nil {
			t.Fatalf("SetPath: %v", err)
		}
	}
	for _, o := range extra {
		opts = opts.Add(o)
	}
	m := message.Message{Token: token, Options: opts, Code: code, Payload: payload, MessageID: int32(mid), Type: typ}
	out := make([]byte, 2048)
	n, err := coder.DefaultCoder.Encode(m, out)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return out[:n]
}

func decodeMsg(t testing.TB, b []byte) message.Message {
	t.Helper()
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(b, &m); err != nil {
		t.Fatalf("decode reply % x: %v", b, err)
	}
	return m
}

// rawConn is a plain UDP socket talking to s.
func rawConn(t testing.TB, s *Server) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip sends b and returns the reply, or nil after wait.
func roundTrip(t testing.TB, c *net.UDPConn, b []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
	return readReply(t, c, wait)
}

func readReply(t testing.TB, c *net.UDPConn, wait time.Duration) []byte {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, err := c.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			// ICMP port unreachable: nobody listens, so no reply.
			return nil
		}
		t.Fatalf("read: %v", err)
	}
	return buf[:n]
}
