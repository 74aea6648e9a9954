package results

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
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
	f.Fuzz(func(t *testing.T, in []byte) {
		events, err := ReadJSONL(bytes.NewReader(in))
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
