package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// synth builds a run the way the executor records one: per board and
// cycle a power-on, an update start, blocks sent and acknowledged up to
// the cut, the cut, console lines, recovery milestones and the outcome.
// fail says whether a board's cycle cut after block b bricks.
type synth struct {
	run    results.RunInfo
	cycles []results.Cycle
	events []results.Event
	t      time.Duration
}

func newSynth(boards []string, blocks int, perBoard int, fail func(board string, cycle, block int) bool) *synth {
	s := &synth{run: results.RunInfo{ID: "run-1", Job: "soak", JobFile: "soak.yaml", Started: time.Unix(1700000000, 0).UTC(),
		Boards: boards, Host: "bench", Version: "test", Planned: map[string]int{}}}
	for _, b := range boards {
		s.run.Planned[b] = perBoard
		for n := 1; n <= perBoard; n++ {
			s.cycle(b, n, blocks, fail)
		}
	}
	return s
}

func (s *synth) emit(board string, cycle int, k results.Kind, block int64, text string, dur time.Duration) {
	s.t += 100 * time.Microsecond
	s.events = append(s.events, results.Event{T: s.t, Wall: s.run.Started.Add(s.t), Board: board, Cycle: cycle, Kind: k, Block: block, Text: text, Dur: dur})
}

func (s *synth) cycle(board string, n, blocks int, fail func(string, int, int) bool) {
	cut := (n - 1) % blocks
	c := results.Cycle{Run: s.run.ID, Board: board, Cycle: n, Plan: fmt.Sprintf("after_block %d", cut), PlannedBlock: int64(cut),
		Blocks: blocks, BlockSize: 1024, ImageSize: blocks * 1024, Start: s.t}
	s.emit(board, n, results.PowerOn, -1, "", 0)
	s.emit(board, n, results.Note, -1, "running 1.0.0", 0)
	start := s.t
	s.emit(board, n, results.UpdateStart, -1, "resumable", 0)
	for b := 0; b <= cut; b++ {
		s.emit(board, n, results.BlockSent, int64(b), "", 0)
		s.emit(board, n, results.BlockAcked, int64(b), "", time.Duration(200+10*b)*time.Microsecond)
		c.BlocksSent++
	}
	s.emit(board, n, results.PowerOff, -1, "", 0)
	s.emit(board, n, results.CutTrigger, int64(cut), c.Plan, 40*time.Microsecond)
	s.events[len(s.events)-1].Attrs = map[string]string{"in_flight": "-1"}
	c.Cut = &results.CutInfo{Trigger: c.Plan, T: s.t, Latency: 40 * time.Microsecond, LastAcked: int64(cut), InFlight: -1}
	s.emit(board, n, results.PowerOn, -1, "", 0)
	s.emit(board, n, results.ConsoleLine, -1, fmt.Sprintf("BL %s boots=%d", board, n), 0)
	if fail(board, n, cut) {
		c.Outcome, c.Reason, c.Reflashed = results.Bricked, "no answer on CoAP", true
		c.Accepted = true
		c.LastConsole = []string{fmt.Sprintf("BL %s boots=%d", board, n), "BL <b>image invalid</b> & \"no app\""}
		s.emit(board, n, results.ConsoleLine, -1, c.LastConsole[1], 0)
	} else {
		s.emit(board, n, results.Recovery, -1, "coap-reachable", time.Duration(20+n%7)*time.Millisecond)
		c.RecoveryAnswer = time.Duration(20+n%7) * time.Millisecond
		for b := cut + 1; b < blocks; b++ {
			s.emit(board, n, results.BlockSent, int64(b), "", 0)
			s.emit(board, n, results.BlockAcked, int64(b), "", time.Duration(200+10*b)*time.Microsecond)
			c.BlocksSent++
		}
		s.emit(board, n, results.UpdateDone, int64(blocks-1), "", 0)
		s.emit(board, n, results.Recovery, -1, "new-version-running", time.Duration(30+n%11)*time.Millisecond)
		c.RecoveryVersion = time.Duration(30+n%11) * time.Millisecond
		c.Outcome, c.Accepted = results.Updated, true
		c.LastConsole = []string{fmt.Sprintf("BL %s boots=%d", board, n), fmt.Sprintf("APP v2.0.0 %s", board)}
		s.emit(board, n, results.ConsoleLine, -1, c.LastConsole[1], 0)
	}
	c.Transfer = s.t - start
	s.emit(board, n, results.CycleOutcome, -1, string(c.Outcome), 0)
	c.End = s.t
	s.cycles = append(s.cycles, c)
}

func (s *synth) input() Input {
	sum := results.Summarize(s.run, s.cycles)
	return Input{Run: results.RunRecord{RunInfo: s.run, Finished: s.run.Started.Add(s.t), Status: string(sum.Verdict)},
		Summary: sum, Cycles: s.cycles, Events: s.events, History: []RunStat{NewRunStat(sum)}, Source: "test"}
}

func TestBuildGrids(t *testing.T) {
	// naive bricks when cut before its last block; safe never.
	s := newSynth([]string{"safe", "naive"}, 6, 12, func(b string, _, block int) bool { return b == "naive" && block < 5 })
	// One extra cycle without a cut, and one cut at a time.
	s.cycles = append(s.cycles,
		results.Cycle{Board: "safe", Cycle: 13, Plan: "none", PlannedBlock: -1, Outcome: results.Updated, Accepted: true, Blocks: 6},
		results.Cycle{Board: "naive", Cycle: 14, Plan: "at_time 30ms", PlannedBlock: -1, Outcome: results.RolledBack, Blocks: 6,
			Cut: &results.CutInfo{Trigger: "at_time 30ms", T: time.Hour, LastAcked: 2, InFlight: 3}})
	s.events = append(s.events,
		results.Event{T: time.Hour - 32*time.Millisecond, Board: "naive", Cycle: 14, Kind: results.UpdateStart, Block: -1},
		results.Event{T: time.Hour, Board: "naive", Cycle: 14, Kind: results.CutTrigger, Block: 2})
	grids := BuildGrids([]string{"safe", "naive"}, map[string]string{"naive": "naive (block1)"}, s.cycles, indexEvents(s.events))
	if len(grids) != 2 || grids[0].Axis != AxisBlock || grids[1].Axis != AxisTime {
		t.Fatalf("grids %+v, want a block grid and a time grid", grids)
	}
	g := grids[0]
	if g.XMin != 0 || g.XMax != 5 || len(g.Rows) != 2 {
		t.Fatalf("block grid x [%v, %v] rows %d, want [0, 5] and 2 rows", g.XMin, g.XMax, len(g.Rows))
	}
	safe, naive := g.Rows[0], g.Rows[1]
	if safe.Label != "safe" || naive.Label != "naive (block1)" {
		t.Errorf("row labels %q %q", safe.Label, naive.Label)
	}
	if len(naive.Cells) != 6 {
		t.Fatalf("naive has %d cells, want 6", len(naive.Cells))
	}
	for i, c := range naive.Cells {
		want := results.Bricked
		if i == 5 {
			want = results.Updated
		}
		if c.X != float64(i) || c.Worst != want || c.N != 2 || c.Counts[want] != 2 {
			t.Errorf("naive cell %d: %+v, want x %d worst %s of 2", i, c, i, want)
		}
	}
	if want := []string{"bricked at blocks 0–4 (10 of 10 cycles failed)"}; !slices.Equal(naive.Fragile, want) {
		t.Errorf("naive fragile %q, want %q", naive.Fragile, want)
	}
	if len(safe.Fragile) != 0 || safe.NoCut[results.Updated] != 1 {
		t.Errorf("safe: fragile %q, no-cut %v; want none and one updated", safe.Fragile, safe.NoCut)
	}
	tg := grids[1]
	if len(tg.Rows) != 1 || tg.Rows[0].Board != "naive" || len(tg.Rows[0].Cells) != 1 {
		t.Fatalf("time grid %+v, want one naive cell", tg)
	}
	c := tg.Rows[0].Cells[0]
	// 32 ms into the transfer in a bin of width 1 ms.
	if c.X != 32 || c.Width != 1 || c.Worst != results.RolledBack || tg.XMax != 33 {
		t.Errorf("time cell %+v (x max %v), want [32, 33) rolled-back", c, tg.XMax)
	}
}

func TestCutPositionPrefersBlockInFlight(t *testing.T) {
	c := results.Cycle{Plan: "during_block 8 +1ms", Cut: &results.CutInfo{LastAcked: 11, InFlight: 12}}
	if p := cutPosition(c, nil); p.axis != AxisBlock || p.x != 12 {
		t.Errorf("position %+v, want block 12 (in flight)", p)
	}
	c.Cut.InFlight = -1
	if p := cutPosition(c, nil); p.x != 11 {
		t.Errorf("position %+v, want block 11 (last acknowledged)", p)
	}
	c.Plan = "at_time 150ms"
	if p := cutPosition(c, nil); p.axis != AxisTime || p.x != 150 {
		t.Errorf("position %+v, want 150 ms from the plan", p)
	}
	if p := cutPosition(results.Cycle{Plan: "none"}, nil); p.axis != "" {
		t.Errorf("no cut placed at %+v", p)
	}
}

func TestBuildItemsCollapsesBlocks(t *testing.T) {
	s := newSynth([]string{"b"}, 4, 3, func(string, int, int) bool { return true })
	evs := indexEvents(s.events)[cycleKey{"b", 3}]
	items, cut := buildItems(evs)
	if cut != 0 {
		t.Fatalf("%d items cut from a short cycle", cut)
	}
	var kinds []string
	for _, it := range items {
		kinds = append(kinds, it.Kind)
	}
	want := []string{"power.on", "note", "update.start", "blocks", "power.off", "cut.trigger", "power.on", "console.line", "console.line", "cycle.outcome"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("items %q, want %q", kinds, want)
	}
	if it := items[3]; it.Text != "blocks 0–2: 3 sent, 3 acknowledged, round trip p50 210µs" || it.Class != "block" {
		t.Errorf("block item %+v", it)
	}
	if it := items[5]; !strings.Contains(it.Text, "last acknowledged 2, in flight none") {
		t.Errorf("cut item %q", it.Text)
	}
	if items[0].TMs != 0 || items[len(items)-1].TMs <= 0 {
		t.Errorf("times %v … %v, want from 0", items[0].TMs, items[len(items)-1].TMs)
	}

	// A long cycle keeps its start and its end.
	var long []results.Event
	for i := range 400 {
		k := results.ConsoleLine
		long = append(long, results.Event{T: time.Duration(i) * time.Millisecond, Kind: k, Block: -1, Text: fmt.Sprint(i)})
	}
	items, cut = buildItems(long)
	if len(items) != MaxTimelineItems || cut != 400-MaxTimelineItems || items[0].Text != "0" || items[len(items)-1].Text != "399" {
		t.Errorf("long cycle: %d items, %d cut, first %q last %q", len(items), cut, items[0].Text, items[len(items)-1].Text)
	}
}

func TestBuildRTT(t *testing.T) {
	var evs []results.Event
	// Block 0: round trips 1…10 ms; block 1: 5 ms each, 20 times.
	for i := 1; i <= 10; i++ {
		evs = append(evs, results.Event{Board: "b", Kind: results.BlockAcked, Block: 0, Dur: time.Duration(i) * time.Millisecond})
	}
	for range 20 {
		evs = append(evs, results.Event{Board: "b", Kind: results.BlockAcked, Block: 1, Dur: 5 * time.Millisecond})
	}
	ss := buildRTT([]string{"b", "silent"}, evs)
	if len(ss) != 1 {
		t.Fatalf("%d series, want one (a board without round trips has none)", len(ss))
	}
	s := ss[0]
	if !slices.Equal(s.X, []float64{0, 1}) || !slices.Equal(s.P50, []float64{5, 5}) || !slices.Equal(s.P95, []float64{10, 5}) || s.Samples != 30 {
		t.Errorf("series %+v", s)
	}

	// Thousands of blocks share points.
	evs = evs[:0]
	for b := range int64(5000) {
		evs = append(evs, results.Event{Board: "b", Kind: results.BlockAcked, Block: b, Dur: time.Millisecond})
	}
	s = buildRTT([]string{"b"}, evs)[0]
	if len(s.X) > MaxRTTPoints+1 || len(s.X) < MaxRTTPoints/2 {
		t.Errorf("5000 blocks drawn as %d points", len(s.X))
	}
}

func TestFromFilesMatchesCycles(t *testing.T) {
	s := newSynth([]string{"safe", "naive"}, 5, 5, func(b string, _, block int) bool { return b == "naive" && block < 4 })
	in := s.input()
	got := FromFiles(in.Summary, in.Events)
	if len(got.Cycles) != len(s.cycles) {
		t.Fatalf("%d cycles from files, want %d", len(got.Cycles), len(s.cycles))
	}
	byKey := map[cycleKey]results.Cycle{}
	for _, c := range got.Cycles {
		byKey[cycleKey{c.Board, c.Cycle}] = c
	}
	for _, want := range s.cycles {
		c := byKey[cycleKey{want.Board, want.Cycle}]
		if c.Outcome != want.Outcome || c.Accepted != want.Accepted || c.Plan != want.Plan ||
			c.BlocksSent != want.BlocksSent || c.RecoveryAnswer != want.RecoveryAnswer || c.RecoveryVersion != want.RecoveryVersion ||
			c.Cut == nil || c.Cut.LastAcked != want.Cut.LastAcked || !slices.Equal(c.LastConsole[len(c.LastConsole)-1:], want.LastConsole[len(want.LastConsole)-1:]) {
			t.Errorf("%s cycle %d from files:\n got %+v\nwant %+v", want.Board, want.Cycle, c, want)
		}
	}
}

// render builds and renders in, failing the test on error.
func render(t testing.TB, in Input) (*Report, string) {
	t.Helper()
	r, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		t.Fatal(err)
	}
	return r, b.String()
}

// external matches anything that would make a browser fetch: an src or
// href to another place, a CSS url() or @import, a script.
var external = regexp.MustCompile(`(?i)(src\s*=|href\s*=\s*"(?:[a-z]+:|//)|url\(|@import|<script|<link|<iframe|<object|<embed)`)

func TestRenderSelfContainedAndEscaped(t *testing.T) {
	s := newSynth([]string{"safe", "naive<i>"}, 6, 8, func(b string, _, block int) bool { return b == "naive<i>" && block < 5 })
	r, page := render(t, s.input())
	if m := external.FindString(page); m != "" {
		t.Errorf("the page refers outside itself: %q", m)
	}
	if strings.Contains(page, "<b>image invalid</b>") || strings.Contains(page, "naive<i>") {
		t.Error("device bytes or a board name reached the page unescaped")
	}
	if !strings.Contains(page, "BL &lt;b&gt;image invalid&lt;/b&gt; &amp; &#34;no app&#34;") {
		t.Error("the console line is not shown escaped")
	}
	if strings.Contains(page, "ZgotmplZ") {
		t.Error("the template rejected a value (ZgotmplZ)")
	}
	if strings.Contains(page, "<?xml") {
		t.Error("an XML prelude is left inside the HTML")
	}
	for _, id := range []string{"summary", "outcome-map", "recovery", "transfer", "trend", "failures"} {
		if !strings.Contains(page, `<section id="`+id+`">`) {
			t.Errorf("section %s missing", id)
		}
	}
	// naive's 8 cycles cut after blocks 0, 1, 2, 3, 4, 5, 0, 1: 7 are
	// before its last block and brick, each listed with a plot.
	if r.FailedTotal != 7 || len(r.Failed) != 7 || r.FailedMore != 0 {
		t.Errorf("failed: total %d listed %d more %d, want 7 7 0", r.FailedTotal, len(r.Failed), r.FailedMore)
	}
	if n := strings.Count(page, `<svg class="plot"`); n < 8+7 {
		t.Errorf("%d plots, want at least 15", n)
	}
	if !strings.Contains(page, `data-outcome="bricked">7<`) {
		t.Error("the bricked count is not in the header")
	}
}

// TestReportSizeOfSoak renders a 5,000-cycle soak run: the report must
// stay a reasonable file, list the first failed cycles and count the
// rest.
func TestReportSizeOfSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("a 5,000-cycle run")
	}
	s := newSynth([]string{"safe", "naive"}, 16, 2500, func(b string, n, block int) bool { return b == "naive" && n%3 == 0 })
	start := time.Now()
	r, page := render(t, s.input())
	t.Logf("5,000 cycles, %d events: %d bytes in %v", len(s.events), len(page), time.Since(start).Round(time.Millisecond))
	if len(page) > 2<<20 {
		t.Errorf("report of 5,000 cycles is %d bytes, want at most 2 MiB", len(page))
	}
	if r.FailedTotal != 833 || len(r.Failed) != MaxFailedShown || r.FailedMore != 833-MaxFailedShown {
		t.Errorf("failed: total %d listed %d more %d", r.FailedTotal, len(r.Failed), r.FailedMore)
	}
	if !strings.Contains(page, fmt.Sprintf(`<span id="failed-more">%d more</span>`, 833-MaxFailedShown)) {
		t.Error("the page does not say how many failed cycles it leaves out")
	}
}

func TestLoadOutputDirWithoutDB(t *testing.T) {
	s := newSynth([]string{"safe", "naive"}, 4, 4, func(b string, _, block int) bool { return b == "naive" && block < 3 })
	in := s.input()
	dir := t.TempDir()
	if err := results.WriteSummaryJSON(filepath.Join(dir, SummaryFile), in.Summary); err != nil {
		t.Fatal(err)
	}
	j, err := results.OpenJSONL(filepath.Join(dir, EventsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range s.events {
		j.Emit(e)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	if got.Summary.RunID != "run-1" || len(got.Cycles) != 8 || len(got.Events) != len(s.events) || len(got.History) != 0 {
		t.Errorf("loaded run %s, %d cycles, %d events, %d history", got.Summary.RunID, len(got.Cycles), len(got.Events), len(got.History))
	}
	if _, err := Load(dir, "other"); err == nil || !strings.Contains(err.Error(), `no run "other"`) {
		t.Errorf("unknown run: %v", err)
	}
	out := filepath.Join(dir, "report.html")
	if err := WriteFile(out, *got); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil || !bytes.Contains(b, []byte("run-1")) {
		t.Errorf("report file: %v, %d bytes", err, len(b))
	}
}

func TestLoadDBTrend(t *testing.T) {
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	// Three runs of one job with 0, 2 and 4 of 8 cycles bricked, and a
	// run of another job that must stay out of the trend.
	for i, job := range []string{"soak", "soak", "other", "soak"} {
		bad := 2 * i
		if i == 3 {
			bad = 4
		}
		s := newSynth([]string{"b"}, 8, 8, func(_ string, n, _ int) bool { return n <= bad })
		s.run.ID, s.run.Job = fmt.Sprintf("run-%d", i), job
		s.run.Started = s.run.Started.Add(time.Duration(i) * time.Hour)
		if err := db.BeginRun(s.run); err != nil {
			t.Fatal(err)
		}
		sink := db.Events(s.run.ID)
		for _, e := range s.events {
			sink.Emit(e)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		for _, c := range s.cycles {
			c.Run = s.run.ID
			if err := db.RecordCycle(c); err != nil {
				t.Fatal(err)
			}
		}
		if i != 1 { // run-1 never finished: its summary is derived
			if err := db.FinishRun(s.run.ID, "fail", results.Summarize(s.run, s.cycles)); err != nil {
				t.Fatal(err)
			}
		}
	}
	in, err := FromDB(db, "")
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	if in.Summary.RunID != "run-3" || len(in.Cycles) != 8 || len(in.Events) == 0 {
		t.Fatalf("newest run: %s with %d cycles, %d events", in.Summary.RunID, len(in.Cycles), len(in.Events))
	}
	var ids []string
	var failed []int
	for _, r := range in.History {
		ids = append(ids, r.ID)
		failed = append(failed, r.Failed)
	}
	if !slices.Equal(ids, []string{"run-0", "run-1", "run-3"}) || !slices.Equal(failed, []int{0, 2, 4}) {
		t.Errorf("trend runs %v failed %v, want run-0, run-1, run-3 with 0, 2, 4", ids, failed)
	}
	if r := in.History[2]; r.Rate != 0.5 || r.Lo >= 0.5 || r.Hi <= 0.5 {
		t.Errorf("run-3: rate %v [%v, %v]", r.Rate, r.Lo, r.Hi)
	}
	_, page := render(t, *in)
	if !strings.Contains(page, `id="trend-table"`) || strings.Count(page, "<code>run-") != 3 {
		t.Error("the trend table does not list the three runs")
	}
}

// TestRenderProbeAndFlash: the summary names each board's probe uses and,
// when the device counts them, its sector erases.
func TestRenderProbeAndFlash(t *testing.T) {
	s := newSynth([]string{"safe", "naive"}, 4, 4, func(b string, _, block int) bool { return b == "naive" && block < 2 })
	for i := range s.cycles {
		c := &s.cycles[i]
		n := 3
		c.Erases = &n
		if c.Board == "naive" {
			c.ProbeUses, c.ProbeTime = 1, 250*time.Millisecond
		}
	}
	_, page := render(t, s.input())
	want := `<dd id="probe-flash">safe: 0 probe uses, 12 sector erases (3.00 per cycle); naive: 4 probe uses (1.00s, 250ms per cycle), 12 sector erases (3.00 per cycle)</dd>`
	if !strings.Contains(page, want) {
		i := strings.Index(page, `id="probe-flash"`)
		t.Errorf("page lacks %s; has %s", want, page[max(i, 0):min(max(i, 0)+300, len(page))])
	}
}
