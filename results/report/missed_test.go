package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// missedRun is a synth run of two boards over 6 blocks where naive
// bricks (accepted, reflashed) when cut before block 3, plus three cycles the executor marks
// after a missed cut: on safe a cut that fired two blocks late (the
// device recorded it) and was marked accepted, which must not count; on
// naive a cut that never fired; on safe a cycle that landed on its second
// run.
func missedRun() *synth {
	s := newSynth([]string{"safe", "naive"}, 6, 6, func(b string, _, block int) bool { return b == "naive" && block < 3 })
	late := results.Cycle{Run: s.run.ID, Board: "safe", Cycle: 7, Plan: "after_block 2", PlannedBlock: 2,
		Cut: &results.CutInfo{Trigger: "after_block 2", T: s.t + time.Millisecond, Latency: 50 * time.Microsecond, LastAcked: 4, InFlight: 5,
			Device: &results.DeviceCut{Writing: 5, LastAcked: 4, Flash: "erase"}},
		Outcome: results.MissedCut, Accepted: true, Attempts: 2, Missed: "fired after block 4, planned after block 2 <late>",
		Blocks: 6, BlockSize: 1024, BlocksSent: 5, LastConsole: []string{"flash: erase"}}
	s.emit("safe", 7, results.UpdateStart, -1, "resumable", 0)
	for b := range int64(5) {
		s.emit("safe", 7, results.BlockSent, b, "", 0)
		s.emit("safe", 7, results.BlockAcked, b, "", 200*time.Microsecond)
	}
	s.emit("safe", 7, results.CutTrigger, 4, "after_block 2", 50*time.Microsecond)
	s.emit("safe", 7, results.CycleOutcome, -1, string(results.MissedCut), 0)
	never := results.Cycle{Run: s.run.ID, Board: "naive", Cycle: 7, Plan: "after_block 1", PlannedBlock: 1,
		Outcome: results.MissedCut, Attempts: 2, Missed: "the trigger never fired", Blocks: 6, BlockSize: 1024, BlocksSent: 6}
	s.emit("naive", 7, results.UpdateStart, -1, "resumable", 0)
	s.emit("naive", 7, results.CycleOutcome, -1, string(results.MissedCut), 0)
	rerun := results.Cycle{Run: s.run.ID, Board: "safe", Cycle: 8, Plan: "after_block 3", PlannedBlock: 3,
		Cut:     &results.CutInfo{Trigger: "after_block 3", Latency: 40 * time.Microsecond, LastAcked: 3, InFlight: -1, Device: &results.DeviceCut{Writing: 4, LastAcked: 3, Flash: "program"}},
		Outcome: results.Updated, Accepted: true, Attempts: 2, Blocks: 6, BlockSize: 1024, BlocksSent: 6}
	s.cycles = append(s.cycles, late, never, rerun)
	s.run.Planned["safe"], s.run.Planned["naive"] = 8, 7
	return s
}

func TestReportMissedCut(t *testing.T) {
	s := missedRun()
	r, page := render(t, s.input())

	if m := external.FindString(page); m != "" {
		t.Errorf("the page refers outside itself: %q", m)
	}
	h := r.Header
	// naive's bricks are accepted: the missed cuts alone make the
	// verdict, a bench failure.
	if h.Verdict != results.VerdictInfraError || h.MissedCuts != 2 || h.InfraErrors != 0 || h.Cycles != 15 || h.Failures != 2 {
		t.Errorf("header: verdict %s, missed %d, infra %d, cycles %d, failures %d; want infra-error 2 0 15 2",
			h.Verdict, h.MissedCuts, h.InfraErrors, h.Cycles, h.Failures)
	}
	// The legend and the header have missed-cut, in its own colour.
	purple := hex(OutcomeColors[results.MissedCut])
	for _, frag := range []string{
		`<span class="item"><span class="swatch" style="background: ` + purple + `"></span>missed-cut</span>`,
		`<th class="num"><span class="swatch" style="background: ` + purple + `"></span>missed-cut</th>`,
		`<th class="num" data-outcome="missed-cut">2</th>`,
		`<span id="missed-cuts">2</span> missed cuts`,
	} {
		if !strings.Contains(page, frag) {
			t.Errorf("page lacks %q", frag)
		}
	}
	if !regexp.MustCompile(`<tr data-board="naive">.*<td class="num" data-outcome="missed-cut">1</td>`).MatchString(page) {
		t.Error("naive's row does not count its missed cut")
	}

	// The outcome map draws both missed cuts at their planned blocks.
	if len(r.Grids) != 1 {
		t.Fatalf("%d grids, want the block grid", len(r.Grids))
	}
	worst := map[string]results.Outcome{}
	for _, row := range r.Grids[0].Rows {
		for _, c := range row.Cells {
			worst[fmt.Sprint(row.Board, " ", c.X)] = c.Worst
		}
		if len(row.NoCut) != 0 {
			t.Errorf("%s: cycles without a cut %v, want the missed cut on the map", row.Board, row.NoCut)
		}
	}
	// safe block 2: updated and the late cut; naive block 1: bricked
	// outranks the missed cut there.
	if worst["safe 2"] != results.MissedCut || worst["safe 4"] != results.Updated || worst["naive 1"] != results.Bricked {
		t.Errorf("cells: safe 2 %s, safe 4 %s, naive 1 %s; want missed-cut, updated, bricked", worst["safe 2"], worst["safe 4"], worst["naive 1"])
	}
	for _, frag := range []string{
		"<li>missed-cut at block 2 (1 of 2 cycles not tested as planned)</li>",
		"<li>bricked at blocks 0–2 (3 of 4 cycles failed)</li>", // the missed cut at block 1 is not a brick
	} {
		if !strings.Contains(page, frag) {
			t.Errorf("the fragile lists lack %q", frag)
		}
	}

	// Both missed cuts are failed cycles, with why; the one marked
	// accepted is not shown as accepted.
	var failed []string
	for _, f := range r.Failed {
		if f.Outcome == results.MissedCut {
			failed = append(failed, f.Board)
		}
	}
	if !slices.Equal(failed, []string{"safe", "naive"}) {
		t.Errorf("missed cuts among the failed cycles: %v", failed)
	}
	for _, frag := range []string{
		"<strong>Missed cut:</strong> fired after block 4, planned after block 2 &lt;late&gt;</p>",
		"Planned: after_block 2 (block 2). Cut by after_block 2: last block acknowledged 4, in flight 5",
		"The device recorded: writing block 5, last acknowledged 4, flash erase. Run 2 times.",
		"<strong>Missed cut:</strong> the trigger never fired</p>",
		"Planned: after_block 1 (block 1). The cut never fired. Run 2 times.",
		"planned cut (block 2)", // the line on the cycle's plot
	} {
		if !strings.Contains(page, frag) {
			t.Errorf("failed cycles lack %q", frag)
		}
	}
	if strings.Contains(page, "<late>") {
		t.Error("a missed cut's reason reached the page unescaped")
	}
	sum := regexp.MustCompile(`<details class="cycle"[^>]* data-board="safe" data-cycle="7">\n<summary>.*</summary>`).FindString(page)
	if sum == "" {
		t.Fatal("safe cycle 7 is not among the failed cycles")
	}
	if !strings.Contains(sum, "safe cycle 7 — after_block 2 — missed-cut") || strings.Contains(sum, "accepted by the job") {
		t.Errorf("a missed cut marked accepted shows as %s", sum)
	}

	// The cut points: a tally per board, and every cut listed (a small
	// run) with planned beside actual and the device's record.
	want := []CutTally{{Board: "safe", Planned: 8, Landed: 7, Missed: 1, Rerun: 2, DeviceRecords: 2},
		{Board: "naive", Planned: 7, Landed: 6, Missed: 1, Rerun: 1}}
	if !slices.Equal(r.CutTallies, want) {
		t.Errorf("cut tallies %+v, want %+v", r.CutTallies, want)
	}
	if !r.CutRowsAll || len(r.CutRows) != 15 || r.CutRowsMore != 0 {
		t.Errorf("cut rows: all %v, %d listed, %d more; want all 15", r.CutRowsAll, len(r.CutRows), r.CutRowsMore)
	}
	for _, frag := range []string{
		`<section id="cuts">`,
		`<tr class="missed" data-board="safe" data-cycle="7"><td>safe</td><td class="num">7</td><td>after_block 2</td><td class="num">2</td>` +
			`<td>after_block 2</td><td class="num">4</td><td class="num">5</td>` +
			`<td class="num">5</td><td class="num">4</td><td>erase</td><td class="num">2</td>`,
		`<tr class="missed" data-board="naive" data-cycle="7"><td>naive</td><td class="num">7</td><td>after_block 1</td><td class="num">1</td><td colspan="3">never fired</td>`,
		`missed-cut: the trigger never fired</td>`,
		`<td>after_block 3</td><td class="num">3</td><td class="num">–</td><td class="num">4</td><td class="num">3</td><td>program</td>`,
	} {
		if !strings.Contains(page, frag) {
			t.Errorf("cut points lack %q", frag)
		}
	}

	// The trend leaves the missed cuts out of the failure rate: 3 bricks
	// (naive cut before block 3) over the 13 cycles tested.
	tr := r.Trend[0]
	if tr.Missed != 2 || tr.Failed != 3 || tr.Rate != 3.0/13 {
		t.Errorf("trend point %+v, want 2 missed, 3 failed, rate 3/13", tr)
	}
}

// TestCutRowsOfASoak: past MaxCutRows planned cuts, only those that
// missed or ran again are listed, at most MaxCutRows.
func TestCutRowsOfASoak(t *testing.T) {
	var cs []results.Cycle
	for n := 1; n <= 3*MaxCutRows; n++ {
		c := results.Cycle{Board: "b", Cycle: n, Plan: "after_block 1", PlannedBlock: 1, Outcome: results.Updated, Accepted: true,
			Cut: &results.CutInfo{LastAcked: 1, InFlight: -1}}
		switch {
		case n%2 == 0:
			c.Outcome, c.Missed, c.Cut = results.MissedCut, "never fired", nil
		case n%3 == 0:
			c.Attempts = 2
		}
		cs = append(cs, c)
	}
	cs = append(cs, results.Cycle{Board: "b", Cycle: 0, Plan: "none", PlannedBlock: -1, Outcome: results.Updated, Accepted: true},
		results.Cycle{Board: "unlisted", Cycle: 1, Plan: "after_block 1", PlannedBlock: 1, Outcome: results.MissedCut})
	tallies, rows, all, more := buildCuts([]string{"b"}, cs)
	want := []CutTally{{Board: "b", Planned: 600, Landed: 300, Missed: 300, Rerun: 100}, {Board: "unlisted", Planned: 1, Missed: 1}}
	if !slices.Equal(tallies, want) {
		t.Errorf("tallies %+v, want %+v", tallies, want)
	}
	// 300 missed + 100 run again + 1 unlisted, in cycle order.
	if all || len(rows) != MaxCutRows || more != 401-MaxCutRows {
		t.Fatalf("all %v, %d rows, %d more; want %d rows and %d more", all, len(rows), more, MaxCutRows, 401-MaxCutRows)
	}
	if rows[0].Cycle != 2 || rows[1].Cycle != 3 || rows[1].Attempts != 2 || rows[0].Landed || !rows[1].Landed {
		t.Errorf("first rows %+v", rows[:2])
	}
}

// TestFromFilesKeepsMissedCuts: a report drawn from summary.json alone
// still knows why a cut missed, the device's record and the attempts.
func TestFromFilesKeepsMissedCuts(t *testing.T) {
	s := missedRun()
	in := s.input()
	raw, err := json.Marshal(in.Summary)
	if err != nil {
		t.Fatal(err)
	}
	var sum results.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	got := FromFiles(sum, s.events)
	byKey := map[cycleKey]results.Cycle{}
	for _, c := range got.Cycles {
		byKey[cycleKey{c.Board, c.Cycle}] = c
	}
	late, never := byKey[cycleKey{"safe", 7}], byKey[cycleKey{"naive", 7}]
	if late.Outcome != results.MissedCut || late.Missed != s.cycles[len(s.cycles)-3].Missed || late.Attempts != 2 ||
		late.Cut == nil || late.Cut.Device == nil || *late.Cut.Device != (results.DeviceCut{Writing: 5, LastAcked: 4, Flash: "erase"}) {
		t.Errorf("late cut from files %+v (cut %+v)", late, late.Cut)
	}
	if never.Missed != "the trigger never fired" || never.Cut != nil || never.Attempts != 2 {
		t.Errorf("cut that never fired, from files: %+v", never)
	}
	_, page := render(t, *got)
	if !strings.Contains(page, "<strong>Missed cut:</strong> the trigger never fired") || !bytes.Contains([]byte(page), []byte(`data-outcome="missed-cut">2<`)) {
		t.Error("the report from files lost the missed cuts")
	}
}

// TestEveryOutcomeHasAColourAndRank: results.Outcomes is the one list;
// the report's colours and severity must cover it, each colour its own.
func TestEveryOutcomeHasAColourAndRank(t *testing.T) {
	seen := map[string]results.Outcome{}
	for _, o := range results.Outcomes {
		c, ok := OutcomeColors[o]
		if !ok {
			t.Errorf("outcome %s has no colour", o)
		}
		if prev, dup := seen[hex(c)]; dup {
			t.Errorf("outcomes %s and %s share the colour %s", prev, o, hex(c))
		}
		seen[hex(c)] = o
		if !slices.Contains(severityOrder, o) {
			t.Errorf("outcome %s has no severity", o)
		}
	}
	if len(OutcomeColors) != len(results.Outcomes) || len(severityOrder) != len(results.Outcomes) {
		t.Errorf("%d colours and %d ranks for %d outcomes", len(OutcomeColors), len(severityOrder), len(results.Outcomes))
	}
	if _, dup := seen[hex(unknownColor)]; dup {
		t.Errorf("the colour of an unknown outcome is an outcome's")
	}
	if severity("from-the-future") <= severity(results.Bricked) {
		t.Error("an unknown outcome must rank worst")
	}
	// Bench failures rank below every device failure, as in the verdict.
	for _, o := range results.Outcomes {
		if o.BenchFailure() || o == results.Updated {
			continue
		}
		if severity(results.MissedCut) >= severity(o) || severity(results.InfraError) >= severity(o) {
			t.Errorf("a bench failure outranks %s on the map", o)
		}
	}
}
