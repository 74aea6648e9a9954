package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestTailLastLines(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string // buf
		lines  string // lastLines(2)
	}{
		{"empty", 8, nil, "", ""},
		{"blank only", 8, []string{"\n \n"}, "\n \n", ""},
		{"fits", 64, []string{"a\n", "b\n", "c\n"}, "a\nb\nc\n", `: "b\nc"`},
		{"cut", 4, []string{"abc\n", "de\n"}, "\nde\n", `: "de"`},
		{"one big write", 3, []string{"0123456789"}, "789", `: "789"`},
		{"crlf", 64, []string{"x\r\n\r\ny\r\n"}, "x\r\n\r\ny\r\n", `: "x\ny"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := &tail{max: tt.max}
			for _, w := range tt.writes {
				if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if string(tl.buf) != tt.want {
				t.Errorf("buf %q, want %q", tl.buf, tt.want)
			}
			if got := tl.lastLines(2); got != tt.lines {
				t.Errorf("lastLines(2) = %q, want %q", got, tt.lines)
			}
		})
	}
}

// FuzzTail feeds a tool's output, which is outside bytes, through tail and
// lastLines: the kept part is the suffix of what was written, bounded.
func FuzzTail(f *testing.F) {
	f.Add([]byte("Error: Connecting to the chip was unsuccessful.\n\nCaused by:\n"), 16, 3)
	f.Add([]byte("\x00\xff\r\n\n\n"), 1, 1)
	f.Add([]byte(strings.Repeat("x", 300)), 64, 7)
	f.Fuzz(func(t *testing.T, out []byte, max, split int) {
		if max <= 0 || max > 1<<16 || split <= 0 {
			t.Skip()
		}
		tl := &tail{max: max}
		for rest := out; len(rest) > 0; {
			n := min(split, len(rest))
			tl.Write(rest[:n])
			rest = rest[n:]
		}
		if len(tl.buf) > max {
			t.Fatalf("kept %d bytes, max %d", len(tl.buf), max)
		}
		if !bytes.HasSuffix(out, tl.buf) || len(tl.buf) != min(len(out), max) {
			t.Fatalf("kept %q, not the last %d bytes of %q", tl.buf, max, out)
		}
		if s := tl.lastLines(errorLines); s != "" && strings.Count(s, `\n`) > errorLines*2 {
			t.Fatalf("lastLines = %q: too many lines", s)
		}
	})
}
