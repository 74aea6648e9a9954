package results

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// Bounds of what ReadJSONL may allocate per byte of the input it takes,
// plus a constant. The scanner's buffer grows by doubling to the longest
// line (2 bytes a byte); the worst is many tiny lines: "{}\n", 3 bytes,
// costs about 700 (the 112-byte Event, its room in the slice, which
// doubles, and encoding/json's state for the call), 230 a byte.
const (
	jsonlPerByte = 256
	jsonlFixed   = 256 << 10
)

// TestBombs feeds ReadJSONL the worst events.jsonl streams: a line that
// never ends, deep nesting, huge scalars, millions of events. Each is
// refused (or, for lines that are only long, read in bounded memory); a
// 100 MB stream is generated as it is read, never held.
func TestBombs(t *testing.T) {
	const big = 100 << 20
	tests := []struct {
		name      string
		in        func() io.Reader
		maxEvents int
		wantErr   string
		events    int
	}{
		{"100 MB line without a newline", func() io.Reader { return alloccheck.Repeat("a", big) }, MaxJSONLEvents,
			"line 1: longer than 16777216 bytes", 0},
		{"100 MB JSON string", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"kind":"x","text":"`), alloccheck.Repeat("y", big), strings.NewReader("\"}\n"))
		}, MaxJSONLEvents, "line 1: longer than 16777216 bytes", 0},
		{"a good event, then a 100 MB line", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"kind":"note"}`+"\n"), alloccheck.Repeat("[", big))
		}, MaxJSONLEvents, "line 2: longer than 16777216 bytes", 1},
		{"nesting 1 MiB deep", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"attrs":`), alloccheck.Repeat("[", 1<<20), strings.NewReader("\n"))
		}, MaxJSONLEvents, "exceeded max depth", 0},
		{"number of 1 MiB digits", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"block":`), alloccheck.Repeat("9", 1<<20), strings.NewReader("}\n"))
		}, MaxJSONLEvents, "... (1048583 bytes) into field block of type int64", 0},
		{"1 MiB of distinct attributes", func() io.Reader {
			var b strings.Builder
			b.WriteString(`{"kind":"x","attrs":{"k":""`)
			for i := 0; b.Len() < 1<<20; i++ {
				fmt.Fprintf(&b, `,"%x":""`, i)
			}
			b.WriteString("}}\n")
			return strings.NewReader(b.String())
		}, MaxJSONLEvents, "", 1},
		{"16 MB of empty lines", func() io.Reader { return alloccheck.Repeat("\n", 16<<20) }, MaxJSONLEvents, "", 0},
		{"events past the bound (lowered to 10,000)", func() io.Reader { return alloccheck.Repeat("{}\n", 3*100_000) }, 10_000,
			"line 10001: more than 10000 events", 10_000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.in()
			cr := &alloccheck.Counter{R: r}
			var (
				evs []Event
				err error
			)
			c := alloccheck.Measure(func() { evs, err = readJSONL(cr, tt.maxEvents) })
			alloccheck.Log(t, tt.name, cr.N, c, err)
			if limit := jsonlPerByte*uint64(cr.N) + jsonlFixed; c.Bytes > limit {
				t.Errorf("%d bytes read allocated %d bytes, more than %d", cr.N, c.Bytes, limit)
			}
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if len(evs) != tt.events {
				t.Errorf("%d events, want %d", len(evs), tt.events)
			}
			if cr.N > MaxJSONLLine+1<<20 && tt.wantErr != "" && strings.Contains(tt.wantErr, "longer") {
				t.Errorf("read %d bytes of a line past its bound", cr.N)
			}
		})
	}
}
