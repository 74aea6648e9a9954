package coapsrv

import (
	"context"
	"encoding/binary"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// FuzzDecode feeds arbitrary datagrams to the path that decodes and answers
// one datagram. Besides not panicking, every reply must itself decode, and a
// reply to a confirmable header must carry its message ID.
func FuzzDecode(f *testing.F) {
	f.Add(encode(f, message.Confirmable, codes.GET, 1, []byte{1}, "/boot", nil))
	f.Add(encode(f, message.NonConfirmable, codes.POST, 2, nil, "/fw/prepare", []byte{0xa0}))
	f.Add(encode(f, message.Confirmable, codes.PUT, 3, []byte{1, 2, 3, 4, 5, 6, 7, 8}, "/fw", make([]byte, 64),
		blockOpt(7, true, 2), message.Option{ID: message.RequestTag, Value: []byte{1, 2}},
		message.Option{ID: message.Size1, Value: []byte{4, 0}}))
	f.Add(encode(f, message.Confirmable, codes.GET, 4, nil, "/x", nil, message.Option{ID: 9999, Value: []byte{1}}))
	f.Add([]byte{0x40, 0, 0, 5})             // ping
	f.Add([]byte{0x49, 1, 0, 6})             // token length 9
	f.Add([]byte{0x40, 1, 0, 7, 0xff})       // payload marker, no payload
	f.Add([]byte{0x40, 1, 0, 8, 0xbd, 0xff}) // truncated extended option
	f.Add([]byte{0x60, 0x45, 0, 9})          // ACK
	f.Add(encode(f, message.NonConfirmable, codes.PUT, 10, []byte{9}, "/fw", make([]byte, 16),
		Block{Num: 4, More: true, SZX: 0}.Option(message.QBlock1)))
	f.Add(encode(f, message.Confirmable, codes.GET, 11, []byte{2}, "/.well-known/core", nil,
		Block{SZX: 0}.Option(message.QBlock2)))
	f.Add([]byte{})

	w, sent := sinkWorker(f, func(_ context.Context, r *Request) *Response {
		// Touch every accessor the way a handler would.
		_, _ = r.Block1()
		_, _ = r.Size1()
		_, _ = r.RequestTag()
		_, _ = r.ContentFormat()
		_, _ = r.Block2()
		_, _ = r.QBlock2()
		if b, ok := r.QBlock1(); ok && b.More {
			return &Response{Code: codes.Empty} // a block of a Q-Block1 body
		}
		return &Response{Code: codes.Content, ContentFormat: int(message.AppCBOR), Payload: r.Payload, Block1: &Block{Num: 1}}
	}, Options{MaxCached: 64, QBlock1: true})
	f.Fuzz(func(t *testing.T, data []byte) {
		*sent = (*sent)[:0]
		in := append([]byte(nil), data...)
		// Bounded: decoding keeps room for at most coapopt.MaxOptions
		// options; the handler echoes the payload: at most 4 bytes a byte
		// plus 16 KiB and alloccheck.FuzzSlack.
		alloccheck.Bound(t, "handle", len(in), 4, 16<<10+alloccheck.FuzzSlack, func() { w.handle(in) })
		if len(*sent) > 1 {
			t.Fatalf("%d replies to one datagram", len(*sent))
		}
		for _, r := range *sent {
			m := decodeMsg(t, r)
			if len(data) >= 4 && data[0]>>6 == 1 && message.Type(data[0]>>4&3) == message.Confirmable &&
				uint16(m.MessageID) != binary.BigEndian.Uint16(data[2:]) {
				t.Fatalf("reply MID %d to CON MID %d", m.MessageID, binary.BigEndian.Uint16(data[2:]))
			}
		}
	})
}
