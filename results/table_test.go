package results

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
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

func TestProgressPlain(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, false, 40)
	p.Cycle("sim-safe", 12, Updated)
	p.Cycle("sim-naive", 3, Bricked)
	p.Done()
	want := "[1/40] sim-safe cycle 12: updated\n[2/40] sim-naive cycle 3: bricked\n"
	if buf.String() != want {
		t.Errorf("got %q, want %q", buf.String(), want)
	}
	buf.Reset()
	p = NewProgress(&buf, false, 0)
	p.Cycle("b", 1, Updated)
	if buf.String() != "[1] b cycle 1: updated\n" {
		t.Errorf("unknown total: %q", buf.String())
	}
}

func TestProgressTTY(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, true, 4)
	p.Cycle("sim-naive", 1, RolledBack)
	p.Cycle("b", 2, Updated)
	out := buf.String()
	if strings.Contains(out, "\n") {
		t.Errorf("newline before Done: %q", out)
	}
	draws := strings.Split(out, "\r")[1:]
	if len(draws) != 2 {
		t.Fatalf("%d redraws, want 2: %q", len(draws), out)
	}
	if !strings.HasPrefix(draws[0], "[######------------------] 1/4  sim-naive cycle 1: rolled-back  (1 not updated)") {
		t.Errorf("first draw %q", draws[0])
	}
	// The shorter second line blanks what is left of the first.
	if len([]rune(draws[1])) < len([]rune(strings.TrimRight(draws[0], " "))) ||
		!strings.HasPrefix(draws[1], "[############------------] 2/4  b cycle 2: updated") {
		t.Errorf("second draw %q", draws[1])
	}
	p.Done()
	if !strings.HasSuffix(buf.String(), "\n") {
		t.Error("Done did not end the line")
	}
}

func TestProgressMissedCuts(t *testing.T) {
	tests := []struct {
		name     string
		outcomes []Outcome
		want     string // the last draw's counts
	}{
		{"none failed", []Outcome{Updated}, ""},
		{"one missed", []Outcome{MissedCut}, "  (1 missed cut)"},
		{"missed apart from not updated", []Outcome{Bricked, MissedCut, InfraError, MissedCut, Updated}, "  (2 not updated, 2 missed cuts)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := NewProgress(&buf, true, 10)
			for i, o := range tt.outcomes {
				p.Cycle("b", i+1, o)
			}
			draws := strings.Split(buf.String(), "\r")
			last := strings.TrimRight(draws[len(draws)-1], " ")
			wantEnd := fmt.Sprintf("b cycle %d: %s%s", len(tt.outcomes), tt.outcomes[len(tt.outcomes)-1], tt.want)
			if !strings.HasSuffix(last, wantEnd) {
				t.Errorf("last draw %q, want it to end %q", last, wantEnd)
			}
		})
	}
	var buf bytes.Buffer
	p := NewProgress(&buf, false, 2)
	p.Cycle("b", 7, MissedCut)
	if buf.String() != "[1/2] b cycle 7: missed-cut\n" {
		t.Errorf("plain line %q", buf.String())
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

func TestProgressConcurrent(t *testing.T) {
	var buf bytes.Buffer
	p := NewProgress(&buf, false, 100)
	var wg sync.WaitGroup
	for b := range 4 {
		wg.Go(func() {
			for i := range 25 {
				p.Cycle(fmt.Sprint("b", b), i, Updated)
			}
		})
	}
	wg.Wait()
	if n := strings.Count(buf.String(), "\n"); n != 100 || !strings.Contains(buf.String(), "[100/100] ") {
		t.Errorf("%d lines; last: %q", n, buf.String()[max(0, buf.Len()-40):])
	}
}
