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
	"sync"
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
	buf    bytes.Buffer
	enc    *json.Encoder
	err    error // first write error
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
	j.buf.Reset()
	if err := j.enc.Encode(&e); err != nil {
		j.fail(fmt.Errorf("results: jsonl %s: encode %s event: %w", j.path, e.Kind, err))
		return
	}
	// Encode ends the line with '\n'; os.File.Write is one write(2) for a
	// regular file unless the kernel writes short (disk full), which it
	// reports as an error.
	if _, err := j.f.Write(j.buf.Bytes()); err != nil {
		j.fail(fmt.Errorf("results: jsonl: %w", err)) // err names the file
	}
	// Do not let one huge console line pin a large buffer forever.
	if j.buf.Cap() > 64<<10 {
		j.buf = bytes.Buffer{}
	}
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

// MaxJSONLLine bounds one line ReadJSONL accepts.
const MaxJSONLLine = 16 << 20

// ReadJSONL decodes an events.jsonl stream. It stops at the first line
// that is not a whole JSON event and reports it by line number, along
// with the events before it. Empty lines are skipped.
func ReadJSONL(r io.Reader) ([]Event, error) {
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
		var e Event
		if err := json.Unmarshal(b, &e); err != nil {
			return out, fmt.Errorf("results: jsonl line %d: %w", line, err)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("results: jsonl line %d: %w", line+1, err)
	}
	return out, nil
}
