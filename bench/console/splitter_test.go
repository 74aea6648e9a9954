package console

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// splitAll feeds chunks through a splitter and flushes at the end.
func splitAll(max int, chunks ...string) []string {
	s := newSplitter(max)
	var out []string
	emit := func(raw []byte, _ time.Time) { out = append(out, string(raw)) }
	now := time.Now()
	for _, c := range chunks {
		s.feed([]byte(c), now, emit)
	}
	s.flush(emit)
	return out
}

func TestSplitter(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		chunks []string
		want   []string
	}{
		{"crlf", 64, []string{"boot\r\nok\r\n"}, []string{"boot", "ok"}},
		{"lf", 64, []string{"a\nb\n"}, []string{"a", "b"}},
		{"empty lines", 64, []string{"\r\n\n"}, []string{"", ""}},
		{"cr split from lf", 64, []string{"ab\r", "\ncd\r", "\n"}, []string{"ab", "cd"}},
		{"lone cr dropped", 64, []string{"10%\r20%\r\n"}, []string{"10%20%"}},
		{"partial kept for flush", 64, []string{"login: "}, []string{"login: "}},
		{"line across chunks", 64, []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"only cr flushes nothing", 64, []string{"\r\r"}, nil},
		{"cut at max", 4, []string{"abcdefghij\n"}, []string{"abcd", "efgh", "ij"}},
		{"exact max then newline", 4, []string{"abcd\n"}, []string{"abcd"}},
		{"cut keeps a rune whole", 4, []string{"ab€c\n"}, []string{"ab", "€c"}},
		{"cut keeps a rune whole across chunks", 4, []string{"abc", "é", "\n"}, []string{"abc", "é"}},
		{"invalid bytes are not held back", 4, []string{"\xff\xff\xff\xff\xff\n"}, []string{"\xff\xff\xff\xff", "\xff"}},
		{"cut at max mixed", 5, []string{"aé€x\n"}, []string{"aé", "€x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := splitAll(tt.max, tt.chunks...)
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSplitterFlushThenNewline(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string // a flush comes after each chunk but the last
		want   []string
	}{
		{"late crlf ends the flushed line", []string{"abc", "\r", "\n"}, []string{"abc"}},
		{"late lf", []string{"abc", "\nnext\n"}, []string{"abc", "next"}},
		{"prompt then answer", []string{"login: ", "root\r\n"}, []string{"login: ", "root"}},
		{"second newline is a blank line", []string{"abc", "\r\n\r\n"}, []string{"abc", ""}},
		{"flush of nothing", []string{"\r", "\n"}, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSplitter(64)
			var got []string
			emit := func(raw []byte, _ time.Time) { got = append(got, string(raw)) }
			for i, c := range tt.chunks {
				s.feed([]byte(c), time.Now(), emit)
				if i < len(tt.chunks)-1 {
					s.flush(emit)
				}
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || len(got) != len(tt.want) {
				t.Fatalf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSplitterTimes(t *testing.T) {
	s := newSplitter(64)
	t0 := time.Now()
	var firsts []time.Duration
	emit := func(_ []byte, first time.Time) { firsts = append(firsts, first.Sub(t0)) }
	s.feed([]byte("ab"), t0.Add(1*time.Millisecond), emit)
	if s.due(t0.Add(100*time.Millisecond), 100*time.Millisecond) {
		t.Fatal("due 99 ms after the first byte")
	}
	if !s.due(t0.Add(101*time.Millisecond), 100*time.Millisecond) {
		t.Fatal("not due 100 ms after the first byte")
	}
	s.feed([]byte("c\nd"), t0.Add(5*time.Millisecond), emit)
	s.flush(emit)
	if s.due(t0.Add(time.Hour), time.Millisecond) {
		t.Fatal("due after a flush")
	}
	want := []time.Duration{1 * time.Millisecond, 5 * time.Millisecond}
	if len(firsts) != 2 || firsts[0] != want[0] || firsts[1] != want[1] {
		t.Fatalf("first-byte times = %v, want %v", firsts, want)
	}
}

func TestLineText(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"plain", "plain"},
		{"\xff\xfea\x00\xc3", "\uFFFDa\x00\uFFFD"},
		{"é€", "é€"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := lineText([]byte(tt.raw)); got != tt.want {
			t.Errorf("lineText(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

// FuzzLineSplitter checks the splitter's rules on arbitrary bytes cut into
// arbitrary chunks: no panic; the lines concatenated are the input without
// '\r' and '\n'; there are at least as many lines as '\n'; no line is
// longer than max; valid UTF-8 input gives valid UTF-8 lines; first-byte
// times never go backwards; lineText always gives valid UTF-8. Splitting
// is bounded in memory: at most 64 bytes allocated per input byte plus
// 64 KiB, all of it the test's own copies of the lines (a line a byte
// costs a 24-byte slice header, twice with the slice's growth); the
// splitter itself allocates nothing after newSplitter.
func FuzzLineSplitter(f *testing.F) {
	f.Add([]byte("boot v1.2\r\nrecovery: block 3\r\n> "), []byte{3, 1, 7}, uint8(8))
	f.Add([]byte("\xff\xfe\x00\r\r\n\n"), []byte{1}, uint8(4))
	f.Add([]byte(strings.Repeat("é€𝄞", 40)+"\n"), []byte{5, 2}, uint8(6))
	f.Add([]byte{}, []byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, data, cuts []byte, max8 uint8) {
		max := int(max8)%64 + 1
		s := newSplitter(max)
		max = s.max // the splitter raises a tiny max
		var lines [][]byte
		var last time.Time
		emit := func(raw []byte, first time.Time) {
			if first.Before(last) {
				t.Fatalf("first-byte time went backwards")
			}
			last = first
			lines = append(lines, bytes.Clone(raw))
		}
		alloccheck.Bound(t, "splitter", len(data), 64, 64<<10+alloccheck.FuzzSlack, func() {
			now := time.Unix(1000, 0)
			rest := data
			for i := 0; len(rest) > 0; i++ {
				n := len(rest)
				if len(cuts) > 0 {
					n = min(n, int(cuts[i%len(cuts)])+1)
				}
				s.feed(rest[:n], now, emit)
				rest = rest[n:]
				now = now.Add(time.Millisecond)
			}
			s.flush(emit)
		})

		want := bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r"), nil), []byte("\n"), nil)
		if got := bytes.Join(lines, nil); !bytes.Equal(got, want) {
			t.Fatalf("lines %q joined = %q, want %q", lines, got, want)
		}
		if nl := bytes.Count(data, []byte("\n")); len(lines) < nl {
			t.Fatalf("%d lines for %d newlines", len(lines), nl)
		}
		valid := utf8.Valid(data)
		for _, l := range lines {
			if len(l) > max {
				t.Fatalf("line of %d bytes, max %d", len(l), max)
			}
			if valid && !utf8.Valid(l) {
				t.Fatalf("valid input gave invalid line %q", l)
			}
			if txt := lineText(l); !utf8.ValidString(txt) || (utf8.Valid(l) && txt != string(l)) {
				t.Fatalf("lineText(%q) = %q", l, txt)
			}
		}
	})
}
