package link

import (
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"

	"github.com/fudbench/fudbench/internal/coapopt"
)

func TestPeek(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		ok   bool
		blk  int64
	}{
		{"block 7", block1(t, 7), true, 7},
		{"block 0", block1(t, 0), true, 0},
		{"block 70000", block1(t, 70000), true, 70000},
		{"empty ACK", []byte{0x60, 0x00, 0x12, 0x34}, true, -1},
		{"2.31 with Block1 1", []byte{0x60, 0x5f, 0, 1, 0xd1, 0x0e, 0x1a}, true, 1},
		{"truncated option", []byte{0x40, 0x03, 0, 1, 0xd1}, true, -1},
		{"reserved nibble", []byte{0x40, 0x03, 0, 1, 0xf0}, true, -1},
		{"token length 9", []byte{0x49, 0x03, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9}, false, -1},
		{"DTLS record", []byte{0x17, 0xfe, 0xfd, 0, 1, 0, 0}, false, -1},
		{"short", []byte{0x40}, false, -1},
		{"nothing", nil, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Peek(tc.data)
			if c.OK != tc.ok || c.Block1 != tc.blk {
				t.Errorf("Peek: %+v, want ok %v block %d", c, tc.ok, tc.blk)
			}
		})
	}
}

// FuzzPeek: Peek never panics, and on a message go-coap decodes it finds
// the same header and Block1 number.
func FuzzPeek(f *testing.F) {
	f.Add(block1(f, 7))
	f.Add([]byte{0x60, 0x5f, 0, 1, 0xd1, 0x0e, 0x1a})
	f.Add([]byte{0x40, 0x03, 0, 1, 0xe0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Peek(data)
		var m message.Message
		if err := coapopt.Decode(data, &m); err != nil {
			return
		}
		if !c.OK || c.Code != uint8(m.Code) || c.MID != uint16(m.MessageID) || c.Type != uint8(m.Type) {
			t.Fatalf("Peek %+v, go-coap %v", c, m)
		}
		v, ok := coapopt.Uint(m.Options, message.Block1, 3)
		has := false
		for _, o := range m.Options {
			has = has || o.ID == message.Block1
		}
		switch {
		case ok && c.Block1 != int64(v>>4):
			t.Fatalf("Peek block %d, go-coap %d", c.Block1, v>>4)
		case !has && c.Block1 != -1:
			t.Fatalf("Peek block %d, go-coap none", c.Block1)
		}
	})
}
