package results

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	seq := func(n int) []time.Duration {
		var ds []time.Duration
		for i := n; i >= 1; i-- { // descending: Percentile must sort
			ds = append(ds, time.Duration(i))
		}
		return ds
	}
	tests := []struct {
		n    int
		p    float64
		want time.Duration
	}{
		{0, 50, 0},
		{1, 50, 1},
		{1, 99, 1},
		{2, 50, 1},
		{10, 50, 5},
		{10, 95, 10},
		{20, 95, 19},
		{100, 99, 99},
		{101, 99, 100},
		{1000, 99, 990},
		{10, 100, 10},
		{10, 0.1, 1},
	}
	for _, tt := range tests {
		in := seq(tt.n)
		if got := Percentile(in, tt.p); got != tt.want {
			t.Errorf("Percentile(1..%d, %v) = %v, want %v", tt.n, tt.p, got, tt.want)
		}
		if tt.n > 1 && in[0] != time.Duration(tt.n) {
			t.Errorf("Percentile modified its input")
		}
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestSummarize(t *testing.T) {
	run := testRun("r1")
	s := Summarize(run, testCycles(run.ID))

	if s.RunID != "r1" || s.Job != "demo" || s.Cycles != 7 || s.Planned != 7 {
		t.Errorf("header: %+v", s)
	}
	if !reflect.DeepEqual(s.Boards, []string{"sim-safe", "sim-naive"}) {
		t.Errorf("boards %v", s.Boards)
	}
	wantOutcomes := map[Outcome]int{Updated: 4, RolledBack: 1, StuckRecovery: 0, Bricked: 1, InfraError: 1}
	if !reflect.DeepEqual(s.Outcomes, wantOutcomes) {
		t.Errorf("outcomes %v, want %v", s.Outcomes, wantOutcomes)
	}
	if len(s.Failures) != 2 || s.Failures[0].Outcome != RolledBack || s.Failures[1].Outcome != InfraError ||
		s.Failures[0].Board != "sim-naive" || s.Failures[0].Cycle != 2 || s.Failures[0].Reason == "" {
		t.Errorf("failures %+v", s.Failures)
	}
	if s.InfraErrors != 1 || s.Verdict != VerdictFail {
		t.Errorf("infra %d verdict %s", s.InfraErrors, s.Verdict)
	}

	stats := []struct {
		name      string
		got       DurationStats
		n         int
		p50, p95  float64
		p99, maxv float64
	}{
		// answer: 90 100 110 120 130 ms
		{"recovery answer", s.RecoveryAnswer, 5, 110, 130, 130, 130},
		// version: 500 600 700 800 ms
		{"recovery version", s.RecoveryVersion, 4, 600, 800, 800, 800},
		// latency: 20 30 40 50 50 80 µs
		{"trigger latency", s.TriggerLatency, 6, 0.04, 0.08, 0.08, 0.08},
		// transfer: 1000 1100 1200 1300 ms
		{"transfer", s.Transfer.DurationStats, 4, 1100, 1300, 1300, 1300},
	}
	for _, st := range stats {
		g := st.got
		if g.N != st.n || !near(g.P50Ms, st.p50) || !near(g.P95Ms, st.p95) || !near(g.P99Ms, st.p99) || !near(g.MaxMs, st.maxv) {
			t.Errorf("%s: %+v, want n=%d p50=%v p95=%v p99=%v max=%v", st.name, g, st.n, st.p50, st.p95, st.p99, st.maxv)
		}
	}
	// Throughputs 65536, 60509, 56320, 52775 B/s: nearest-rank median is
	// the second smallest.
	if !near(s.Transfer.ThroughputBps, 66*1024/1.2) {
		t.Errorf("throughput %v, want %v", s.Transfer.ThroughputBps, 66*1024/1.2)
	}
	// Resent over the six cycles with a cut: 0 1 2 3 10 0.
	if s.ResentPerCut.N != 6 || !near(s.ResentPerCut.Mean, 16.0/6) || s.ResentPerCut.Max != 10 {
		t.Errorf("resent %+v", s.ResentPerCut)
	}

	if len(s.Cuts) != 7 {
		t.Fatalf("%d cut points, want 7", len(s.Cuts))
	}
	c0, last := s.Cuts[0], s.Cuts[6]
	if c0.Board != "sim-safe" || c0.Cycle != 1 || !c0.Fired || c0.LastAcked != 0 || c0.InFlight != -1 ||
		c0.Outcome != Updated || !c0.Accepted || c0.Plan != "after_block 0" || !near(c0.LatencyMs, 0.02) {
		t.Errorf("first cut point %+v", c0)
	}
	if last.Board != "sim-naive" || last.Cycle != 3 || last.Fired || last.LastAcked != -1 || last.Outcome != InfraError || last.Accepted {
		t.Errorf("last cut point %+v", last)
	}

	if len(s.PerBoard) != 2 {
		t.Fatalf("per board %+v", s.PerBoard)
	}
	safe, naive := s.PerBoard[0], s.PerBoard[1]
	if safe.Board != "sim-safe" || safe.Cycles != 4 || safe.Planned != 4 || safe.Verdict != VerdictPass ||
		safe.Outcomes[Updated] != 4 || safe.Outcomes[Bricked] != 0 || safe.RecoveryVersion.N != 4 || safe.TriggerLatency.N != 4 {
		t.Errorf("sim-safe %+v", safe)
	}
	if naive.Cycles != 3 || naive.Failures != 2 || naive.InfraErrors != 1 || naive.Verdict != VerdictFail ||
		len(naive.Outcomes) != len(Outcomes) || naive.RecoveryVersion.N != 0 || !near(naive.TriggerLatency.P99Ms, 0.08) {
		t.Errorf("sim-naive %+v", naive)
	}
}

func TestSummarizeVerdicts(t *testing.T) {
	cyc := func(o Outcome, accepted bool) Cycle {
		return Cycle{Board: "b", Outcome: o, Accepted: accepted, PlannedBlock: -1}
	}
	tests := []struct {
		name   string
		cycles []Cycle
		want   Verdict
	}{
		{"no cycles", nil, VerdictPass},
		{"all updated", []Cycle{cyc(Updated, true), cyc(Updated, true)}, VerdictPass},
		{"bricked but allowed", []Cycle{cyc(Updated, true), cyc(Bricked, true)}, VerdictPass},
		{"bricked not allowed", []Cycle{cyc(Updated, true), cyc(Bricked, false)}, VerdictFail},
		{"infra only", []Cycle{cyc(Updated, true), cyc(InfraError, false)}, VerdictInfraError},
		{"infra marked accepted is still infra", []Cycle{cyc(InfraError, true)}, VerdictInfraError},
		{"fail outranks infra", []Cycle{cyc(InfraError, false), cyc(StuckRecovery, false)}, VerdictFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.cycles {
				tt.cycles[i].Cycle = i + 1
			}
			s := Summarize(RunInfo{ID: "r", Boards: []string{"b"}}, tt.cycles)
			if s.Verdict != tt.want {
				t.Errorf("verdict %s, want %s", s.Verdict, tt.want)
			}
			if s.PerBoard[0].Verdict != tt.want {
				t.Errorf("board verdict %s, want %s", s.PerBoard[0].Verdict, tt.want)
			}
		})
	}
}

func TestSummarizeBoardsNotListed(t *testing.T) {
	cs := []Cycle{{Board: "zeta", Cycle: 2, Outcome: Updated, Accepted: true},
		{Board: "alpha", Cycle: 1, Outcome: Updated, Accepted: true},
		{Board: "zeta", Cycle: 1, Outcome: Updated, Accepted: true}}
	s := Summarize(RunInfo{Boards: []string{"listed"}}, cs)
	if !reflect.DeepEqual(s.Boards, []string{"listed", "alpha", "zeta"}) {
		t.Errorf("boards %v", s.Boards)
	}
	if s.Cuts[1].Board != "zeta" || s.Cuts[1].Cycle != 1 || s.Cuts[2].Cycle != 2 {
		t.Errorf("cut points not in board, cycle order: %+v", s.Cuts)
	}
	if s.PerBoard[0].Cycles != 0 || s.PerBoard[0].Verdict != VerdictPass {
		t.Errorf("listed board without cycles: %+v", s.PerBoard[0])
	}
}

func TestWriteSummaryJSON(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	path := filepath.Join(dir, "summary.json")
	run := testRun("r1")
	s := Summarize(run, testCycles(run.ID))
	for range 2 { // the second write replaces the first
		if err := WriteSummaryJSON(path, s); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left beside summary.json: %v", entries)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"job", "run_id", "boards", "cycles", "per_board", "outcomes", "failures",
		"infra_errors", "recovery_version", "recovery_answer", "transfer", "resent_per_cut", "trigger_latency", "cuts", "verdict"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("summary.json lacks %q", k)
		}
	}
	outcomes := generic["outcomes"].(map[string]any)
	for _, o := range Outcomes {
		if _, ok := outcomes[string(o)]; !ok {
			t.Errorf("outcome %s missing (zeros must be present)", o)
		}
	}
	lat := generic["trigger_latency"].(map[string]any)
	if _, ok := lat["p99_ms"]; !ok {
		t.Errorf("trigger_latency lacks p99_ms: %v", lat)
	}
	var back Summary
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	back.Started = s.Started
	if !reflect.DeepEqual(back, s) {
		t.Errorf("summary does not round-trip:\n got %+v\nwant %+v", back, s)
	}
	if err := WriteSummaryJSON(filepath.Join(path, "x.json"), s); err == nil {
		t.Error("writing under a file succeeded")
	}
}
