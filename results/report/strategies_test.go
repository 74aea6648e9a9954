package report

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// stratRun builds a run with known counts per strategy, as the bench
// records one: device events at each board's first cycle, cycles with
// and without a planned cut, update.verified and flash.cost events.
type stratRun struct {
	run    results.RunInfo
	cycles []results.Cycle
	events []results.Event
	n      map[string]int
}

func newStratRun(id string) *stratRun {
	return &stratRun{run: results.RunInfo{ID: id, Job: "strategies", JobFile: "strategies.yaml",
		Started: time.Date(2026, 11, 25, 21, 40, 0, 0, time.UTC), Host: "bench", Version: "test", Planned: map[string]int{}},
		n: map[string]int{}}
}

func (s *stratRun) event(board string, cycle int, k results.Kind, text string, dur time.Duration, attrs map[string]string) {
	t := time.Duration(len(s.events)+1) * time.Millisecond
	s.events = append(s.events, results.Event{T: t, Wall: s.run.Started.Add(t), Board: board, Cycle: cycle, Kind: k, Block: -1,
		Text: text, Dur: dur, Attrs: attrs})
}

// board adds a board; strategy "" emits no device event.
func (s *stratRun) board(name, strategy string, attrs map[string]string) {
	s.run.Boards = append(s.run.Boards, name)
	if strategy == "" {
		return
	}
	a := map[string]string{"strategy": strategy}
	for k, v := range attrs {
		a[k] = v
	}
	s.event(name, 1, results.DeviceInfo, strategy, 0, a)
}

// cycle adds a cycle; plan "none" is an uncut cycle whose update took
// verified (0: no update.verified event).
func (s *stratRun) cycle(board, plan string, o results.Outcome, recovery, verified time.Duration) {
	s.n[board]++
	s.run.Planned[board]++
	c := results.Cycle{Run: s.run.ID, Board: board, Cycle: s.n[board], Plan: plan, PlannedBlock: -1, Outcome: o,
		Accepted: o == results.Updated, RecoveryVersion: recovery}
	if plan != "none" && o != results.MissedCut {
		c.Cut = &results.CutInfo{Trigger: plan, LastAcked: -1, InFlight: -1}
	}
	if verified > 0 {
		s.event(board, c.Cycle, results.UpdateVerified, "", verified, nil)
	}
	s.cycles = append(s.cycles, c)
}

func (s *stratRun) flashCost(board string, programmed, erased, maxErases, bootOps int) {
	s.event(board, max(s.n[board], 1), results.FlashCost, "", 0, map[string]string{
		"programmed": fmt.Sprint(programmed), "erased": fmt.Sprint(erased),
		"max_erases": fmt.Sprint(maxErases), "boot_ops": fmt.Sprint(bootOps)})
}

func (s *stratRun) input() Input {
	sum := results.Summarize(s.run, s.cycles)
	return Input{Run: results.RunRecord{RunInfo: s.run, Status: string(sum.Verdict)}, Summary: sum,
		Cycles: s.cycles, Events: s.events, Source: "test"}
}

const ms = time.Millisecond

// fiveStrategies is a run of five strategies and a board that reported
// none:
//   - inplace-recovery: 10 cuts, all updated (recovery 10..100 ms), a
//     missed cut and an infra error, 3 uncut updates (1, 3, 2 s), space,
//     cache and flash counters;
//   - naive-inplace: cuts after blocks 0..7 and twice more after block 3:
//     9 bricked, the cut after block 7 updated;
//   - ab-overwrite: 4 cuts, 1 rolled back, 1 stuck in recovery; no
//     space, cache or flash counters;
//   - ab-swap: two boards of 5 cuts each, all updated; caches differ;
//   - ab-direct: uncut cycles only, its device event without attributes;
//   - lonely: no device event, one cut rolled back.
func fiveStrategies(id string) *stratRun {
	s := newStratRun(id)
	s.board("b-inplace", "inplace-recovery", map[string]string{"space": "266240", "cache": "8192"})
	s.board("b-naive", "naive-inplace", map[string]string{"space": "131072", "cache": "0"})
	s.board("b-abo", "ab-overwrite", nil)
	s.board("b-swap1", "ab-swap", map[string]string{"space": "524288", "cache": "4096"})
	s.board("b-swap2", "ab-swap", map[string]string{"space": "524288", "cache": "8192"})
	s.run.Boards = append(s.run.Boards, "b-direct")
	s.event("b-direct", 1, results.DeviceInfo, "ab-direct", 0, nil)
	s.board("lonely", "", nil)

	for i := 1; i <= 10; i++ {
		s.cycle("b-inplace", fmt.Sprintf("after_block %d", i), results.Updated, time.Duration(10*i)*ms, 0)
	}
	s.cycle("b-inplace", "after_block 11", results.MissedCut, 0, 0)
	s.cycle("b-inplace", "after_block 12", results.InfraError, 0, 0)
	for _, d := range []time.Duration{1, 3, 2} {
		s.cycle("b-inplace", "none", results.Updated, 0, d*time.Second)
	}
	s.flashCost("b-inplace", 131072, 135168, 1, 40)
	s.flashCost("b-inplace", 131072, 139264, 3, 44)
	s.flashCost("b-inplace", 135168, 135168, 2, 40)

	for b := 0; b <= 7; b++ {
		o := results.Bricked
		if b == 7 {
			o = results.Updated
		}
		s.cycle("b-naive", fmt.Sprintf("after_block %d", b), o, 0, 0)
	}
	s.cycle("b-naive", "after_block 3", results.Bricked, 0, 0)
	s.cycle("b-naive", "after_block 3", results.Bricked, 0, 0)

	s.cycle("b-abo", "after_block 1", results.Updated, 40*ms, 0)
	s.cycle("b-abo", "after_block 2", results.RolledBack, 0, 0)
	s.cycle("b-abo", "after_block 5", results.StuckRecovery, 0, 0)
	s.cycle("b-abo", "after_block 6", results.Updated, 60*ms, 0)

	for _, b := range []string{"b-swap1", "b-swap2"} {
		for i := 0; i < 5; i++ {
			s.cycle(b, fmt.Sprintf("during_block %d", i), results.Updated, 0, 0)
		}
	}
	s.cycle("b-direct", "none", results.Updated, 0, 500*ms)
	s.cycle("b-direct", "none", results.Updated, 0, 0)
	s.cycle("lonely", "after_block 1", results.RolledBack, 0, 0)
	return s
}

func TestStrategiesModel(t *testing.T) {
	cols := Strategies(fiveStrategies("run-5").input())
	var labels []string
	for _, c := range cols {
		labels = append(labels, c.Label)
	}
	want := []string{"inplace-recovery", "naive-inplace", "ab-overwrite", "ab-swap", "ab-direct", "lonely"}
	if strings.Join(labels, ",") != strings.Join(want, ",") {
		t.Fatalf("columns %q, want %q", labels, want)
	}
	col := func(name string) StrategyColumn {
		c, ok := FindColumn(cols, name)
		if !ok {
			t.Fatalf("no column %s", name)
		}
		return c
	}
	share := func(c StrategyColumn, o results.Outcome, count, n int) {
		t.Helper()
		s := c.Share(o)
		lo, hi := Wilson(count, n, Z95)
		wantShare := 0.0
		if n > 0 {
			wantShare = float64(count) / float64(n)
		}
		if s.Count != count || s.N != n || s.Share != wantShare || s.Lo != lo || s.Hi != hi {
			t.Errorf("%s %s: %+v, want %d of %d = %v [%v, %v]", c.Label, o, s, count, n, wantShare, lo, hi)
		}
	}

	in := col("inplace-recovery")
	if !in.Reported || in.Cycles != 15 || in.Cuts != 10 || in.Missed != 1 || in.Infra != 1 {
		t.Errorf("inplace-recovery: reported %v cycles %d cuts %d missed %d infra %d; want true 15 10 1 1", in.Reported, in.Cycles, in.Cuts, in.Missed, in.Infra)
	}
	share(in, results.Updated, 10, 10)
	share(in, results.Bricked, 0, 10)
	// 0 of 10: the upper Wilson bound is 27.75 %.
	if hi := in.Share(results.Bricked).Hi; math.Abs(hi-0.2775) > 0.0001 {
		t.Errorf("0 of 10: upper bound %v, want 0.2775", hi)
	}
	if in.Worst.Found() {
		t.Errorf("inplace-recovery worst cut %+v, want none found", in.Worst)
	}
	if in.AfterCut != (Figure{N: 10, P50: 50, P95: 100, Min: 10, Max: 100}) {
		t.Errorf("inplace-recovery after a cut %+v, want n 10 p50 50 p95 100", in.AfterCut)
	}
	if in.NoCut.N != 3 || in.NoCut.P50 != 2000 {
		t.Errorf("inplace-recovery no cut %+v, want median 2000 ms of 3", in.NoCut)
	}
	if in.Space.P50 != 266240 || in.Cache.P50 != 8192 || in.Programmed.P50 != 131072 || in.Erased.P50 != 135168 ||
		in.MaxErases.P50 != 2 || in.BootOps.P50 != 40 || in.Programmed.N != 3 {
		t.Errorf("inplace-recovery flash: %+v", in)
	}

	naive := col("naive-inplace")
	share(naive, results.Bricked, 9, 10)
	share(naive, results.Updated, 1, 10)
	share(naive, results.RolledBack, 0, 10)
	if naive.Worst != (WorstCut{Plan: "after_block 3", Outcome: results.Bricked, Count: 3, Of: 3, Plans: 7}) {
		t.Errorf("naive-inplace worst cut %+v", naive.Worst)
	}
	if naive.AfterCut.N != 0 {
		t.Errorf("naive-inplace recovered %+v", naive.AfterCut)
	}

	abo := col("ab-overwrite")
	share(abo, results.RolledBack, 1, 4)
	share(abo, results.StuckRecovery, 1, 4)
	share(abo, results.Updated, 2, 4)
	if abo.Worst != (WorstCut{Plan: "after_block 5", Outcome: results.StuckRecovery, Count: 1, Of: 1, Plans: 1}) {
		t.Errorf("ab-overwrite worst cut %+v", abo.Worst)
	}
	if abo.AfterCut.N != 2 || abo.AfterCut.P50 != 40 || abo.AfterCut.P95 != 60 {
		t.Errorf("ab-overwrite after a cut %+v", abo.AfterCut)
	}

	swap := col("ab-swap")
	if strings.Join(swap.Boards, ",") != "b-swap1,b-swap2" || swap.Cuts != 10 {
		t.Errorf("ab-swap boards %v cuts %d", swap.Boards, swap.Cuts)
	}
	share(swap, results.Bricked, 0, 10)
	if swap.Space != (Figure{N: 2, P50: 524288, P95: 524288, Min: 524288, Max: 524288}) || swap.Cache.Min != 4096 || swap.Cache.Max != 8192 {
		t.Errorf("ab-swap space %+v cache %+v", swap.Space, swap.Cache)
	}

	direct := col("ab-direct")
	if !direct.Reported || direct.Cuts != 0 || direct.Cycles != 2 || direct.NoCut.N != 1 || direct.NoCut.P50 != 500 {
		t.Errorf("ab-direct %+v", direct)
	}
	lonely := col("lonely")
	if lonely.Reported || strings.Join(lonely.Boards, ",") != "lonely" {
		t.Errorf("lonely %+v", lonely)
	}
	share(lonely, results.RolledBack, 1, 1)

	// The formatted table.
	rows := map[string][]string{}
	for _, r := range StrategyRows(cols) {
		if len(r.Cells) != len(cols) {
			t.Fatalf("row %s has %d cells for %d columns", r.Key, len(r.Cells), len(cols))
		}
		rows[r.Key] = r.Cells
	}
	for _, tc := range []struct {
		row  string
		cell int
		want string
	}{
		{"strategy", 5, "(not reported)"},
		{"boards", 3, "b-swap1, b-swap2"},
		{"cuts", 0, "10"},
		{"share-updated", 0, "10/10 · 100.0 % (72.2–100.0 %)"},
		{"share-bricked", 0, "0/10 · 0.0 % (0.0–27.8 %)"},
		{"share-bricked", 1, "9/10 · 90.0 % (59.6–98.2 %)"},
		{"share-bricked", 4, Missing},
		{"excluded", 0, "1 missed cut, 1 infra error"},
		{"excluded", 1, "none"},
		{"worst-cut", 0, "none found"},
		{"worst-cut", 1, "after_block 3: bricked (3 of 3); 7 cut points bricked"},
		{"worst-cut", 2, "after_block 5: stuck-recovery (1 of 1)"},
		{"worst-cut", 4, Missing},
		{"time-no-cut", 0, "2.00s (n 3)"},
		{"time-no-cut", 1, Missing},
		{"recovery-p50", 0, "50ms (n 10)"},
		{"recovery-p95", 0, "100ms"},
		{"recovery-p50", 1, Missing},
		{"space", 0, "260 KiB"},
		{"space", 2, Missing},
		{"space", 3, "512 KiB"},
		{"cache", 1, "0 B"},
		{"cache", 3, "4 KiB – 8 KiB"},
		{"cache", 2, Missing},
		{"programmed", 0, "128 KiB (n 3)"},
		{"erased", 0, "132 KiB (n 3)"},
		{"max-erases", 0, "2 (n 3)"},
		{"boot-ops", 0, "40 (n 3)"},
		{"programmed", 1, Missing},
		{"boot-ops", 5, Missing},
	} {
		if got := rows[tc.row][tc.cell]; got != tc.want {
			t.Errorf("row %s, column %s: %q, want %q", tc.row, labels[tc.cell], got, tc.want)
		}
	}
	// Missing data is never shown as a zero.
	for _, key := range []string{"space", "cache", "programmed", "erased", "max-erases", "boot-ops", "recovery-p50", "recovery-p95", "time-no-cut"} {
		if got := rows[key][2]; key != "recovery-p50" && key != "recovery-p95" && got != Missing {
			t.Errorf("ab-overwrite %s: %q, want %q", key, got, Missing)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		b    float64
		want string
	}{{0, "0 B"}, {1000, "1000 B"}, {1024, "1 KiB"}, {1536, "1.5 KiB"}, {266240, "260 KiB"}, {1 << 20, "1 MiB"}, {3 << 19, "1.5 MiB"}, {math.NaN(), Missing}} {
		if got := FormatBytes(tc.b); got != tc.want {
			t.Errorf("FormatBytes(%v) = %q, want %q", tc.b, got, tc.want)
		}
	}
}

// TestStrategiesOddAttrs: attributes that are not counts are left out,
// never read as zero; a device event's Text names the strategy when it
// has no attribute.
func TestStrategiesOddAttrs(t *testing.T) {
	s := newStratRun("odd")
	s.board("a", "x", map[string]string{"space": "-5", "cache": "lots"})
	s.run.Boards = append(s.run.Boards, "b")
	s.event("b", 1, results.DeviceInfo, "x", 0, map[string]string{"space": " 4096 "})
	s.event("b", 2, results.DeviceInfo, "y", 0, nil) // a later one changes nothing
	s.event("a", 1, results.FlashCost, "", 0, map[string]string{"programmed": "1e9", "erased": ""})
	s.cycle("a", "after_block 0", results.Updated, 0, 0)
	s.cycle("b", "none", results.Updated, 0, 0)
	cols := Strategies(s.input())
	if len(cols) != 1 || strings.Join(cols[0].Boards, ",") != "a,b" {
		t.Fatalf("columns %+v, want one of a and b", cols)
	}
	c := cols[0]
	if c.Space != (Figure{N: 1, P50: 4096, P95: 4096, Min: 4096, Max: 4096}) || c.Cache.N != 0 || c.Programmed.N != 0 || c.Erased.N != 0 {
		t.Errorf("odd attributes read as %+v", c)
	}
}

// TestReportStrategiesSection: a run of several strategies has the
// Strategies section after the summary, a column per strategy, the
// outcome and recovery plots; a run of one strategy has none.
func TestReportStrategiesSection(t *testing.T) {
	render := func(in Input) string {
		t.Helper()
		r, err := Build(in)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := Render(&b, r); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	page := render(fiveStrategies("run-5").input())
	sec := section(t, page, "strategies")
	if got := countTH(sec); got != 6 {
		t.Errorf("%d <th> in #strategies, want one per strategy (6)", got)
	}
	for _, s := range []string{"inplace-recovery", "naive-inplace", "ab-overwrite", "ab-swap", "ab-direct", "lonely"} {
		if !strings.Contains(sec, `data-strategy="`+s+`"`) {
			t.Errorf("no column %s", s)
		}
	}
	for _, label := range []string{"Outcome of the cuts per strategy", "Recovery after a cut", "Flash written per update", "Time to the new version"} {
		if !strings.Contains(sec, `aria-label="`+label) {
			t.Errorf("no plot %q in #strategies", label)
		}
	}
	if i, j := strings.Index(page, `id="summary"`), strings.Index(page, `id="strategies"`); i < 0 || j < i || j > strings.Index(page, `id="outcome-map"`) {
		t.Errorf("#strategies is not between the summary and the outcome map")
	}
	if !strings.Contains(page, `href="#strategies"`) {
		t.Errorf("the navigation does not link the section")
	}

	// Two boards of one strategy: one column, no section.
	one := newStratRun("one")
	one.board("a", "ab-swap", nil)
	one.board("b", "ab-swap", nil)
	one.cycle("a", "after_block 0", results.Updated, 5*ms, 0)
	one.cycle("b", "after_block 0", results.Updated, 5*ms, 0)
	if page := render(one.input()); strings.Contains(page, `id="strategies"`) || strings.Contains(page, `href="#strategies"`) {
		t.Errorf("a run of one strategy has a Strategies section")
	}
	// Boards that report no strategy are a column each.
	s := newSynth([]string{"safe", "naive"}, 4, 4, func(b string, _, block int) bool { return b == "naive" })
	if got := countTH(section(t, render(s.input()), "strategies")); got != 2 {
		t.Errorf("two boards without a device event: %d columns, want 2", got)
	}
}

var thRe = regexp.MustCompile(`<th[ >]`)

// countTH counts the header cells of an HTML fragment.
func countTH(s string) int { return len(thRe.FindAllString(s, -1)) }

// section returns the text of <section id="id"> in page.
func section(t *testing.T, page, id string) string {
	t.Helper()
	i := strings.Index(page, `<section id="`+id+`"`)
	if i < 0 {
		t.Fatalf("no section #%s", id)
	}
	j := strings.Index(page[i:], "</section>")
	return page[i : i+j]
}

// writeRunDB stores s in the database at path as the bench does.
func writeRunDB(t *testing.T, path string, s *stratRun) {
	t.Helper()
	db, err := results.OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.BeginRun(s.run); err != nil {
		t.Fatal(err)
	}
	for _, c := range s.cycles {
		if err := db.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	sink := db.Events(s.run.ID)
	for _, e := range s.events {
		sink.Emit(e)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	sum := results.Summarize(s.run, s.cycles)
	if err := db.FinishRun(s.run.ID, string(sum.Verdict), sum); err != nil {
		t.Fatal(err)
	}
}

func TestResolveRunAndCompare(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "results.db")
	a := fiveStrategies("run-a")
	b := newStratRun("run-b")
	b.run.Started = a.run.Started.Add(time.Hour)
	b.board("x", "ab-swap", map[string]string{"space": "1048576"})
	for i := 0; i < 4; i++ {
		b.cycle("x", fmt.Sprintf("after_block %d", i), results.Updated, time.Duration(i+1)*ms, 0)
	}
	writeRunDB(t, dbPath, a)
	writeRunDB(t, dbPath, b)
	other := filepath.Join(dir, "other.db")
	writeRunDB(t, other, fiveStrategies("run-c"))
	notDB := filepath.Join(dir, "notes.txt")
	os.WriteFile(notDB, []byte("hello\n"), 0o644)

	for _, tc := range []struct{ arg, db, run string }{
		{dbPath, "", "run-b"},            // a database: its newest run
		{dbPath + "#run-a", "", "run-a"}, // PATH#RUNID
		{"run-a", dbPath, "run-a"},       // a run ID in --db
		{"run-c", other, "run-c"},
	} {
		in, err := ResolveRun(tc.arg, tc.db)
		if err != nil || in.Summary.RunID != tc.run {
			t.Errorf("ResolveRun(%q, %q): %v, %v; want run %s", tc.arg, tc.db, in, err, tc.run)
		}
	}
	for _, tc := range []struct{ arg, db, want string }{
		{"run-z", dbPath, `no run "run-z"`},
		{dbPath + "#run-z", "", `no run "run-z"`},
		{"run-a", filepath.Join(dir, "none.db"), "run-a: no such file or directory, nor a run ID"},
		{"run-a", "", "run-a: no such file or directory"},
		{filepath.Join(dir, "gone.db"), dbPath, "gone.db"},
		{notDB, "", "notes.txt: not a results database"},
		{notDB + "#run-a", "", "notes.txt: not a results database"},
		{"#run-a", dbPath, "want PATH#RUNID"},
	} {
		_, err := ResolveRun(tc.arg, tc.db)
		if !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ResolveRun(%q, %q): %v; want a bad input naming %q", tc.arg, tc.db, err, tc.want)
		}
	}

	ina, _ := ResolveRun("run-a", dbPath)
	inb, _ := ResolveRun("run-b", dbPath)
	cols := CompareStrategies([]Input{*ina, *inb})
	if len(cols) != 7 || cols[0].Label != "run-a · inplace-recovery" || cols[6].Label != "run-b" || cols[6].Strategy != "ab-swap" {
		t.Fatalf("compared columns: %d, first %q, last %q", len(cols), cols[0].Label, cols[len(cols)-1].Label)
	}
	if cols[6].AfterCut.P95 != 4 || cols[6].Space.P50 != 1<<20 || cols[1].Worst.Plan != "after_block 3" {
		t.Errorf("run-b's column %+v", cols[6])
	}
	out := filepath.Join(dir, "compare.html")
	if err := WriteComparison(out, []Input{*ina, *inb}); err != nil {
		t.Fatal(err)
	}
	b2, _ := os.ReadFile(out)
	page := string(b2)
	if got := countTH(section(t, page, "strategies")); got != 7 {
		t.Errorf("%d columns on the comparison page, want 7", got)
	}
	runs := section(t, page, "runs")
	for _, want := range []string{"run-a", "run-b", "strategies", "2026-11-25 21:40:00 UTC", "2026-11-25 22:40:00 UTC", ">42<", ">4<"} {
		if !strings.Contains(runs, want) {
			t.Errorf("#runs lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?i)<script|https?://[^"]*"`).MatchString(strings.NewReplacer(`"http://www.w3.org/2000/svg"`, "", `"http://www.w3.org/1999/xlink"`, "").Replace(page)) {
		t.Errorf("the comparison page loads something or runs a script")
	}
}
