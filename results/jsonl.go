package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// JSONL appends every event as one JSON line to a file as it is emitted.
//
// Each Emit encodes the event and hands the whole line to the kernel with
// a single write(2) on a file opened O_APPEND, with no buffering in the
// process: when the process is killed, every event already emitted is in
// the file and no line is torn. It does not fsync each line (a power loss
// of the host may lose the tail); Close syncs.
//
// JSONL is safe for concurrent use.
type JSONL struct {
	path string

	mu     sync.Mutex
	f      *os.File
	line   []byte // the line being written
	buf    bytes.Buffer
	enc    *json.Encoder // for events appendEvent leaves to encoding/json
	err    error         // first write error
	closed bool
}

var _ Sink = (*JSONL)(nil)

// OpenJSONL opens path for appending, creating it and its parent
// directory when missing.
func OpenJSONL(path string) (*JSONL, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("results: jsonl %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("results: jsonl: %w", err)
	}
	j := &JSONL{path: path, f: f}
	j.enc = json.NewEncoder(&j.buf)
	// Console lines often hold < and >; keep them readable.
	j.enc.SetEscapeHTML(false)
	return j, nil
}

// Path returns the file's path.
func (j *JSONL) Path() string { return j.path }

// Emit appends e as one line. A write error is kept (see Err) and logged
// once; later events are still attempted, so a transient error loses only
// the events it hit.
func (j *JSONL) Emit(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	line, ok := appendEvent(j.line[:0], &e)
	if !ok {
		// A wall time encoding/json refuses (year beyond 9999): let it
		// say so.
		j.buf.Reset()
		ev := e // only this path moves the event to the heap
		if err := j.enc.Encode(&ev); err != nil {
			j.fail(fmt.Errorf("results: jsonl %s: encode %s event: %w", j.path, e.Kind, err))
			return
		}
		line = append(line[:0], j.buf.Bytes()...)
		if j.buf.Cap() > 64<<10 {
			j.buf = bytes.Buffer{}
		}
	}
	// The line ends with '\n'; os.File.Write is one write(2) for a
	// regular file unless the kernel writes short (disk full), which it
	// reports as an error.
	if _, err := j.f.Write(line); err != nil {
		j.fail(fmt.Errorf("results: jsonl: %w", err)) // err names the file
	}
	// Do not let one huge console line pin a large buffer forever.
	if cap(line) > 64<<10 {
		line = nil
	}
	j.line = line
}

// appendEvent appends e as one JSON line, byte for byte what
// json.Encoder (HTML escaping off) writes for it, without reflection or
// allocation. It reports false, having appended nothing useful, for a
// wall time encoding/json refuses or formats otherwise (a year outside
// 0..9999, a zone offset of a day or more).
func appendEvent(b []byte, e *Event) ([]byte, bool) {
	if y := e.Wall.Year(); y < 0 || y > 9999 {
		return b, false
	}
	if _, off := e.Wall.Zone(); off <= -24*3600 || off >= 24*3600 {
		return b, false
	}
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, int64(e.T), 10)
	b = append(b, `,"wall":"`...)
	b = e.Wall.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.Board != "" {
		b = append(b, `,"board":`...)
		b = appendJSONString(b, e.Board)
	}
	b = append(b, `,"cycle":`...)
	b = strconv.AppendInt(b, int64(e.Cycle), 10)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, string(e.Kind))
	b = append(b, `,"block":`...)
	b = strconv.AppendInt(b, e.Block, 10)
	if e.Dur != 0 {
		b = append(b, `,"dur":`...)
		b = strconv.AppendInt(b, int64(e.Dur), 10)
	}
	if e.Text != "" {
		b = append(b, `,"text":`...)
		b = appendJSONString(b, e.Text)
	}
	if len(e.Attrs) > 0 {
		b = append(b, `,"attrs":{`...)
		var small [8]string
		keys := small[:0]
		for k := range e.Attrs {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendJSONString(b, e.Attrs[k])
		}
		b = append(b, '}')
	}
	return append(b, "}\n"...), true
}

// appendJSONString appends s quoted as encoding/json does with HTML
// escaping off: quote, backslash and control characters escaped, invalid
// UTF-8 replaced by U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func (j *JSONL) fail(err error) {
	if j.err == nil {
		j.err = err
		slog.Error("event log write failed; further errors are not logged", "err", err)
	}
}

// Err returns the first error an Emit met, or nil.
func (j *JSONL) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Close syncs and closes the file. It returns the first error any Emit
// met, joined with the close error. Emit after Close does nothing.
func (j *JSONL) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return j.err
	}
	j.closed = true
	var errs []error
	if j.err != nil {
		errs = append(errs, j.err)
	}
	if err := j.f.Sync(); err != nil {
		errs = append(errs, fmt.Errorf("results: jsonl %s: sync: %w", j.path, err))
	}
	if err := j.f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("results: jsonl %s: close: %w", j.path, err))
	}
	return errors.Join(errs...)
}

// Bounds of what ReadJSONL reads: an events.jsonl comes back from an
// output directory, which may come from anywhere.
const (
	// MaxJSONLLine bounds one line: an event the bench writes is under
	// 1 KiB (console lines are cut at 4 KiB).
	MaxJSONLLine = 16 << 20
	// MaxJSONLEvents bounds the events of one stream, 2 Mi: a campaign of
	// 4,000 cycles of 256-block updates (two events a block) fits, and
	// the events held stay near 500 MiB (about 250 bytes each, with
	// their strings and the slice's growth).
	MaxJSONLEvents = 2 << 20
)

// ReadJSONL decodes an events.jsonl stream. It stops at the first line
// that is not a whole JSON event and reports it by line number, along
// with the events before it. Empty lines are skipped. A line longer than
// MaxJSONLLine, or more than MaxJSONLEvents events, is an error too.
func ReadJSONL(r io.Reader) ([]Event, error) {
	return readJSONL(r, MaxJSONLEvents)
}

// maxErrorText bounds the text of a decoding error quoted in ReadJSONL's
// error.
const maxErrorText = 200

// clipError is err's text cut to maxErrorText bytes; a type error keeps
// the field and type it names.
func clipError(err error) string {
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && len(te.Value) > 40 {
		return fmt.Sprintf("json: cannot unmarshal %s... (%d bytes) into field %s of type %v", strings.ToValidUTF8(te.Value[:40], ""), len(te.Value), te.Field, te.Type)
	}
	msg := err.Error()
	if len(msg) <= maxErrorText {
		return msg
	}
	return fmt.Sprintf("%s... (%d bytes)", strings.ToValidUTF8(msg[:maxErrorText], ""), len(msg))
}

// readJSONL is ReadJSONL with the bound on events as a parameter, so that
// a test can reach it without millions of events.
func readJSONL(r io.Reader, maxEvents int) ([]Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxJSONLLine)
	var out []Event
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if len(out) == maxEvents {
			return out, fmt.Errorf("results: jsonl line %d: more than %d events", line, maxEvents)
		}
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			// encoding/json quotes a number it cannot store whole: a
			// line of a million digits would make a megabyte message.
			return out, fmt.Errorf("results: jsonl line %d: %s", line, clipError(err))
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, fmt.Errorf("results: jsonl line %d: longer than %d bytes: %w", line+1, MaxJSONLLine, err)
		}
		return out, fmt.Errorf("results: jsonl line %d: %w", line+1, err)
	}
	return out, nil
}
