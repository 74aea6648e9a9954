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

	if s.RunID != "r1" || s.Job != "demo" || s.Cycles != 8 || s.Planned != 8 {
		t.Errorf("header: %+v", s)
	}
	if !reflect.DeepEqual(s.Boards, []string{"sim-safe", "sim-naive"}) {
		t.Errorf("boards %v", s.Boards)
	}
	wantOutcomes := map[Outcome]int{Updated: 4, RolledBack: 1, StuckRecovery: 0, Bricked: 1, MissedCut: 1, InfraError: 1}
	if !reflect.DeepEqual(s.Outcomes, wantOutcomes) {
		t.Errorf("outcomes %v, want %v", s.Outcomes, wantOutcomes)
	}
	if len(s.Failures) != 3 || s.Failures[0].Outcome != RolledBack || s.Failures[1].Outcome != InfraError ||
		s.Failures[0].Board != "sim-naive" || s.Failures[0].Cycle != 2 || s.Failures[0].Reason == "" {
		t.Errorf("failures %+v", s.Failures)
	}
	// The missed cut is a failure although the cycle says accepted.
	if f := s.Failures[2]; f.Outcome != MissedCut || f.Cycle != 4 || f.Missed != "fired after block 44 was acknowledged, planned after block 40" {
		t.Errorf("missed cut failure %+v", f)
	}
	if s.InfraErrors != 1 || s.MissedCuts != 1 || s.Verdict != VerdictFail {
		t.Errorf("infra %d missed %d verdict %s", s.InfraErrors, s.MissedCuts, s.Verdict)
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
		// latency: 20 30 40 50 50 60 80 µs (a missed cut fired too)
		{"trigger latency", s.TriggerLatency, 7, 0.05, 0.08, 0.08, 0.08},
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
	// Resent over the seven cycles with a cut: 0 1 2 3 10 0 0.
	if s.ResentPerCut.N != 7 || !near(s.ResentPerCut.Mean, 16.0/7) || s.ResentPerCut.Max != 10 {
		t.Errorf("resent %+v", s.ResentPerCut)
	}

	if len(s.Cuts) != 8 {
		t.Fatalf("%d cut points, want 8", len(s.Cuts))
	}
	c0, infra := s.Cuts[0], s.Cuts[6]
	if c0.Board != "sim-safe" || c0.Cycle != 1 || !c0.Fired || !c0.Landed || c0.LastAcked != 0 || c0.InFlight != -1 ||
		c0.Outcome != Updated || !c0.Accepted || c0.Plan != "after_block 0" || !near(c0.LatencyMs, 0.02) ||
		c0.Device != nil || c0.Attempts != 0 || c0.Missed != "" {
		t.Errorf("first cut point %+v", c0)
	}
	if c1 := s.Cuts[1]; !c1.Landed || c1.Attempts != 2 || c1.Device == nil || *c1.Device != (DeviceCut{Writing: 18, LastAcked: 17, Flash: "program"}) {
		t.Errorf("cut point landed on its second run %+v", c1)
	}
	if infra.Board != "sim-naive" || infra.Cycle != 3 || infra.Fired || infra.Landed || infra.LastAcked != -1 || infra.Outcome != InfraError || infra.Accepted {
		t.Errorf("infra error cut point %+v", infra)
	}
	missed := s.Cuts[7]
	if missed.Cycle != 4 || !missed.Fired || missed.Landed || missed.Accepted || missed.PlannedBlock != 40 || missed.LastAcked != 44 ||
		missed.Outcome != MissedCut || missed.Attempts != 2 || missed.Missed == "" ||
		missed.Device == nil || *missed.Device != (DeviceCut{Writing: 45, LastAcked: 44, Flash: "erase"}) {
		t.Errorf("missed cut point %+v", missed)
	}

	if len(s.PerBoard) != 2 {
		t.Fatalf("per board %+v", s.PerBoard)
	}
	safe, naive := s.PerBoard[0], s.PerBoard[1]
	if safe.Board != "sim-safe" || safe.Cycles != 4 || safe.Planned != 4 || safe.Verdict != VerdictPass ||
		safe.Outcomes[Updated] != 4 || safe.Outcomes[Bricked] != 0 || safe.RecoveryVersion.N != 4 || safe.TriggerLatency.N != 4 {
		t.Errorf("sim-safe %+v", safe)
	}
	if naive.Cycles != 4 || naive.Failures != 3 || naive.InfraErrors != 1 || naive.MissedCuts != 1 || naive.Verdict != VerdictFail ||
		len(naive.Outcomes) != len(Outcomes) || naive.RecoveryVersion.N != 0 || !near(naive.TriggerLatency.P99Ms, 0.08) {
		t.Errorf("sim-naive %+v", naive)
	}
}

func TestSummarizeVerdicts(t *testing.T) {
	cyc := func(o Outcome, accepted bool) Cycle {
		return Cycle{Board: "b", Outcome: o, Accepted: accepted, PlannedBlock: -1}
	}
	tests := []struct {
		name                    string
		cycles                  []Cycle
		want                    Verdict
		infra, missed, failures int
	}{
		{"no cycles", nil, VerdictPass, 0, 0, 0},
		{"all updated", []Cycle{cyc(Updated, true), cyc(Updated, true)}, VerdictPass, 0, 0, 0},
		{"bricked but allowed", []Cycle{cyc(Updated, true), cyc(Bricked, true)}, VerdictPass, 0, 0, 0},
		{"bricked not allowed", []Cycle{cyc(Updated, true), cyc(Bricked, false)}, VerdictFail, 0, 0, 1},
		{"infra only", []Cycle{cyc(Updated, true), cyc(InfraError, false)}, VerdictInfraError, 1, 0, 1},
		{"infra marked accepted is still infra", []Cycle{cyc(InfraError, true)}, VerdictInfraError, 1, 0, 1},
		{"fail outranks infra", []Cycle{cyc(InfraError, false), cyc(StuckRecovery, false)}, VerdictFail, 1, 0, 2},
		{"missed cut only", []Cycle{cyc(Updated, true), cyc(MissedCut, false)}, VerdictInfraError, 0, 1, 1},
		{"missed cut marked accepted is still a bench failure", []Cycle{cyc(MissedCut, true)}, VerdictInfraError, 0, 1, 1},
		{"fail outranks a missed cut", []Cycle{cyc(MissedCut, false), cyc(Bricked, false)}, VerdictFail, 0, 1, 2},
		{"missed cut and infra error", []Cycle{cyc(MissedCut, false), cyc(InfraError, false)}, VerdictInfraError, 1, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.cycles {
				tt.cycles[i].Cycle = i + 1
			}
			s := Summarize(RunInfo{ID: "r", Boards: []string{"b"}}, tt.cycles)
			if s.Verdict != tt.want || s.InfraErrors != tt.infra || s.MissedCuts != tt.missed || len(s.Failures) != tt.failures {
				t.Errorf("verdict %s, infra errors %d, missed cuts %d, failures %d; want %s %d %d %d",
					s.Verdict, s.InfraErrors, s.MissedCuts, len(s.Failures), tt.want, tt.infra, tt.missed, tt.failures)
			}
			b := s.PerBoard[0]
			if b.Verdict != tt.want || b.InfraErrors != tt.infra || b.MissedCuts != tt.missed || b.Failures != tt.failures {
				t.Errorf("board: verdict %s, infra errors %d, missed cuts %d, failures %d; want %s %d %d %d",
					b.Verdict, b.InfraErrors, b.MissedCuts, b.Failures, tt.want, tt.infra, tt.missed, tt.failures)
			}
			for _, cp := range s.Cuts {
				if cp.Outcome.BenchFailure() && cp.Accepted {
					t.Errorf("cut point of cycle %d (%s) says accepted", cp.Cycle, cp.Outcome)
				}
			}
		})
	}
}

func TestBenchFailure(t *testing.T) {
	want := map[Outcome]bool{Updated: false, RolledBack: false, StuckRecovery: false, Bricked: false, MissedCut: true, InfraError: true}
	if len(want) != len(Outcomes) {
		t.Fatalf("test covers %d outcomes, Outcomes has %d", len(want), len(Outcomes))
	}
	for _, o := range Outcomes {
		if got, ok := want[o]; !ok || o.BenchFailure() != got {
			t.Errorf("%s.BenchFailure() = %v, want %v (known: %v)", o, o.BenchFailure(), got, ok)
		}
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
		"infra_errors", "missed_cuts", "recovery_version", "recovery_answer", "transfer", "resent_per_cut", "trigger_latency", "cuts", "verdict"} {
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
	if pb := generic["per_board"].([]any)[1].(map[string]any); pb["missed_cuts"] != 1.0 {
		t.Errorf("per_board sim-naive missed_cuts = %v, want 1", pb["missed_cuts"])
	}
	cuts := generic["cuts"].([]any)
	if c0 := cuts[0].(map[string]any); c0["landed"] != true || c0["missed"] != nil || c0["device"] != nil || c0["attempts"] != nil {
		t.Errorf("a landed cut point in summary.json: %v", c0)
	}
	if c := cuts[6].(map[string]any); c["landed"] != false {
		t.Errorf("a cycle without a cut must say landed false: %v", c)
	}
	missed := cuts[7].(map[string]any)
	dev, _ := missed["device"].(map[string]any)
	if missed["landed"] != false || missed["outcome"] != "missed-cut" || missed["attempts"] != 2.0 ||
		missed["missed"] != "fired after block 44 was acknowledged, planned after block 40" ||
		dev["writing"] != 45.0 || dev["last_acked"] != 44.0 || dev["flash"] != "erase" {
		t.Errorf("the missed cut point in summary.json: %v", missed)
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
