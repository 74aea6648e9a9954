package rsp

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs feeds the packet reader the worst a peer can send, as a
// stream generated while it is read: a packet with no end, a huge one, a
// huge binary-escaped one, run-length counts that expand each 3 bytes to
// 97, noise with no packet at all. Each ends, at the limit (the stub's
// 64 KiB) or at the end of the stream, having allocated at most 5 times
// the limit plus 16 KiB whatever the input's size (the payload grows by
// append, whose steps sum to about 4.4 times the final size).
func TestBombs(t *testing.T) {
	const big = 100 << 20
	tests := []struct {
		name    string
		in      func() *alloccheck.Stream
		prefix  string
		wantErr error
		maxRead int64 // bytes the reader may take
	}{
		{"packet of 100 MB with no end", func() *alloccheck.Stream { return alloccheck.Repeat("a", big) }, "$", ErrTooLong, limit + 8<<10},
		{"packet of 100 MB, then its end", func() *alloccheck.Stream { return alloccheck.Repeat("m0,4", big) }, "$", ErrTooLong, limit + 8<<10},
		{"100 MB of binary escapes", func() *alloccheck.Stream { return alloccheck.Repeat("}\x03}]", big) }, "$X0,0:", ErrTooLong, limit + 8<<10},
		{"run-length bomb, 97 bytes for 2", func() *alloccheck.Stream { return alloccheck.Repeat("*~", big) }, "$a", ErrTooLong, 2*limit/97 + 8<<10},
		{"run-length bomb of framing bytes", func() *alloccheck.Stream { return alloccheck.Repeat("*$", big) }, "$a", ErrMalformed, 8 << 10},
		// Read to the end a byte at a time: 16 MB is enough to show nothing grows.
		{"16 MB of noise, no packet", func() *alloccheck.Stream { return alloccheck.Repeat("+-\x03garbage#", 16<<20) }, "", io.EOF, 16 << 20},
		{"16 MB of packets restarted by '$'", func() *alloccheck.Stream { return alloccheck.Repeat("$"+strings.Repeat("x", 1000), 16<<20) }, "", io.ErrUnexpectedEOF, 16 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in()
			r := bufio.NewReader(io.MultiReader(strings.NewReader(tt.prefix), in))
			var (
				got []byte
				err error
			)
			c := alloccheck.Bound(t, tt.name, limit, 5, 16<<10, func() { got, err = ReadPacket(r, limit) })
			alloccheck.Log(t, tt.name, in.Off, c, err)
			if !errors.Is(err, tt.wantErr) || got != nil {
				t.Fatalf("ReadPacket = %d bytes, %v; want %v", len(got), err, tt.wantErr)
			}
			if errors.Is(err, ErrTooLong) && !strings.Contains(err.Error(), "over the 65536-byte limit") {
				t.Errorf("error %q does not name the limit", err)
			}
			if in.Off > tt.maxRead {
				t.Errorf("read %d bytes, at most %d expected", in.Off, tt.maxRead)
			}
		})
	}
	t.Run("DecodeBinary of a packet of escapes", func(t *testing.T) {
		p := []byte(strings.Repeat("}\x03", limit/2))
		var (
			out []byte
			err error
		)
		// The output is at most the input; the slack covers what the race
		// detector and the measuring itself allocate.
		c := alloccheck.Bound(t, "DecodeBinary", len(p), 1, alloccheck.FuzzSlack, func() { out, err = DecodeBinary(p) })
		alloccheck.Log(t, "DecodeBinary of 64 KiB of escapes", int64(len(p)), c, err)
		if err != nil || len(out) != limit/2 {
			t.Fatalf("DecodeBinary: %d bytes, %v", len(out), err)
		}
	})
}
