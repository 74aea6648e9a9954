package proc

import (
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs: a probe tool that prints 100 MB (generated as it is written)
// without a newline, or as a hundred million empty lines, through the
// 32 KiB writes io.Copy makes. Tail keeps the last Max bytes, and with
// Quoted allocates at most 8×Max plus 64 KiB whatever the output's length:
// Quoted reads the kept bytes from their end, n lines of them.
func TestBombs(t *testing.T) {
	const max = 64 << 10 // probes/cli's outputMax
	for _, tt := range []struct{ name, pattern string }{
		{"100 MB without a newline", "x"},
		{"100 MB of empty lines", "\n"},
		{"100 MB of one-byte lines", "a\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := alloccheck.Repeat(tt.pattern, 100<<20)
			tl := &Tail{Max: max}
			buf := make([]byte, 32<<10)
			var q string
			c := alloccheck.Bound(t, tt.name, 0, 0, 8*max+64<<10, func() {
				if _, err := io.CopyBuffer(struct{ io.Writer }{tl}, struct{ io.Reader }{in}, buf); err != nil {
					t.Error(err)
				}
				q = tl.Quoted(": ", 8)
			})
			alloccheck.Log(t, tt.name, in.Off, c, len(tl.String()))
			if len(tl.String()) != max || !strings.HasSuffix(strings.Repeat(tt.pattern, max), tl.String()) {
				t.Fatalf("kept %d bytes", len(tl.String()))
			}
			if strings.Count(q, `\n`) >= 8 {
				t.Fatalf("Quoted = %q", q)
			}
		})
	}
}
