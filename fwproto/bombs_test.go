package fwproto

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// Bounds of what one decode may allocate, per byte of payload and fixed:
// the decoded struct, its strings and the error. A decode of any payload
// FuzzDecode has tried allocates at most 2.2 KiB; a bomb must stay below
// this too.
const (
	decodePerByte = 16
	decodeFixed   = 8 << 10
)

// head is a CBOR head of major type major with an argument of n, in the
// longest form (8 bytes) when long.
func head(major byte, n uint64, long bool) []byte {
	if long || n > 0xffffffff {
		return []byte{major<<5 | 27, byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	return []byte{major<<5 | 26, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// key is a text-string map key.
func key(s string) []byte { return append([]byte{0x60 | byte(len(s))}, s...) }

// TestBombs feeds each decoder the worst payloads a device can send: each
// is refused, with an error naming what broke, and allocates at most
// decodePerByte bytes per payload byte plus decodeFixed.
func TestBombs(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"payload of 1 MiB", bytes.Repeat([]byte{0xa0}, 1<<20), "exceeds the 1024-byte limit"},
		{"byte string claiming 4 GiB", cat([]byte{0xa1}, key("digest"), head(2, 1<<32-1, false), []byte("abc")), "unexpected EOF"},
		{"byte string claiming 2^63 bytes", cat([]byte{0xa1}, key("digest"), head(2, 1<<63-1, true)), "unexpected EOF"},
		{"byte string length past int", cat([]byte{0xa1}, key("digest"), head(2, 1<<64-1, true)), "integer overflow"},
		{"text string claiming 4 GiB", cat([]byte{0xa1}, key("version"), head(3, 1<<32-1, false)), "unexpected EOF"},
		{"map key claiming 4 GiB", cat([]byte{0xa1}, head(3, 1<<32-1, false)), "unexpected EOF"},
		{"array claiming 4 G elements", cat([]byte{0xa1}, key("x"), head(4, 1<<32-1, false)), "exceeded max number of elements 64"},
		{"map claiming 4 G pairs", head(5, 1<<32-1, false), "exceeded max number of key-value pairs 16"},
		{"map of 17 pairs", cat([]byte{0xb1}, bytes.Repeat(cat(key("a"), []byte{0}), 17)), "exceeded max number of key-value pairs 16"},
		{"array of 65 elements", cat([]byte{0xa1}, key("x"), []byte{0x98, 65}, make([]byte, 65)), "exceeded max number of elements 64"},
		{"nesting 1000 deep", cat([]byte{0xa1}, key("x"), bytes.Repeat([]byte{0x81}, 1000), []byte{0}), "exceeded max nested level 4"},
		{"nesting of maps 5 deep", cat(bytes.Repeat(cat([]byte{0xa1}, key("x")), 5), []byte{0}), "exceeded max nested level 4"},
		{"indefinite byte string", cat([]byte{0xa1}, key("digest"), []byte{0x5f, 0x41, 1, 0xff}), "indefinite-length byte string isn't allowed"},
		{"indefinite map", []byte{0xbf, 0xff}, "indefinite-length map isn't allowed"},
		{"indefinite array, never closed", cat([]byte{0xa1}, key("x"), []byte{0x9f}, bytes.Repeat([]byte{0}, 1000)), "indefinite-length array isn't allowed"},
		{"tag", cat([]byte{0xa1}, key("size"), []byte{0xc2, 0x41, 1}), "CBOR tag isn't allowed"},
		{"tags nested 500 deep", cat([]byte{0xa1}, key("size"), bytes.Repeat([]byte{0xd8, 0xff}, 500), []byte{1}), "CBOR tag isn't allowed"},
		{"bignum tag claiming 4 GiB", cat([]byte{0xa1}, key("size"), []byte{0xc2}, head(2, 1<<32-1, false)), "CBOR tag isn't allowed"},
	}
	decoders := map[string]func([]byte) error{
		"prepare": decPrepare, "state": decState, "boot": decBoot, "version": decVersion,
		"failure": func(b []byte) error { _, err := DecodeFailure(b); return err },
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for name, dec := range decoders {
				var err error
				c := alloccheck.Bound(t, name+": "+tt.name, len(tt.in), decodePerByte, decodeFixed, func() { err = dec(tt.in) })
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s: error %v, want one with %q", name, err, tt.wantErr)
				}
				if name == "state" {
					alloccheck.Log(t, tt.name, int64(len(tt.in)), c, err)
				}
			}
		})
	}
}
