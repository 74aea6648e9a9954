package coapopt

import (
	"bytes"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
)

func TestPutUintIsMinimal(t *testing.T) {
	for _, c := range []struct {
		v    uint32
		want []byte
	}{
		{0, []byte{}},
		{1, []byte{1}},
		{255, []byte{255}},
		{256, []byte{1, 0}},
		{0x010203, []byte{1, 2, 3}},
		{0xffffffff, []byte{255, 255, 255, 255}},
	} {
		if got := PutUint(make([]byte, 4), c.v); !bytes.Equal(got, c.want) {
			t.Errorf("PutUint(%#x) = % x, want % x", c.v, got, c.want)
		}
	}
}

func TestUint(t *testing.T) {
	opts := message.Options{
		{ID: message.ContentFormat, Value: []byte{60}},
		{ID: message.Block1, Value: []byte{1, 2, 3, 4}}, // too long for Block1's 3 bytes
		{ID: message.Size1, Value: []byte{1, 0}},
		{ID: message.Size1, Value: []byte{9}}, // only the first counts
	}
	if v, ok := Uint(opts, message.ContentFormat, 2); !ok || v != 60 {
		t.Errorf("Content-Format %d %v", v, ok)
	}
	if _, ok := Uint(opts, message.Block1, 3); ok {
		t.Error("an over-long Block1 was not refused")
	}
	if v, ok := Uint(opts, message.Size1, 4); !ok || v != 256 {
		t.Errorf("Size1 %d %v", v, ok)
	}
	if _, ok := Uint(opts, message.Block2, 3); ok {
		t.Error("an absent option was found")
	}
	for _, v := range []uint32{0, 7, 300, 1 << 20, 0xffffffff} {
		o := message.Options{{ID: message.Size1, Value: PutUint(make([]byte, 4), v)}}
		if got, ok := Uint(o, message.Size1, 4); !ok || got != v {
			t.Errorf("round trip %d: %d %v", v, got, ok)
		}
	}
}
