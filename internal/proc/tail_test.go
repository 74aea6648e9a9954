package proc

import (
	"bytes"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string // what is kept
		quoted string // Quoted(": ", 2)
	}{
		{"empty", 8, nil, "", ""},
		{"blank only", 8, []string{"\n \n"}, "\n \n", ""},
		{"fits", 64, []string{"a\n", "b\n", "c\n"}, "a\nb\nc\n", `: "b\nc"`},
		{"many small writes", 16, []string{"line 7\n", "line 8\n", "line 9\n"}, "7\nline 8\nline 9\n", `: "line 8\nline 9"`},
		{"cut", 4, []string{"abc\n", "de\n"}, "\nde\n", `: "de"`},
		{"one big write", 3, []string{"0123456789"}, "789", `: "789"`},
		{"crlf", 64, []string{"x\r\n\r\ny\r\n"}, "x\r\n\r\ny\r\n", `: "x\ny"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := &Tail{Max: tt.max}
			for _, w := range tt.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if tl.String() != tt.want {
				t.Errorf("kept %q, want %q", tl.String(), tt.want)
			}
			if got := tl.Quoted(": ", 2); got != tt.quoted {
				t.Errorf("Quoted = %q, want %q", got, tt.quoted)
			}
		})
	}
}

// FuzzTail feeds a program's output, which is outside bytes, through Tail
// and its last lines: the kept part is the suffix of what was written,
// bounded.
func FuzzTail(f *testing.F) {
	f.Add([]byte("Error: Connecting to the chip was unsuccessful.\n\nCaused by:\n"), 16, 3)
	f.Add([]byte("\x00\xff\r\n\n\n"), 1, 1)
	f.Add([]byte(strings.Repeat("x", 300)), 64, 7)
	f.Fuzz(func(t *testing.T, out []byte, max, split int) {
		if max <= 0 || max > 1<<16 || split <= 0 {
			t.Skip()
		}
		tl := &Tail{Max: max}
		// Bounded by Max, not by the output: at most 8×Max plus 4 bytes a
		// byte written (a write larger than Max is copied once), plus
		// 64 KiB and alloccheck.FuzzSlack; TestBombs measures 100 MB.
		alloccheck.Bound(t, "Tail", len(out), 4, uint64(8*max)+64<<10+alloccheck.FuzzSlack, func() {
			for rest := out; len(rest) > 0; {
				n := min(split, len(rest))
				tl.Write(rest[:n])
				rest = rest[n:]
			}
			tl.lastLines(8)
		})
		if len(tl.buf) > max {
			t.Fatalf("kept %d bytes, max %d", len(tl.buf), max)
		}
		if !bytes.HasSuffix(out, tl.buf) || len(tl.buf) != min(len(out), max) {
			t.Fatalf("kept %q, not the last %d bytes of %q", tl.buf, max, out)
		}
		const n = 8
		if s := tl.lastLines(n); strings.Count(s, "\n") >= n {
			t.Fatalf("lastLines(%d) = %q: too many lines", n, s)
		}
	})
}
