package coapopt

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/plgd-dev/go-coap/v3/message"
)

// TestBombs decodes the worst datagrams a peer can send (65,507 bytes, the
// most UDP carries over IPv4): one-byte options to the end, options whose
// length fields claim 65 KiB, a token length past 8. Each is refused, or
// decoded with its payload pointing into the datagram, having allocated at
// most the room for MaxOptions options (2 KiB) plus 4 KiB.
func TestBombs(t *testing.T) {
	const size = 65507
	head := []byte{0x40, 0x01, 0x12, 0x34} // CON GET, no token
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"65,000 one-byte options (empty Uri-Path)", append(head, append([]byte{0xb0}, bytes.Repeat([]byte{0x00}, size-5)...)...), "more than 64 in a 65507-byte datagram"},
		{"65 options", append(head, append([]byte{0xb0}, bytes.Repeat([]byte{0x00}, 64)...)...), "more than 64"},
		{"64 options", append(head, append([]byte{0xb0}, bytes.Repeat([]byte{0x00}, 63)...)...), ""},
		{"65,000 unknown elective options", append(head, bytes.Repeat([]byte{0x00}, size-4)...), ""},
		{"option length claiming 65,804 bytes", append(head, 0x0e, 0xff, 0xff), "option truncated"},
		{"option number past 65,535", append(head, bytes.Repeat([]byte{0xe0, 0xff, 0xff}, 20)...), "exceeds the maximum value"},
		{"token length 15", []byte{0x4f, 0x01, 0x12, 0x34}, "invalid"},
		{"payload of 65,498 bytes", append(append(head, 0xff), bytes.Repeat([]byte{'x'}, size-5)...), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m message.Message
			var err error
			c := alloccheck.Bound(t, tt.name, 0, 0, MaxOptions*32*2+4<<10, func() { err = Decode(tt.data, &m) })
			alloccheck.Log(t, tt.name, int64(len(tt.data)), c, err)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Decode: %v, want %q", err, tt.wantErr)
			}
			if strings.Contains(tt.wantErr, "more than") && !errors.Is(err, ErrTooManyOptions) {
				t.Fatalf("Decode: %v, want ErrTooManyOptions", err)
			}
			if cap(m.Options) > MaxOptions {
				t.Fatalf("room for %d options", cap(m.Options))
			}
		})
	}
}
