package results

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

func TestJSONLConcurrentEmit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out", "events.jsonl")
	j, err := OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 300
	clock := NewClock()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := clock.Stamp("b", w, BlockAcked)
				e.Block = int64(i)
				e.Text = strings.Repeat("x", i) // lines of many lengths
				j.Emit(e)
			}
		})
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j.Emit(clock.Stamp("b", 0, Note)) // after Close: ignored

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(raw, []byte("\n")) {
		t.Fatal("file does not end with a newline")
	}
	events, err := ReadJSONL(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != writers*each {
		t.Fatalf("got %d events, want %d", len(events), writers*each)
	}
	// Each writer's events must be in its emit order and whole.
	next := make([]int64, writers)
	for _, e := range events {
		if e.Block != next[e.Cycle] || len(e.Text) != int(e.Block) {
			t.Fatalf("writer %d: got block %d text %d, want %d", e.Cycle, e.Block, len(e.Text), next[e.Cycle])
		}
		next[e.Cycle]++
	}
}

func TestJSONLRoundTripAndAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	want := []Event{
		{T: 1500 * time.Microsecond, Wall: time.Date(2026, 11, 25, 10, 0, 0, 1, time.UTC), Board: "sim-safe",
			Cycle: 3, Kind: CutTrigger, Block: 17, Dur: 42 * time.Microsecond, Text: "after_block 17 <fired> & \"q\"",
			Attrs: map[string]string{"in_flight": "-1", "port": "/dev/pts/3"}},
		{T: 0, Wall: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Cycle: 0, Kind: Note, Block: -1},
	}
	for round := range 2 {
		j, err := OpenJSONL(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range want {
			j.Emit(e)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadJSONL(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want)*(round+1) {
			t.Fatalf("round %d: %d events, want %d (reopen must append)", round, len(got), len(want)*(round+1))
		}
		for i, e := range got {
			w := want[i%len(want)]
			if !e.Wall.Equal(w.Wall) {
				t.Errorf("event %d wall %v, want %v", i, e.Wall, w.Wall)
			}
			e.Wall = w.Wall
			if !reflect.DeepEqual(e, w) {
				t.Errorf("event %d:\n got %+v\nwant %+v", i, e, w)
			}
		}
	}
	raw, _ := os.ReadFile(path)
	if !bytes.Contains(raw, []byte(`<fired> &`)) {
		t.Errorf("HTML characters escaped; want them readable: %s", raw)
	}
}

func TestJSONLWriteErrors(t *testing.T) {
	t.Run("device full", func(t *testing.T) {
		if _, err := os.Stat("/dev/full"); err != nil {
			t.Skip("no /dev/full here")
		}
		j, err := OpenJSONL("/dev/full")
		if err != nil {
			t.Fatal(err)
		}
		j.Emit(Event{Kind: Note, Block: -1})
		if err := j.Err(); err == nil || !strings.Contains(err.Error(), "/dev/full") {
			t.Fatalf("Err() = %v, want an error naming /dev/full", err)
		}
		if err := j.Close(); err == nil {
			t.Fatal("Close returned no error after a failed write")
		}
	})
	t.Run("file closed under it", func(t *testing.T) {
		j, err := OpenJSONL(filepath.Join(t.TempDir(), "e.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		j.f.Close()
		j.Emit(Event{Kind: Note, Block: -1})
		if j.Err() == nil {
			t.Fatal("no error from a write to a closed file")
		}
	})
	t.Run("parent is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "f")
		os.WriteFile(f, nil, 0o644)
		if _, err := OpenJSONL(filepath.Join(f, "events.jsonl")); err == nil {
			t.Fatal("OpenJSONL under a regular file succeeded")
		}
	})
}

func TestReadJSONLErrors(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		n        int
		errMatch string
	}{
		{"empty", "", 0, ""},
		{"blank lines", "\n\n{\"kind\":\"note\",\"block\":-1}\n\n", 1, ""},
		{"no final newline", `{"kind":"note","block":-1}`, 1, ""},
		{"torn second line", "{\"kind\":\"note\"}\n{\"kind\":\"no", 1, "line 2"},
		{"not json", "hello\n", 0, "line 1"},
		{"wrong type", `{"t":"soon"}`, 0, "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadJSONL(strings.NewReader(tt.in))
			if len(got) != tt.n {
				t.Errorf("got %d events, want %d", len(got), tt.n)
			}
			if tt.errMatch == "" && err != nil {
				t.Errorf("unexpected error %v", err)
			}
			if tt.errMatch != "" && (err == nil || !strings.Contains(err.Error(), tt.errMatch)) {
				t.Errorf("error %v, want one with %q", err, tt.errMatch)
			}
		})
	}
}

func FuzzReadJSONL(f *testing.F) {
	f.Add([]byte(`{"t":1500,"wall":"2026-11-25T10:00:00Z","board":"b","cycle":1,"kind":"block.acked","block":3,"dur":10,"attrs":{"a":"b"}}` + "\n"))
	f.Add([]byte("{\"kind\":\"note\"}\n\n{\"kind\":\"x\",\"block\":-1}"))
	f.Add([]byte("{\"kind\":\"no"))
	f.Add([]byte("\xff\xfe\n"))
	// Bounded: at most jsonlPerByte (256) bytes allocated per byte plus
	// jsonlFixed (256 KiB; the scanner's buffer is 64 KiB of it). Measured
	// on the seeds and 20,000 fuzzed inputs: see TestBombs for the worst
	// case, tiny lines.
	f.Fuzz(func(t *testing.T, in []byte) {
		var (
			events []Event
			err    error
		)
		alloccheck.Bound(t, "ReadJSONL", len(in), jsonlPerByte, jsonlFixed+alloccheck.FuzzSlack, func() { events, err = ReadJSONL(bytes.NewReader(in)) })
		if err != nil {
			return
		}
		// What was read must survive a write and a read again.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		for _, e := range events {
			if err := enc.Encode(e); err != nil {
				return // e.g. a wall time outside what JSON time can hold
			}
		}
		again, err := ReadJSONL(&buf)
		if err != nil || len(again) != len(events) {
			t.Fatalf("re-read %d events (err %v), want %d", len(again), err, len(events))
		}
	})
}

// encodingJSONLine is the line json.Encoder (HTML escaping off) writes
// for e: what appendEvent must produce byte for byte.
func encodingJSONLine(t testing.TB, e Event) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(&e)
	return buf.Bytes(), err
}

// TestAppendEventMatchesEncodingJSON compares the hand-written line
// encoder with encoding/json on events with every optional field, escapes,
// invalid UTF-8, line separators, sorted attributes, extreme numbers and
// wall times in other zones, and checks the fallback cases.
func TestAppendEventMatchesEncodingJSON(t *testing.T) {
	wall := time.Date(2026, 11, 25, 21, 38, 35, 123456789, time.UTC)
	east := time.FixedZone("east", 5*3600+30*60)
	odd := time.FixedZone("lmt", -(7*3600 + 17*60 + 30))
	events := []Event{
		{},
		{T: 1, Wall: wall, Cycle: 3, Kind: BlockAcked, Block: 17, Dur: 180 * time.Microsecond},
		{T: -5, Wall: wall.In(east), Board: "sim-safe", Cycle: -1, Kind: ConsoleLine, Block: -1,
			Text: "APP <2.0.0> ready & \"quoted\" \\ back\tslash\n\r\b\f\x00\x1f\x7f é 日本 \u2028\u2029 \xff\xfe bad", Attrs: map[string]string{}},
		{T: math.MaxInt64, Wall: wall.In(odd), Board: "b\"x", Cycle: math.MaxInt32, Kind: "odd\x01kind", Block: math.MinInt64, Dur: math.MinInt64,
			Attrs: map[string]string{"z": "last", "a": "first", "m\n": "<mid>", "é": "\xc3", "": "empty key"}},
		{Wall: time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), Kind: Note, Text: "year 0"},
		{Wall: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Kind: Note, Text: strings.Repeat("long ", 20000)},
	}
	for i, e := range events {
		want, err := encodingJSONLine(t, e)
		if err != nil {
			t.Fatalf("event %d: encoding/json: %v", i, err)
		}
		got, ok := appendEvent(nil, &e)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("event %d (ok %v):\n got %q\nwant %q", i, ok, got, want)
		}
	}
	// Times encoding/json refuses are left to it, so its error is kept.
	for _, w := range []time.Time{
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600)),
	} {
		e := Event{Wall: w, Kind: Note}
		if _, ok := appendEvent(nil, &e); ok {
			t.Errorf("wall %v: appended, want the encoding/json fallback", w)
		}
		if _, err := encodingJSONLine(t, e); err == nil {
			t.Errorf("wall %v: encoding/json accepts it; the fallback is needless", w)
		}
	}
}

// TestEmitOutOfRangeWall: an event whose wall time encoding/json refuses
// is not written, the error is kept, and later events still are.
func TestEmitOutOfRangeWall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	j, err := OpenJSONL(path)
	if err != nil {
		t.Fatal(err)
	}
	j.Emit(Event{Wall: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: Note})
	j.Emit(Event{Wall: time.Now(), Kind: Note, Text: "after"})
	if err := j.Close(); err == nil || !strings.Contains(err.Error(), "encode note event") {
		t.Errorf("close: %v, want the encode error", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := ReadJSONL(bytes.NewReader(data))
	if err != nil || len(evs) != 1 || evs[0].Text != "after" {
		t.Errorf("read back %+v, %v; want the one later event", evs, err)
	}
}

// FuzzAppendEvent: for any strings and numbers, the hand-written encoder
// writes what encoding/json writes.
func FuzzAppendEvent(f *testing.F) {
	f.Add(int64(1), int64(1764106715123456789), "sim-safe", 3, "block.acked", int64(17), int64(180000), "APP 2.0.0 ready", "k", "v", 0)
	f.Add(int64(-1), int64(0), "b\"\\", -1, "\x00", int64(-1), int64(0), "\xff\u2028<&>", "\n", "\xc3", 19800)
	f.Fuzz(func(t *testing.T, tt, wallNs int64, board string, cycle int, kind string, block, dur int64, text, k, v string, zone int) {
		loc := time.FixedZone("z", zone%(30*3600))
		e := Event{T: time.Duration(tt), Wall: time.Unix(0, wallNs).In(loc), Board: board, Cycle: cycle, Kind: Kind(kind),
			Block: block, Dur: time.Duration(dur), Text: text}
		if k != "" || v != "" {
			e.Attrs = map[string]string{k: v, k + "2": text}
		}
		want, err := encodingJSONLine(t, e)
		got, ok := appendEvent(nil, &e)
		if err != nil {
			if ok {
				t.Fatalf("encoding/json refuses %+v (%v), appendEvent wrote %q", e, err, got)
			}
			return
		}
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("ok %v\n got %q\nwant %q", ok, got, want)
		}
	})
}
