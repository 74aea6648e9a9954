package console

import (
	"io"
	"log/slog"
	"testing"
	"unicode/utf8"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/results"
)

// streamPort is a serial port whose bytes come from a reader; only Read
// is used by the console's read loop.
type streamPort struct {
	serial.Port
	r io.Reader
}

func (p *streamPort) Read(b []byte) (int, error) { return p.r.Read(b) }

// Bounds of what the console may allocate per byte it reads, plus a
// constant: each line is turned into one string of its own length (1 a
// byte, 2 with U+FFFD for invalid bytes); the ring of kept lines and the
// read buffer are the constant.
const (
	consolePerByte = 3
	consoleFixed   = 1 << 20
)

// TestBombs feeds the console's read loop what a board that never sends a
// newline, or only sends garbage, would: 100 MB of it, generated as it is
// read. Lines are cut at MaxLine, the console keeps only its ring of
// KeepLines lines, and what it allocates is bounded per byte read.
func TestBombs(t *testing.T) {
	const big = 100 << 20
	tests := []struct {
		name      string
		pattern   string
		wantLines int64 // lines emitted
		maxLen    int   // longest line's text
	}{
		{"100 MB without a newline", "x", big / MaxLine, MaxLine},
		{"100 MB of invalid UTF-8", "\xff\xfe", big / MaxLine, 3 * MaxLine},
		{"16 MB of carriage returns", "\r", 0, 0},
		{"100 MB of 4-byte runes cut anywhere", "𝄞", -1, MaxLine},
		{"1 MB of empty lines", "\n", 1 << 20, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := int64(big)
			switch tt.pattern {
			case "\r":
				n = 16 << 20 // the splitter stops at each: 16 M is enough
			case "\n":
				n = 1 << 20 // a line each byte: 1 M lines is enough
			}
			var kept []string
			longest := 0
			c := &Console{
				board: "b", clock: results.NewClock(), cycle: func() int { return 0 },
				log: slog.New(slog.DiscardHandler), done: make(chan struct{}),
				waiters: map[*waiter]struct{}{}, subs: map[*subscriber]struct{}{},
				ring: make([]Line, DefaultKeepLines), partialFlush: DefaultPartialFlush,
				sink: results.SinkFunc(func(e results.Event) {
					longest = max(longest, len(e.Text))
					if !utf8.ValidString(e.Text) && len(kept) < 1 {
						kept = append(kept, e.Text)
					}
				}),
			}
			in := alloccheck.Repeat(tt.pattern, n)
			var err error
			cost := alloccheck.Bound(t, tt.name, int(n), consolePerByte, consoleFixed, func() {
				err = c.read(&streamPort{r: in}, newSplitter(MaxLine), make([]byte, 4096))
			})
			alloccheck.Log(t, tt.name, in.Off, cost, c.Stats().Lines)
			if err != io.EOF || in.Off != n {
				t.Fatalf("read %d of %d bytes, then %v", in.Off, n, err)
			}
			if len(kept) > 0 {
				t.Fatalf("a line that is not UTF-8: %q", kept[0])
			}
			if longest > tt.maxLen {
				t.Errorf("a line of %d bytes, at most %d", longest, tt.maxLen)
			}
			if got := int64(c.Stats().Lines); tt.wantLines >= 0 && got != tt.wantLines {
				t.Errorf("%d lines, want %d", got, tt.wantLines)
			}
			if last := c.Last(1000); len(last) > DefaultKeepLines {
				t.Errorf("%d lines kept, at most %d", len(last), DefaultKeepLines)
			}
		})
	}
}
