package gdbstub

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// pipe is a client connection whose bytes come from a reader; what the
// stub answers is dropped.
type pipe struct{ io.Reader }

func (pipe) Write(p []byte) (int, error) { return len(p), nil }
func (pipe) Close() error                { return nil }

// TestBombs serves one connection whose client sends the worst the GDB
// protocol allows, 16 MB of it generated as it is read: a packet with no
// end, run-length counts that expand 3 bytes to 97, packets restarted by
// '$' for ever, packets of MaxPacket bytes of colons or escapes. Each
// packet is refused past MaxPacket (answered '-', its rest skipped as
// noise); the session ends at the end of the input, having allocated at
// most 16 bytes a byte plus 1 MiB (a packet's payload grows by append, 4.4
// bytes a byte).
func TestBombs(t *testing.T) {
	const n = 16 << 20
	colons := "$qXfer:" + strings.Repeat(":", MaxPacket-10) + "#00"
	tests := []struct {
		name   string
		prefix string
		in     *alloccheck.Stream
	}{
		{"packet of 16 MB with no end", "$", alloccheck.Repeat("m", n)},
		{"run-length bomb", "$a", alloccheck.Repeat("*~", n)},
		{"packets restarted by '$'", "", alloccheck.Repeat("$"+strings.Repeat("g", 1000), n)},
		{"qXfer packets of colons", "", alloccheck.Repeat(colons, n)},
		{"vFlashWrite packets of escapes", "", alloccheck.Repeat("$vFlashWrite:0:"+strings.Repeat("}\x03", (MaxPacket-20)/2)+"#00", n)},
		{"M packets of hex", "", alloccheck.Repeat("$M20000000,7ff0:"+strings.Repeat("00", 0x7ff0)+"#00", n)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := New(newFakeTarget(), Options{})
			var err error
			c := alloccheck.Bound(t, tt.name, n, 16, 1<<20, func() {
				err = srv.ServeConn(context.Background(), pipe{io.MultiReader(strings.NewReader(tt.prefix), tt.in)})
			})
			alloccheck.Log(t, tt.name, tt.in.Off, c, err)
			// The input may end inside a packet.
			if err != nil && err != io.ErrUnexpectedEOF || tt.in.Off != n {
				t.Fatalf("session ended after %d of %d bytes: %v", tt.in.Off, n, err)
			}
		})
	}
}
