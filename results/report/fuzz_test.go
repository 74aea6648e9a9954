package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/results"
)

// FuzzFromFiles feeds an output directory's files — summary.json and
// events.jsonl, which hold device bytes — through the report: it must
// never panic, and nothing from the input may reach the page as markup.
func FuzzFromFiles(f *testing.F) {
	s := newSynth([]string{"safe", "naive"}, 3, 3, func(b string, _, block int) bool { return b == "naive" && block < 2 })
	in := s.input()
	sum, _ := json.Marshal(in.Summary)
	var evs bytes.Buffer
	for _, e := range in.Events {
		b, _ := json.Marshal(e)
		evs.Write(append(b, '\n'))
	}
	f.Add(sum, evs.Bytes())
	f.Add([]byte(`{"run_id":"r","boards":["<x>"],"cuts":[{"board":"<x>","cycle":1,"plan":"at_time 5ms","fired":true,"t_ms":1e300,"last_acked":-5,"in_flight":9e18,"outcome":"bricked"}]}`),
		[]byte(`{"t":1,"board":"<x>","cycle":1,"kind":"update.start","block":-1}`+"\n"+
			`{"t":-9000000000000000000,"board":"<x>","cycle":1,"kind":"cut.trigger","block":3,"attrs":{"in_flight":"<script>"}}`+"\n"+
			`{"t":2,"board":"<x>","cycle":1,"kind":"block.acked","block":9000000000000,"dur":-1}`+"\n"+
			`{"t":3,"board":"<x>","cycle":1,"kind":"console.line","block":-1,"text":"<script>alert(1)</script>"}`))
	// Missed cuts: one that fired late with the device's record, one that
	// never fired, planned far outside any image.
	f.Add([]byte(`{"run_id":"r","boards":["b"],"missed_cuts":2,"cuts":[`+
		`{"board":"b","cycle":1,"plan":"after_block 2","planned_block":2,"fired":true,"last_acked":4,"in_flight":5,"outcome":"missed-cut","missed":"<b>late</b>","attempts":2,"device":{"writing":5,"last_acked":-9000000000000000000,"flash":"<i>erase"}},`+
		`{"board":"b","cycle":2,"plan":"at_time 1e9h","planned_block":9000000000000000000,"fired":false,"outcome":"missed-cut","missed":"never"}]}`),
		[]byte(`{"t":1,"board":"b","cycle":1,"kind":"cut.trigger","block":4}`))
	// Reading the two files is bounded: at most 256 bytes allocated per
	// byte of input plus 256 KiB (ReadJSONL's bound, see the results
	// package's TestBombs); the seeds and fuzzed inputs measured took at
	// most 141 KiB, most of it the 64 KiB line buffer.
	f.Fuzz(func(t *testing.T, sumJSON, eventsJSONL []byte) {
		var (
			sm   results.Summary
			err  error
			evs  []results.Event
			size = len(sumJSON) + len(eventsJSONL)
		)
		alloccheck.Bound(t, "summary.json and events.jsonl", size, 256, 256<<10+alloccheck.FuzzSlack, func() {
			if err = json.Unmarshal(sumJSON, &sm); err == nil {
				evs, _ = results.ReadJSONL(bytes.NewReader(eventsJSONL))
			}
		})
		if err != nil {
			return
		}
		if len(sm.Cuts) > 20 || len(evs) > 200 {
			return // bounded: the point is odd values, not volume
		}
		in := FromFiles(sm, evs)
		r, err := Build(*in)
		if err != nil {
			return
		}
		var page strings.Builder
		if err := Render(&page, r); err != nil {
			t.Fatalf("render: %v", err)
		}
		if strings.Contains(page.String(), "<script") {
			t.Fatal("input reached the page as a script element")
		}
	})
}
