package coap

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"net"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/pion/dtls/v3/pkg/crypto/ccm"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// FuzzMatch feeds arbitrary datagrams to the client's receive side while it
// waits for the exchange (mid 0x1234, token 0102030405060708): it must not
// panic, must take only a well-formed response to that exchange, and must
// copy the payload out of its buffer.
func FuzzMatch(f *testing.F) {
	tok := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	const mid = 0x1234
	enc := func(m message.Message) []byte {
		buf := make([]byte, 2048)
		n, err := coder.DefaultCoder.Encode(m, buf)
		if err != nil {
			f.Fatal(err)
		}
		return buf[:n]
	}
	block := message.Options{{ID: message.Block1, Value: []byte{0x1e}}, {ID: message.Size1, Value: []byte{4, 0}}}
	f.Add(enc(message.Message{Type: message.Acknowledgement, Code: codes.Continue, MessageID: mid, Token: tok, Options: block}))
	f.Add(enc(message.Message{Type: message.Acknowledgement, Code: codes.Content, MessageID: mid, Token: tok, Payload: []byte("hello")}))
	f.Add(enc(message.Message{Type: message.Acknowledgement, MessageID: mid}))
	f.Add(enc(message.Message{Type: message.Confirmable, Code: codes.Changed, MessageID: 7, Token: tok}))
	f.Add(enc(message.Message{Type: message.Reset, MessageID: mid}))
	f.Add(enc(message.Message{Type: message.Confirmable, MessageID: 9}))
	f.Add([]byte{0x40})
	f.Add([]byte{0x68, 0x45, 0x12, 0x34, 1, 2, 3, 4, 5, 6, 7, 8, 0xd1, 0x0e, 0xff})

	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	defer sink.Close()
	sock, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		f.Fatal(err)
	}
	defer sock.Close()
	c := newClient(sink.LocalAddr().String(), sock, Transmission{AckTimeout: time.Second, MaxRetransmit: 1})

	f.Fuzz(func(t *testing.T, data []byte) {
		in := append([]byte(nil), data...)
		var (
			acked bool
			resp  *Response
			done  bool
			err   error
		)
		// Bounded: decoding keeps room for at most coapopt.MaxOptions
		// options; a response copies its payload out: at most 2 bytes a
		// byte plus 8 KiB and alloccheck.FuzzSlack.
		alloccheck.Bound(t, "match", len(in), 2, 8<<10+alloccheck.FuzzSlack, func() { resp, done, err = c.match(in, mid, tok, &acked) })
		if err != nil {
			if err != ErrReset || len(data) < 4 || data[0]&0x30 != 0x30 {
				t.Fatalf("error %v for % x", err, data)
			}
			return
		}
		if !done {
			return
		}
		// Only a response with our token, as a piggybacked ACK with our
		// message ID or a separate message.
		if len(data) < 4+len(tok) || !bytes.Equal(data[4:4+len(tok)], tok) || resp.Code < 64 {
			t.Fatalf("took %v from % x", resp.Code, data)
		}
		var m message.Message
		m.Options = make(message.Options, 0, len(data))
		if _, err := coder.DefaultCoder.Decode(data, &m); err != nil {
			t.Fatalf("took a response from bytes that do not decode: %v", err)
		}
		if !bytes.Equal(resp.Payload, m.Payload) {
			t.Fatalf("payload %q, message has %q", resp.Payload, m.Payload)
		}
		clear(in)
		if len(m.Payload) > 0 && !bytes.Equal(resp.Payload, m.Payload) {
			t.Fatal("payload shares the receive buffer")
		}
		if resp.Block1 != nil && (resp.Block1.SZX > 6 || resp.Block1 != &resp.block) {
			t.Fatalf("block %+v", resp.Block1)
		}
	})
}

// testRecordLayer is a record layer whose both directions use one key, so
// that what it seals it can open.
func testRecordLayer(t testing.TB, gcm bool) *recordLayer {
	blk, err := aes.NewCipher(bytes.Repeat([]byte{7}, 16))
	if err != nil {
		t.Fatal(err)
	}
	var a cipher.AEAD
	if gcm {
		a, err = cipher.NewGCM(blk)
	} else {
		a, err = ccm.NewCCM(blk, 8, 12)
	}
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordLayer{local: a, remote: a, epoch: 1, seq: 5}
	copy(rl.localIV[:], "ivIV")
	copy(rl.remoteIV[:], "ivIV")
	return rl
}

func TestRecordRoundTrip(t *testing.T) {
	for _, gcm := range []bool{false, true} {
		rl := testRecordLayer(t, gcm)
		msg := []byte("coap message")
		// Two records in one datagram: a repeated handshake record first.
		d := append([]byte{ctHandshake, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 9, 9}, rl.seal(nil, ctApplicationData, msg)...)
		pt, ok, _, err := rl.open(nil, d, nil)
		if err != nil || !ok || !bytes.Equal(pt, msg) {
			t.Fatalf("gcm %v: open: %q %v %v", gcm, pt, ok, err)
		}
		d[len(d)-1] ^= 1
		if _, ok, _, _ := rl.open(nil, d, nil); ok {
			t.Fatalf("gcm %v: a forged record opened", gcm)
		}
		if _, _, _, err := rl.open(nil, rl.seal(nil, ctAlert, []byte{1, 0}), nil); err != errDTLSAlert {
			t.Fatalf("gcm %v: close_notify gave %v", gcm, err)
		}
		if _, ok, _, err := rl.open(nil, rl.seal(nil, ctAlert, []byte{1, 90}), nil); ok || err != nil {
			t.Fatalf("gcm %v: a warning alert gave %v %v", gcm, ok, err)
		}
	}
}

// FuzzRecordOpen feeds arbitrary datagrams to the DTLS record layer, with
// and without connection IDs: it must not panic, must open nothing but what
// authenticates, must report every record it opens, and must hand back a
// tail of the datagram.
func FuzzRecordOpen(f *testing.F) {
	rl := testRecordLayer(f, true)
	cl := testRecordLayer(f, true)
	cl.sendCID, cl.recvCID = []byte{9, 8, 7, 6}, []byte{9, 8, 7, 6}
	f.Add(rl.seal(nil, ctApplicationData, []byte("hello")))
	f.Add(rl.seal(nil, ctAlert, []byte{2, 40}))
	f.Add(cl.seal(nil, ctApplicationData, []byte("hello")))
	f.Add(append(cl.seal(nil, ctApplicationData, []byte("one")), cl.seal(nil, ctAlert, []byte{1, 0})...))
	f.Add([]byte{ctApplicationData, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 0, 30})
	f.Add([]byte{ctCID, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1, 9, 8, 7, 6, 0, 30})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, l := range []*recordLayer{rl, cl} {
			seen := 0
			before := l.opened
			var (
				pt, rest []byte
				ok       bool
			)
			// Bounded: records open in place or into the plaintext buffer,
			// at most 2 bytes a byte plus 4 KiB and alloccheck.FuzzSlack.
			alloccheck.Bound(t, "open", len(data), 2, 4<<10+alloccheck.FuzzSlack, func() {
				pt, ok, rest, _ = l.open(make([]byte, 0, 16), data, func(RecordSeen) { seen++ })
			})
			if uint64(seen) != l.opened-before {
				t.Fatalf("%d records opened, %d reported", l.opened-before, seen)
			}
			if len(rest) > len(data) || !bytes.HasSuffix(data, rest) {
				t.Fatalf("rest % x is not a tail of % x", rest, data)
			}
			if !ok {
				continue
			}
			// Only a whole, authenticated record opens.
			if seen == 0 || len(data) < recordHeaderLen+len(l.recvCID)+explicitNonceLen+16 || len(pt) > len(data) {
				t.Fatalf("opened %q from % x", pt, data)
			}
		}
	})
}
