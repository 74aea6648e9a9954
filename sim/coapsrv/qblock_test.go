package coapsrv

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// TestQBlockOptions: without Options.QBlock1 the Q-Block options are
// unknown critical ones (4.02, RFC 9177 §4.1: how a client learns there is
// no Q-Block); with it the handler sees them, answers a confirmable block
// with an empty ACK (sent again, from the cache, to a retransmission), and
// sends a separate non-confirmable response later with Origin.Send.
func TestQBlockOptions(t *testing.T) {
	q1 := Block{Num: 3, More: true, SZX: 6}.Option(message.QBlock1)
	q2 := Block{Num: 0, SZX: 0}.Option(message.QBlock2)

	plain := listenUDPOrSkip(t, "127.0.0.1:0", func(context.Context, *Request) *Response {
		return &Response{Code: codes.Changed}
	}, Options{})
	pc := rawConn(t, plain)
	for _, o := range []message.Option{q1, q2} {
		r := roundTrip(t, pc, encode(t, message.Confirmable, codes.PUT, 7+uint16(o.ID), []byte{1}, "/fw", []byte("x"), o), time.Second)
		if r == nil || decodeMsg(t, r).Code != codes.BadOption {
			t.Fatalf("option %d without QBlock1: %v", o.ID, r)
		}
	}

	var mu sync.Mutex
	var calls int
	var got Block
	var origin Origin
	s := listenUDPOrSkip(t, "127.0.0.1:0", func(_ context.Context, r *Request) *Response {
		mu.Lock()
		defer mu.Unlock()
		calls++
		got, _ = r.QBlock1()
		origin = r.Origin()
		if b, ok := r.QBlock2(); ok {
			return &Response{Code: codes.Content, Payload: []byte("<"), ContentFormat: 40, Options: message.Options{Block{Num: b.Num, SZX: b.SZX}.Option(message.QBlock2)}}
		}
		return &Response{Code: codes.Empty}
	}, Options{QBlock1: true})
	c := rawConn(t, s)
	req := encode(t, message.Confirmable, codes.PUT, 100, []byte{9, 9}, "/fw", []byte("block 3"), q1)
	for i := range 2 {
		r := roundTrip(t, c, req, time.Second)
		if r == nil {
			t.Fatalf("copy %d: no answer", i)
		}
		m := decodeMsg(t, r)
		if m.Type != message.Acknowledgement || m.Code != codes.Empty || m.MessageID != 100 || len(m.Token) != 0 || len(r) != 4 {
			t.Fatalf("copy %d: %v %v mid %d token %x (%d bytes), want an empty ACK of 100", i, m.Type, m.Code, m.MessageID, m.Token, len(r))
		}
	}
	mu.Lock()
	if calls != 1 || got != (Block{Num: 3, More: true, SZX: 6}) {
		t.Errorf("handler called %d times with Q-Block1 %+v", calls, got)
	}
	o := origin
	mu.Unlock()
	// A non-confirmable block gets nothing.
	if r := roundTrip(t, c, encode(t, message.NonConfirmable, codes.PUT, 101, []byte{9, 9}, "/fw", []byte("b4"), q1), 100*time.Millisecond); r != nil {
		t.Fatalf("non-confirmable block answered: %v", decodeMsg(t, r).Code)
	}
	// The probe of RFC 9177 §4.1 reaches the handler.
	r := roundTrip(t, c, encode(t, message.Confirmable, codes.GET, 102, []byte{5}, "/.well-known/core", nil, q2), time.Second)
	if m := decodeMsg(t, r); m.Code != codes.Content || len(m.Options) == 0 {
		t.Fatalf("probe: %v %v", m.Code, m.Options)
	}
	// Later, a 4.08 of the server's own.
	if err := o.Send([]byte{9, 9}, &Response{Code: codes.RequestEntityIncomplete, ContentFormat: 272, Payload: []byte{4}}); err != nil {
		t.Fatal(err)
	}
	r = readReply(t, c, time.Second)
	if r == nil {
		t.Fatal("separate response not received")
	}
	m := decodeMsg(t, r)
	if m.Type != message.NonConfirmable || m.Code != codes.RequestEntityIncomplete || string(m.Token) != "\x09\x09" || string(m.Payload) != "\x04" {
		t.Fatalf("separate response %v %v token %x payload %x", m.Type, m.Code, m.Token, m.Payload)
	}
	if cf, err := m.Options.ContentFormat(); err != nil || cf != 272 {
		t.Errorf("content format %v %v", cf, err)
	}
	// Nothing leaves a closed server.
	s.Close()
	if err := o.Send([]byte{1}, &Response{Code: codes.Content}); err == nil {
		t.Error("Send on a closed server: no error")
	}
}
