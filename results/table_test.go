package results

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestWriteTable(t *testing.T) {
	run := testRun("r1")
	s := Summarize(run, testCycles(run.ID))
	var buf bytes.Buffer
	if err := WriteTable(&buf, s); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	want := [][]string{
		{"BOARD", "CYCLES", "UPDATED", "ROLLBACK", "STUCK", "BRICKED", "MISSED", "INFRA", "RECOV", "p50", "RECOV", "p95", "TRIG", "p99", "VERDICT"},
		{"sim-safe", "4", "4", "0", "0", "0", "0", "0", "600ms", "800ms", "50µs", "pass"},
		{"sim-naive", "4", "0", "1", "0", "1", "1", "1", "-", "-", "80µs", "fail"},
		{"total", "8", "4", "1", "0", "1", "1", "1", "600ms", "800ms", "80µs", "fail"},
	}
	if len(lines) < len(want)+3 {
		t.Fatalf("table too short:\n%s", buf.String())
	}
	for i, w := range want {
		if got := strings.Fields(lines[i]); strings.Join(got, " ") != strings.Join(w, " ") {
			t.Errorf("line %d: %q, want fields %q", i, lines[i], w)
		}
	}
	// Aligned: every row's VERDICT cell starts in the same column.
	col := strings.Index(lines[0], "VERDICT")
	for i := 1; i < len(want); i++ {
		if r := []rune(lines[i]); len(r) < col || !strings.HasPrefix(string(r[col:]), verdictOfRow(s, i-1)) {
			t.Errorf("row %d not aligned with its header: %q", i, lines[i])
		}
	}
	rest := strings.Join(lines[len(want):], "\n")
	for _, frag := range []string{"FAIL sim-naive cycle 2", "rolled-back: version 1.0.0", "FAIL sim-naive cycle 3",
		"FAIL sim-naive cycle 4 (after_block 40): missed-cut: fired after block 44 was acknowledged, planned after block 40\n",
		"verdict: fail (8 cycles, 3 failed, infra errors: 1, missed cuts: 1)"} {
		if !strings.Contains(rest, frag) {
			t.Errorf("table lacks %q:\n%s", frag, rest)
		}
	}
}

// verdictOfRow returns board i's verdict, or the run's past the last
// board (the total row).
func verdictOfRow(s Summary, i int) string {
	if i < len(s.PerBoard) {
		return string(s.PerBoard[i].Verdict)
	}
	return string(s.Verdict)
}

func TestWriteTableManyFailures(t *testing.T) {
	var cs []Cycle
	for i := range 15 {
		cs = append(cs, Cycle{Board: "b", Cycle: i + 1, Plan: "none", Outcome: Bricked})
	}
	var buf bytes.Buffer
	if err := WriteTable(&buf, Summarize(RunInfo{Boards: []string{"b"}}, cs)); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if n := strings.Count(out, "FAIL "); n != 10 {
		t.Errorf("%d failures listed, want 10", n)
	}
	if !strings.Contains(out, "and 5 more failures") || strings.Contains(out, "total") {
		t.Errorf("one board: want no total row and a remainder note:\n%s", out)
	}
}

func TestFormatDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"},
		{900, "900ns"},
		{42 * time.Microsecond, "42µs"},
		{1250 * time.Microsecond, "1.25ms"},
		{850 * time.Millisecond, "850ms"},
		{3200 * time.Millisecond, "3.20s"},
		{125 * time.Second, "2m05s"},
		{-5 * time.Millisecond, "-5.00ms"},
	}
	for _, tt := range tests {
		if got := FormatDuration(tt.d); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestFailureWhy(t *testing.T) {
	tests := []struct{ missed, reason, want string }{
		{"", "", ""},
		{"", "no answer", "no answer"},
		{"never fired", "", "never fired"},
		{"never fired", "never fired", "never fired"}, // said once
		{"never fired", "console gap", "never fired; console gap"},
	}
	for _, tt := range tests {
		if got := failureWhy(tt.missed, tt.reason); got != tt.want {
			t.Errorf("failureWhy(%q, %q) = %q, want %q", tt.missed, tt.reason, got, tt.want)
		}
	}
}

func TestEveryOutcomeHasAColumn(t *testing.T) {
	seen := map[string]Outcome{}
	for _, o := range Outcomes {
		h, ok := outcomeHeads[o]
		if !ok {
			t.Errorf("outcome %s has no short head (it falls back to %q)", o, outcomeHead(o))
		}
		if prev, dup := seen[h]; dup {
			t.Errorf("outcomes %s and %s share the head %q", prev, o, h)
		}
		seen[h] = o
	}
	if got := outcomeHead("new-outcome"); got != "NEW-OUTCOME" {
		t.Errorf("fallback head %q", got)
	}
}

// TestWriteTableFlashLine: a board that used its probe, or whose device
// counts its erases, gets a line with the totals and the means per
// cycle; one with neither gets none.
func TestWriteTableFlashLine(t *testing.T) {
	five, zero := 5, 0
	cs := []Cycle{
		{Board: "chain", Cycle: 1, Plan: "none", Outcome: Updated, Accepted: true, Erases: &five},
		{Board: "chain", Cycle: 2, Plan: "none", Outcome: Updated, Accepted: true, Erases: &zero},
		{Board: "base", Cycle: 1, Plan: "none", Outcome: Updated, Accepted: true, ProbeUses: 1, ProbeTime: 1500 * time.Millisecond},
		{Board: "base", Cycle: 2, Plan: "none", Outcome: Updated, Accepted: true, ProbeUses: 1, ProbeTime: 500 * time.Millisecond},
		{Board: "plain", Cycle: 1, Plan: "none", Outcome: Updated, Accepted: true},
	}
	var buf bytes.Buffer
	s := Summarize(RunInfo{Boards: []string{"chain", "base", "plain"}}, cs)
	if err := WriteTable(&buf, s); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, frag := range []string{
		"  probe chain: 0 uses, 0s (0.00 uses, 0s per cycle); flash: 5 sector erases (2.50 per cycle)\n",
		"  probe base: 2 uses, 2.00s (1.00 uses, 1.00s per cycle)\n",
	} {
		if !strings.Contains(out, frag) {
			t.Errorf("table lacks %q:\n%s", frag, out)
		}
	}
	if strings.Contains(out, "probe plain") {
		t.Errorf("a board without probe use or erase counts has a probe line:\n%s", out)
	}
	if f := s.PerBoard[1].Flash; f.ProbeUses != 2 || f.ProbeMs != 2000 || f.ProbeMsPerCycle != 1000 || f.ErasesCycles != 0 {
		t.Errorf("base: %+v", f)
	}
}
