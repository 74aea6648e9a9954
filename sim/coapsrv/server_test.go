package coapsrv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/fudbench/fudbench/internal/coapopt"
)

// blockOpt encodes a Block1 option.
func blockOpt(num uint32, more bool, szx uint8) message.Option {
	v := num<<4 | uint32(szx)
	if more {
		v |= 8
	}
	return message.Option{ID: message.Block1, Value: coapopt.PutUint(make([]byte, 4), v)}
}

// uploadBlocks PUTs data to path one confirmable block at a time, the way
// the bench's resumable profile drives a device.
func uploadBlocks(ctx context.Context, cc *udpclient.Conn, path string, data []byte, szx uint8, tag []byte) error {
	size := 16 << szx
	for num := 0; ; num++ {
		off, end := num*size, min((num+1)*size, len(data))
		more := end < len(data)
		resp, err := cc.Put(ctx, path, message.AppOctets, bytes.NewReader(data[off:end]),
			blockOpt(uint32(num), more, szx), message.Option{ID: message.RequestTag, Value: tag})
		if err != nil {
			return fmt.Errorf("block %d: %w", num, err)
		}
		code := resp.Code()
		echo, _ := resp.Options().GetUint32(message.Block1)
		cc.ReleaseMessage(resp)
		want := codes.Continue
		if !more {
			want = codes.Changed
		}
		if code != want {
			return fmt.Errorf("block %d: code %v, want %v", num, code, want)
		}
		if echo>>4 != uint32(num) {
			return fmt.Errorf("block %d: echoed Block1 number %d", num, echo>>4)
		}
		if !more {
			return nil
		}
	}
}

// exercise runs GET /boot and a Block1 upload through a go-coap client.
func exercise(t *testing.T, cc *udpclient.Conn, d *device) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := cc.Get(ctx, "/boot", message.Option{ID: message.URIQuery, Value: []byte("v=1")})
	if err != nil {
		t.Fatalf("GET /boot: %v", err)
	}
	if resp.Code() != codes.Content {
		t.Fatalf("GET /boot: code %v", resp.Code())
	}
	body, err := io.ReadAll(resp.Body())
	if err != nil {
		t.Fatal(err)
	}
	cf, err := resp.ContentFormat()
	cc.ReleaseMessage(resp)
	if !bytes.Equal(body, bootPayload) || err != nil || cf != message.AppCBOR {
		t.Fatalf("GET /boot: body % x, content format %v (%v)", body, cf, err)
	}

	image := make([]byte, 1000) // 15 full 64-byte blocks and a short one
	_, _ = rand.Read(image)
	tag := []byte{1, 2, 3, 4}
	if err := uploadBlocks(ctx, cc, "/fw", image, 2, tag); err != nil {
		t.Fatalf("upload: %v", err)
	}
	_, blocks, got, done := d.snapshot()
	if !done || !bytes.Equal(got, image) {
		t.Fatalf("device got %d bytes (done %v), want the %d-byte image", len(got), done, len(image))
	}
	for i, n := range blocks {
		if n != uint32(i) {
			t.Fatalf("blocks out of order: %v", blocks)
		}
	}
	if len(blocks) != 16 {
		t.Fatalf("device saw %d blocks, want 16", len(blocks))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.queries) != 1 || len(d.queries[0]) != 1 || d.queries[0][0] != "v=1" {
		t.Errorf("queries = %q", d.queries)
	}
	for _, tg := range d.tags {
		if !bytes.Equal(tg, tag) {
			t.Fatalf("Request-Tag %x, want %x", tg, tag)
		}
	}
}

func TestGoCoapClientUDP(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
		t.Run(addr, func(t *testing.T) {
			d := &device{}
			s := listenUDPOrSkip(t, addr, d.handle, Options{})
			cc, err := udp.Dial(s.Addr().String(), options.WithBlockwise(false, blockwise.SZX1024, time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			exercise(t, cc, d)

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := cc.Ping(ctx); err != nil {
				t.Errorf("ping: %v", err)
			}
		})
	}
}

func TestDeduplication(t *testing.T) {
	d := &device{}
	s := listenUDPOrSkip(t, "127.0.0.1:0", d.handle, Options{})
	c := rawConn(t, s)

	con := encode(t, message.Confirmable, codes.GET, 0x1234, []byte{9, 8}, "/boot", nil)
	first := roundTrip(t, c, con, time.Second)
	second := roundTrip(t, c, con, time.Second)
	if first == nil || !bytes.Equal(first, second) {
		t.Fatalf("replies differ: % x vs % x", first, second)
	}
	m := decodeMsg(t, first)
	if m.Type != message.Acknowledgement || m.MessageID != 0x1234 || !bytes.Equal(m.Token, []byte{9, 8}) || m.Code != codes.Content {
		t.Errorf("reply %v", m.String())
	}

	non := encode(t, message.NonConfirmable, codes.GET, 0x2222, []byte{7}, "/boot", nil)
	r := roundTrip(t, c, non, time.Second)
	if r == nil {
		t.Fatal("no reply to NON")
	}
	m = decodeMsg(t, r)
	if m.Type != message.NonConfirmable || m.MessageID == 0x2222 || !bytes.Equal(m.Token, []byte{7}) {
		t.Errorf("NON reply %v", m.String())
	}
	if again := roundTrip(t, c, non, 200*time.Millisecond); again != nil {
		t.Errorf("duplicate NON answered: % x", again)
	}
	if calls, _, _, _ := d.snapshot(); calls != 2 {
		t.Errorf("handler called %d times, want 2", calls)
	}
}

func TestDeduplicationBounds(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		other int           // distinct exchanges between the two copies
		sleep time.Duration // before the second copy
	}{
		{name: "evicted by MaxCached", opts: Options{MaxCached: 2}, other: 2},
		{name: "expired by ExchangeLifetime", opts: Options{ExchangeLifetime: 50 * time.Millisecond}, sleep: 80 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &device{}
			s := listenUDPOrSkip(t, "127.0.0.1:0", d.handle, tt.opts)
			c := rawConn(t, s)
			req := encode(t, message.Confirmable, codes.GET, 1, nil, "/boot", nil)
			if roundTrip(t, c, req, time.Second) == nil {
				t.Fatal("no reply")
			}
			for i := range tt.other {
				if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, uint16(100+i), nil, "/boot", nil), time.Second) == nil {
					t.Fatal("no reply")
				}
			}
			time.Sleep(tt.sleep)
			if roundTrip(t, c, req, time.Second) == nil {
				t.Fatal("no reply")
			}
			if calls, _, _, _ := d.snapshot(); calls != 2+tt.other {
				t.Errorf("handler called %d times, want %d (the copy must reach it again)", calls, 2+tt.other)
			}
		})
	}
}

func TestControlAndMalformed(t *testing.T) {
	badToken := []byte{0x49, 0x01, 0xab, 0xcd} // CON, TKL 9: not decodable
	unknownCritical := encode(t, message.Confirmable, codes.GET, 0x0505, []byte{1}, "/boot", nil,
		message.Option{ID: 2049, Value: []byte{1}})
	tests := []struct {
		name      string
		in        []byte
		wantType  message.Type // -1: no reply
		wantCode  codes.Code
		wantMID   uint16
		wantCalls int
	}{
		{name: "ping", in: []byte{0x40, 0, 0x12, 0x34}, wantType: message.Reset, wantMID: 0x1234},
		{name: "undecodable CON", in: badToken, wantType: message.Reset, wantMID: 0xabcd},
		{name: "bad version", in: []byte{0x80, 1, 0, 1, 0xff}, wantType: -1},
		{name: "short", in: []byte{0x40, 1}, wantType: -1},
		{name: "empty", in: []byte{}, wantType: -1},
		{name: "peer ACK", in: encode(t, message.Acknowledgement, codes.Content, 7, nil, "", nil), wantType: -1},
		{name: "peer RST", in: []byte{0x70, 0, 0, 7}, wantType: -1},
		{name: "empty NON", in: []byte{0x50, 0, 0, 8}, wantType: -1},
		{name: "response as CON", in: encode(t, message.Confirmable, codes.Content, 9, nil, "", nil), wantType: message.Reset, wantMID: 9},
		{name: "unknown critical option", in: unknownCritical, wantType: message.Acknowledgement, wantCode: codes.BadOption, wantMID: 0x0505},
		{name: "unknown critical option NON", in: encode(t, message.NonConfirmable, codes.GET, 0x0506, nil, "/boot", nil,
			message.Option{ID: 2049}), wantType: -1},
		{name: "unknown elective option", in: encode(t, message.Confirmable, codes.GET, 0x0507, nil, "/boot", nil,
			message.Option{ID: 2048, Value: []byte{1}}), wantType: message.Acknowledgement, wantCode: codes.Content, wantMID: 0x0507, wantCalls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &device{}
			s := listenUDPOrSkip(t, "127.0.0.1:0", d.handle, Options{})
			c := rawConn(t, s)
			wait := time.Second
			if tt.wantType < 0 {
				wait = 150 * time.Millisecond
			}
			r := roundTrip(t, c, tt.in, wait)
			switch {
			case tt.wantType < 0 && r != nil:
				t.Fatalf("unexpected reply % x", r)
			case tt.wantType >= 0 && r == nil:
				t.Fatal("no reply")
			case r != nil:
				m := decodeMsg(t, r)
				if m.Type != tt.wantType || m.Code != tt.wantCode || uint16(m.MessageID) != tt.wantMID {
					t.Fatalf("reply %v; want type %v code %v MID %#x", m.String(), tt.wantType, tt.wantCode, tt.wantMID)
				}
			}
			// Still serving after whatever it was.
			if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, 0x7777, nil, "/boot", nil), time.Second) == nil {
				t.Fatal("server stopped answering")
			}
			if calls, _, _, _ := d.snapshot(); calls != tt.wantCalls+1 {
				t.Errorf("handler called %d times, want %d", calls, tt.wantCalls+1)
			}
		})
	}
}

func TestHandlerNilReplyAndRetransmission(t *testing.T) {
	var calls atomic.Int32
	s := listenUDPOrSkip(t, "127.0.0.1:0", func(context.Context, *Request) *Response {
		if calls.Add(1) == 1 {
			return nil // lost power before answering
		}
		return &Response{Code: codes.Content, ContentFormat: NoContentFormat}
	}, Options{})
	c := rawConn(t, s)
	req := encode(t, message.Confirmable, codes.GET, 42, nil, "/x", nil)
	if r := roundTrip(t, c, req, 150*time.Millisecond); r != nil {
		t.Fatalf("nil Response answered: % x", r)
	}
	if r := roundTrip(t, c, req, time.Second); r == nil {
		t.Fatal("retransmission of an unanswered request got no reply")
	}
	if calls.Load() != 2 {
		t.Errorf("handler called %d times, want 2", calls.Load())
	}
}

func TestClose(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var calls, cancelled atomic.Int32
	s := listenUDPOrSkip(t, "127.0.0.1:0", func(ctx context.Context, r *Request) *Response {
		calls.Add(1)
		if r.Path == "/slow" {
			close(entered)
			<-release
			if ctx.Err() != nil {
				cancelled.Add(1)
			}
		}
		return &Response{Code: codes.Content, ContentFormat: NoContentFormat}
	}, Options{})
	addr := s.Addr().String()
	c := rawConn(t, s)
	if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, 1, nil, "/fast", nil), time.Second) == nil {
		t.Fatal("no reply before Close")
	}
	if _, err := c.Write(encode(t, message.Confirmable, codes.GET, 2, nil, "/slow", nil)); err != nil {
		t.Fatal(err)
	}
	<-entered
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close waited for a running handler")
	}
	close(release)
	if r := readReply(t, c, 300*time.Millisecond); r != nil {
		t.Fatalf("in-flight reply sent after Close: % x", r)
	}
	if cancelled.Load() != 1 {
		t.Error("in-flight handler's context not cancelled")
	}
	_, _ = c.Write(encode(t, message.Confirmable, codes.GET, 3, nil, "/fast", nil))
	if r := readReply(t, c, 200*time.Millisecond); r != nil {
		t.Fatalf("reply after Close: % x", r)
	}
	if calls.Load() != 2 {
		t.Errorf("handler called %d times, want 2", calls.Load())
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Power back on: the board listens on the same port at once.
	s2, err := ListenUDP(addr, (&device{}).handle, Options{})
	if err != nil {
		t.Fatalf("relisten on %s right after Close: %v", addr, err)
	}
	defer s2.Close()
	if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, 4, nil, "/boot", nil), time.Second) == nil {
		t.Fatal("restarted server does not answer")
	}
}

func TestSequentialHandler(t *testing.T) {
	var inside, overlaps atomic.Int32
	s := listenUDPOrSkip(t, "127.0.0.1:0", func(context.Context, *Request) *Response {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		time.Sleep(time.Millisecond)
		inside.Add(-1)
		return &Response{Code: codes.Content, ContentFormat: NoContentFormat}
	}, Options{})
	var wg sync.WaitGroup
	for i := range 4 {
		c := rawConn(t, s)
		wg.Go(func() {
			for j := range 10 {
				if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, uint16(i*100+j), nil, "/x", nil), 2*time.Second) == nil {
					t.Error("no reply")
					return
				}
			}
		})
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Errorf("handler ran concurrently %d times", overlaps.Load())
	}
}

func TestRequestHelpers(t *testing.T) {
	tests := []struct {
		name      string
		opts      message.Options
		wantBlock Block
		blockOK   bool
		size1     uint32
		size1OK   bool
		tag       []byte
		tagOK     bool
		cf        message.MediaType
		cfOK      bool
	}{
		{name: "none"},
		{
			name: "all",
			opts: message.Options{
				{ID: message.ContentFormat, Value: []byte{60}},
				{ID: message.Block1, Value: []byte{0x01, 0x2e}}, // num 18, more, szx 6
				{ID: message.Size1, Value: []byte{0x01, 0x00, 0x00}},
				{ID: message.RequestTag, Value: []byte{0xaa, 0xbb}},
			},
			wantBlock: Block{Num: 18, More: true, SZX: 6}, blockOK: true,
			size1: 65536, size1OK: true, tag: []byte{0xaa, 0xbb}, tagOK: true, cf: 60, cfOK: true,
		},
		{
			name:      "zero-length values",
			opts:      message.Options{{ID: message.ContentFormat}, {ID: message.Block1}, {ID: message.RequestTag}},
			wantBlock: Block{}, blockOK: true, tagOK: true, tag: []byte{}, cf: message.TextPlain, cfOK: true,
		},
		{name: "reserved SZX 7", opts: message.Options{{ID: message.Block1, Value: []byte{0x17}}}},
		{name: "over-long Block1", opts: message.Options{{ID: message.Block1, Value: []byte{0, 0, 0, 0x10}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Request{Options: tt.opts}
			if b, ok := r.Block1(); b != tt.wantBlock || ok != tt.blockOK {
				t.Errorf("Block1() = %+v, %v; want %+v, %v", b, ok, tt.wantBlock, tt.blockOK)
			}
			if v, ok := r.Size1(); v != tt.size1 || ok != tt.size1OK {
				t.Errorf("Size1() = %d, %v", v, ok)
			}
			if v, ok := r.RequestTag(); !bytes.Equal(v, tt.tag) || ok != tt.tagOK {
				t.Errorf("RequestTag() = %x, %v", v, ok)
			}
			if v, ok := r.ContentFormat(); v != tt.cf || ok != tt.cfOK {
				t.Errorf("ContentFormat() = %v, %v", v, ok)
			}
		})
	}
	if (Block{SZX: 6}).Size() != 1024 || (Block{SZX: 0}).Size() != 16 {
		t.Error("Block.Size")
	}
}

// sinkWorker is a worker with no socket: replies are collected.
func sinkWorker(t testing.TB, h Handler, opts Options) (*worker, *[][]byte) {
	t.Helper()
	s, err := newServer(h, opts)
	if err != nil {
		t.Fatal(err)
	}
	var sent [][]byte
	w := newWorker(s, 0)
	w.write = func(b []byte) { sent = append(sent, bytes.Clone(b)) }
	w.setPeer(netip.MustParseAddrPort("127.0.0.1:40000"))
	return w, &sent
}

func TestResponseEncoding(t *testing.T) {
	tests := []struct {
		name     string
		resp     Response
		wantOpts message.Options
	}{
		{name: "content format with payload", resp: Response{Code: codes.Content, ContentFormat: 60, Payload: []byte{1}},
			wantOpts: message.Options{{ID: message.ContentFormat, Value: []byte{60}}}},
		{name: "text/plain is 0", resp: Response{Code: codes.Content, ContentFormat: 0, Payload: []byte("hi")},
			wantOpts: message.Options{{ID: message.ContentFormat, Value: []byte{}}}},
		{name: "no payload, no content format", resp: Response{Code: codes.Changed, ContentFormat: 60}},
		{name: "none", resp: Response{Code: codes.Content, ContentFormat: NoContentFormat, Payload: []byte{1}}},
		{name: "block1 and size1 and extras sorted", resp: Response{
			Code: codes.RequestEntityTooLarge, ContentFormat: NoContentFormat,
			Block1:  &Block{Num: 3, More: true, SZX: 2},
			Size1:   4096,
			Options: message.Options{{ID: message.RequestTag, Value: []byte{5}}, {ID: message.ETag, Value: []byte{1}}},
		}, wantOpts: message.Options{
			{ID: message.ETag, Value: []byte{1}},
			{ID: message.Block1, Value: []byte{0x3a}},
			{ID: message.Size1, Value: []byte{0x10, 0x00}},
			{ID: message.RequestTag, Value: []byte{5}},
		}},
		{name: "invalid code becomes 5.00", resp: Response{Code: 1000, ContentFormat: NoContentFormat}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.resp
			w, sent := sinkWorker(t, func(context.Context, *Request) *Response { return &resp }, Options{})
			w.handle(encode(t, message.Confirmable, codes.GET, 77, []byte{1, 2, 3}, "/a/b", nil))
			if len(*sent) != 1 {
				t.Fatalf("sent %d datagrams", len(*sent))
			}
			m := decodeMsg(t, (*sent)[0])
			wantCode := tt.resp.Code
			if wantCode > 255 {
				wantCode = codes.InternalServerError
			}
			if m.Code != wantCode || m.MessageID != 77 || m.Type != message.Acknowledgement || !bytes.Equal(m.Token, []byte{1, 2, 3}) {
				t.Errorf("header: %v", m.String())
			}
			if len(m.Options) != len(tt.wantOpts) {
				t.Fatalf("options %v, want %v", m.Options, tt.wantOpts)
			}
			for i, o := range m.Options {
				if o.ID != tt.wantOpts[i].ID || !bytes.Equal(o.Value, tt.wantOpts[i].Value) {
					t.Errorf("option %d = %v %x, want %v %x", i, o.ID, o.Value, tt.wantOpts[i].ID, tt.wantOpts[i].Value)
				}
			}
		})
	}
}

func TestRequestFields(t *testing.T) {
	var got Request
	var path string
	w, _ := sinkWorker(t, func(_ context.Context, r *Request) *Response {
		got = *r
		path = r.Path
		got.Query = append([]string(nil), r.Query...)
		return nil
	}, Options{})
	tests := []struct {
		path, wantPath string
		query          []string
	}{
		{path: "", wantPath: "/"},
		{path: "/fw/state", wantPath: "/fw/state"},
		{path: "/fw", wantPath: "/fw", query: []string{"a=1", "b"}},
	}
	for i, tt := range tests {
		var q []message.Option
		for _, s := range tt.query {
			q = append(q, message.Option{ID: message.URIQuery, Value: []byte(s)})
		}
		w.handle(encode(t, message.NonConfirmable, codes.POST, uint16(i), []byte{byte(i)}, tt.path, []byte("body"), q...))
		if path != tt.wantPath || got.Code != codes.POST || got.Type != message.NonConfirmable || got.MessageID != uint16(i) ||
			string(got.Payload) != "body" || len(got.Query) != len(tt.query) || got.Peer.String() != "127.0.0.1:40000" || got.PSKIdentity != nil {
			t.Errorf("%q: request %+v, path %q", tt.path, got, path)
		}
		for j := range tt.query {
			if got.Query[j] != tt.query[j] {
				t.Errorf("%q: query %q", tt.path, got.Query)
			}
		}
	}
}

func TestHandleAllocations(t *testing.T) {
	w, _ := sinkWorker(t, func(_ context.Context, r *Request) *Response {
		b, _ := r.Block1()
		return &continueResp[b.Num%2]
	}, Options{MaxCached: 256})
	w.write = func([]byte) {}
	req := encode(t, message.Confirmable, codes.PUT, 0, []byte{1, 2, 3, 4}, "/fw", make([]byte, 64),
		blockOpt(5, true, 2), message.Option{ID: message.RequestTag, Value: []byte{1}})
	mid := uint16(0)
	step := func() {
		mid++
		binary.BigEndian.PutUint16(req[2:], mid)
		w.handle(req)
	}
	for range 1000 {
		step()
	}
	if a := testing.AllocsPerRun(2000, step); a != 0 {
		t.Errorf("allocations per block = %v, want 0", a)
	}
}

var continueResp = [2]Response{
	{Code: codes.Continue, ContentFormat: NoContentFormat, Block1: &Block{Num: 1, More: true, SZX: 2}},
	{Code: codes.Continue, ContentFormat: NoContentFormat, Block1: &Block{Num: 2, More: true, SZX: 2}},
}

// TestDetachKeepsTheSocket: a detached server answers nothing more, its
// socket stays bound (no other socket can take the port), and a new
// server on the same socket answers at once — including a request that
// arrived in between.
func TestDetachKeepsTheSocket(t *testing.T) {
	ua, err := net.ResolveUDPAddr("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	s, err := ServeUDP(sock, (&device{}).handle, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, s)
	if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, 1, nil, "/boot", nil), time.Second) == nil {
		t.Fatal("no reply before Detach")
	}
	done := make(chan *net.UDPConn)
	go func() { done <- s.Detach() }()
	select {
	case got := <-done:
		if got != sock {
			t.Fatal("Detach returned another socket")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Detach did not return")
	}
	if s.Detach() != sock || s.Close() != nil {
		t.Error("a second Detach or Close misbehaved")
	}
	if _, err := net.ListenUDP("udp", sock.LocalAddr().(*net.UDPAddr)); err == nil {
		t.Fatal("the port was free after Detach")
	}
	if _, err := c.Write(encode(t, message.Confirmable, codes.GET, 2, nil, "/boot", nil)); err != nil {
		t.Fatal(err)
	}
	if r := readReply(t, c, 200*time.Millisecond); r != nil {
		t.Fatalf("reply after Detach: % x", r)
	}
	s2, err := ServeUDP(sock, (&device{}).handle, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if r := readReply(t, c, time.Second); r == nil {
		t.Fatal("the request that waited in the socket got no reply from the next server")
	}
	if roundTrip(t, c, encode(t, message.Confirmable, codes.GET, 3, nil, "/boot", nil), time.Second) == nil {
		t.Fatal("the next server on the socket does not answer")
	}
}

// TestDetachDoesNotWaitForAHandler: a board cuts its network from code
// that may hold what a running handler waits for; Detach must return
// while the handler still runs, and the handler's reply must not go out.
func TestDetachDoesNotWaitForAHandler(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	ua, _ := net.ResolveUDPAddr("udp", "127.0.0.1:0")
	sock, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	s, err := ServeUDP(sock, func(ctx context.Context, r *Request) *Response {
		close(entered)
		<-release
		return &Response{Code: codes.Content, ContentFormat: NoContentFormat}
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := rawConn(t, s)
	if _, err := c.Write(encode(t, message.Confirmable, codes.GET, 1, nil, "/slow", nil)); err != nil {
		t.Fatal(err)
	}
	<-entered
	done := make(chan struct{})
	go func() { s.Detach(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Detach waited for a running handler")
	}
	close(release)
	if r := readReply(t, c, 300*time.Millisecond); r != nil {
		t.Fatalf("reply of a detached server: % x", r)
	}
}
