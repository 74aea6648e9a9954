package console

import (
	"bytes"
	"time"
	"unicode/utf8"
)

// MaxLine is the longest line kept whole; longer ones are cut into pieces
// of at most MaxLine bytes, so a board spewing binary without newlines
// cannot grow the bench's memory.
const MaxLine = 4096

// splitter cuts the byte stream read from a port into raw lines. Its rules,
// which the fuzz test checks:
//
//   - '\n' ends a line; every '\r' is dropped wherever it appears, so CRLF
//     firmware output reads as plain lines.
//   - A pending line of max bytes is emitted as a line when more of it
//     arrives. The cut moves back to the start of an incomplete trailing
//     UTF-8 sequence, so valid text stays valid in every piece.
//   - flush emits the pending bytes, if any, as a line (a prompt without a
//     newline, a line cut by a vanished port). A '\n' that follows a flushed
//     line with nothing but '\r' in between ends that line instead of
//     making an empty one, so a line whose CRLF comes late is still one
//     line.
//
// So the concatenation of the emitted lines is the input without its '\r'
// and '\n' bytes, and without flushes in between, the number of lines is at
// least the number of '\n'.
// The splitter works on bytes; invalid UTF-8 is dealt with in lineText.
type splitter struct {
	max     int
	buf     []byte
	started bool      // some byte of the pending line, even a '\r', arrived
	flushed bool      // the last line was flushed, and no text followed yet
	first   time.Time // when it arrived
}

func newSplitter(max int) *splitter {
	if max < utf8.UTFMax {
		max = utf8.UTFMax
	}
	return &splitter{max: max, buf: make([]byte, 0, max)}
}

// feed splits p, read at now. emit gets each line's bytes, valid only
// during the call, and the time its first byte was read.
func (s *splitter) feed(p []byte, now time.Time, emit func(raw []byte, first time.Time)) {
	for len(p) > 0 {
		if !s.started {
			s.started, s.first = true, now
		}
		i := bytes.IndexAny(p, "\r\n")
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if len(chunk) > 0 {
			s.flushed = false
		}
		for len(chunk) > 0 {
			// Cut only when more text follows, so a line of exactly max
			// bytes is one line, not a line and an empty one.
			if len(s.buf) == s.max {
				s.cut(now, emit)
			}
			n := min(len(chunk), s.max-len(s.buf))
			s.buf = append(s.buf, chunk[:n]...)
			chunk = chunk[n:]
		}
		if i < 0 {
			return
		}
		if p[i] == '\n' {
			if !s.flushed || len(s.buf) > 0 {
				emit(s.buf, s.first)
			}
			s.buf, s.started, s.flushed = s.buf[:0], false, false
		}
		p = p[i+1:]
	}
}

// cut emits a full buffer, keeping an incomplete trailing UTF-8 sequence
// for the next line.
func (s *splitter) cut(now time.Time, emit func([]byte, time.Time)) {
	n := len(s.buf)
	for i := n - 1; i >= 0 && i > n-utf8.UTFMax; i-- {
		if utf8.RuneStart(s.buf[i]) {
			if i > 0 && !utf8.FullRune(s.buf[i:]) {
				n = i
			}
			break
		}
	}
	emit(s.buf[:n], s.first)
	rest := copy(s.buf, s.buf[n:])
	s.buf = s.buf[:rest]
	s.first = now
}

// flush emits the pending line, if it has any bytes.
func (s *splitter) flush(emit func([]byte, time.Time)) {
	if len(s.buf) > 0 {
		emit(s.buf, s.first)
		s.flushed = true
	}
	s.buf, s.started = s.buf[:0], false
}

// due reports whether a pending line has waited at least d since its first
// byte.
func (s *splitter) due(now time.Time, d time.Duration) bool {
	return s.started && now.Sub(s.first) >= d
}

// lineText turns raw line bytes into text: each run of invalid UTF-8 (line
// noise, a wrong baud rate) becomes one U+FFFD, so events and reports stay
// printable and serialisable.
func lineText(raw []byte) string {
	if utf8.Valid(raw) {
		return string(raw)
	}
	return string(bytes.ToValidUTF8(raw, []byte("\uFFFD")))
}
