package coap_test

import (
	"bytes"
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/coapopt"
)

// qServer is a Q-Block1 receiver that loses the first copy of the blocks
// in drop, answers 2.31 when a burst of max blocks is complete, and 4.08
// with the missing blocks when the last block arrives with gaps.
func qServer(t *testing.T, n, max int, drop map[uint32]bool) (addr string, body func() []byte) {
	t.Helper()
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	blocks := make([][]byte, n)
	done := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 65535)
		var mid uint16
		for {
			k, from, err := sock.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m message.Message
			if err := coapopt.Decode(buf[:k], &m); err != nil {
				continue
			}
			v, ok := coapopt.Uint(m.Options, coap.OptionQBlock1, 3)
			if !ok || m.Type != message.NonConfirmable {
				continue
			}
			num := v >> 4
			if drop[num] {
				delete(drop, num)
				continue
			}
			blocks[num] = append([]byte(nil), m.Payload...)
			var missing []uint32
			for i, b := range blocks[:num+1] {
				if b == nil {
					missing = append(missing, uint32(i))
				}
			}
			last := int(num) == n-1
			reply := message.Message{Token: m.Token, Type: message.NonConfirmable}
			switch {
			case len(missing) == 0 && !slices.ContainsFunc(blocks, func(b []byte) bool { return b == nil }):
				reply.Code = codes.Changed
			case (last || v&8 != 0 && (num+1)%uint32(max) == 0) && len(missing) > 0:
				reply.Code = codes.RequestEntityIncomplete
				reply.Payload = coap.AppendMissingBlocks(nil, missing)
				reply.Options = message.Options{{ID: message.ContentFormat, Value: coapopt.PutUint(make([]byte, 4), coap.MediaTypeMissingBlocks)}}
			case (num+1)%uint32(max) == 0:
				reply.Code = codes.Continue
				reply.Options = message.Options{{ID: coap.OptionQBlock1, Value: coapopt.PutUint(make([]byte, 4), v)}}
			default:
				continue
			}
			mid++
			reply.MessageID = int32(mid)
			b := make([]byte, 1500)
			k, err = coder.DefaultCoder.Encode(reply, b)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = sock.WriteToUDP(b[:k], from)
			if reply.Code == codes.Changed {
				done <- bytes.Join(blocks, nil)
			}
		}
	}()
	return sock.LocalAddr().String(), func() []byte {
		select {
		case b := <-done:
			return b
		case <-time.After(5 * time.Second):
			return nil
		}
	}
}

// TestQPutLostBlocks loses blocks inside bursts and at the end: the
// server's 4.08 lists them, the client sends them again, the body
// arrives whole.
func TestQPutLostBlocks(t *testing.T) {
	img := make([]byte, 25*64+10)
	for i := range img {
		img[i] = byte(i * 31)
	}
	addr, body := qServer(t, 26, 10, map[uint32]bool{3: true, 7: true, 25: true, 14: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := coap.Dial(ctx, addr, nil, coap.Transmission{AckTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var resent []uint32
	var lists [][]uint32
	r, err := c.QPut(ctx, "fw", img, 0, 2, []byte{9}, coap.QBlock{NonTimeout: 100 * time.Millisecond}, coap.QEvents{
		Sending: func(num uint32, again bool) {
			if again {
				resent = append(resent, num)
			}
		},
		Answer: func(r *coap.Response, missing []uint32) {
			if missing != nil {
				lists = append(lists, missing)
			}
		},
	})
	if err != nil {
		t.Fatalf("QPut: %v", err)
	}
	if r.Code != codes.Changed {
		t.Fatalf("final %v", r.Code)
	}
	if got := body(); !bytes.Equal(got, img) {
		t.Fatalf("server holds %d bytes, want the %d sent", len(got), len(img))
	}
	if len(lists) == 0 {
		t.Fatal("no 4.08 with missing blocks")
	}
	for _, want := range []uint32{3, 7, 14, 25} {
		if !slices.Contains(resent, want) {
			t.Errorf("block %d not sent again (resent %v, lists %v)", want, resent, lists)
		}
	}
}

// TestQPutUntil stops after block 9, whose first copy is lost: nothing
// past it is sent, block 9 goes again until the server answers for it,
// and the transfer then goes on from block 10 to the end.
func TestQPutUntil(t *testing.T) {
	img := make([]byte, 25*64+10)
	for i := range img {
		img[i] = byte(i * 17)
	}
	addr, body := qServer(t, 26, 10, map[uint32]bool{9: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := coap.Dial(ctx, addr, nil, coap.Transmission{AckTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var sent []uint32
	ev := coap.QEvents{Sending: func(num uint32, _ bool) { sent = append(sent, num) }}
	q := coap.QBlock{NonTimeout: 100 * time.Millisecond}
	r, err := c.QPutUntil(ctx, "fw", img, 0, 10, 2, []byte{9}, q, ev)
	if err != nil {
		t.Fatalf("QPutUntil: %v", err)
	}
	if r.Code != codes.Continue || r.Block1 == nil || r.Block1.Num != 9 {
		t.Fatalf("answer %v %+v, want 2.31 for block 9", r.Code, r.Block1)
	}
	if slices.Max(sent) != 9 || len(sent) != 11 || sent[10] != 9 {
		t.Fatalf("sent %v: want 0–9, then 9 again, nothing past it", sent)
	}
	if r, err = c.QPut(ctx, "fw", img, 10, 2, []byte{9}, q, ev); err != nil || r.Code != codes.Changed {
		t.Fatalf("QPut from 10: %v %v", r, err)
	}
	if got := body(); !bytes.Equal(got, img) {
		t.Fatalf("server holds %d bytes, want the %d sent", len(got), len(img))
	}
}

func TestMissingBlocksRoundTrip(t *testing.T) {
	in := []uint32{0, 1, 23, 24, 255, 256, 65535, 65536, 1<<20 - 1}
	got, err := coap.DecodeMissingBlocks(coap.AppendMissingBlocks(nil, in), 100)
	if err != nil || !slices.Equal(got, in) {
		t.Fatalf("got %v, %v; want %v", got, err, in)
	}
	for _, bad := range [][]byte{{0x18}, {0x1a, 0, 0x10, 0, 0}, {0x40}, {0x1f}, {0x19, 1}} {
		if _, err := coap.DecodeMissingBlocks(bad, 100); err == nil {
			t.Errorf("%x decoded", bad)
		}
	}
	if _, err := coap.DecodeMissingBlocks([]byte{1, 2, 3}, 2); err == nil {
		t.Error("more numbers than the limit decoded")
	}
}

func FuzzDecodeMissingBlocks(f *testing.F) {
	f.Add([]byte{0, 1, 0x18, 24, 0x19, 1, 0})
	f.Add([]byte{0x1b, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, p []byte) {
		nums, err := coap.DecodeMissingBlocks(p, 1<<20)
		if err != nil {
			return
		}
		for _, v := range nums {
			if v >= 1<<20 {
				t.Fatalf("block number %d out of range", v)
			}
		}
		again, err := coap.DecodeMissingBlocks(coap.AppendMissingBlocks(nil, nums), 1<<20)
		if err != nil || !slices.Equal(again, nums) {
			t.Fatalf("re-encoding %v gives %v, %v", nums, again, err)
		}
	})
}
