package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/results/report"
)

// TestRunCompareStrategies runs examples/compare-strategies.yaml as a user
// does (the built-in boards, instant flash) and checks its strategy table:
// the A/B schemes with revert and the recovery bootloader never end
// bricked, naive in place does; every cut fired; the flash cost and the
// cache of each strategy are measured.
func TestRunCompareStrategies(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	job, err := filepath.Abs("../../examples/compare-strategies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	stdout, stderr, code := runCLI(t, dir, "run", job, "--time-scale", "0", "--report",
		"--out", out, "--db", filepath.Join(dir, "results.db"), "--lock-dir", filepath.Join(dir, "locks"))
	took := time.Since(start)
	t.Logf("compare-strategies at time scale 0 took %v", took.Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	in, err := report.Load(out, "")
	if err != nil {
		t.Fatal(err)
	}
	if in.Summary.MissedCuts != 0 || in.Summary.InfraErrors != 0 {
		t.Errorf("%d missed cuts, %d infra errors", in.Summary.MissedCuts, in.Summary.InfraErrors)
	}
	cols := report.Strategies(*in)
	if len(cols) != 5 {
		t.Fatalf("%d strategy columns, want 5: %+v", len(cols), cols)
	}
	for _, st := range []string{"inplace-recovery", "naive-inplace", "ab-overwrite", "ab-swap", "ab-direct"} {
		c, ok := report.FindColumn(cols, st)
		if !ok {
			t.Errorf("no column for %s", st)
			continue
		}
		bricked := c.Share(results.Bricked)
		t.Logf("%-16s cuts %d: updated %d, rolled-back %d, stuck %d, bricked %d; worst %q %s; space %.0f B, cache %.0f B, programmed %.0f B, erased %.0f B, max erases %.0f, work ops %.0f",
			st, c.Cuts, c.Share(results.Updated).Count, c.Share(results.RolledBack).Count, c.Share(results.StuckRecovery).Count, bricked.Count,
			c.Worst.Plan, c.Worst.Outcome, c.Space.P50, c.Cache.P50, c.Programmed.P50, c.Erased.P50, c.MaxErases.P50, c.BootOps.P50)
		if c.Cuts != 32 {
			t.Errorf("%s: %d cuts, want 32", st, c.Cuts)
		}
		switch st {
		case "naive-inplace":
			if bricked.Count == 0 || c.Worst.Outcome != results.Bricked {
				t.Errorf("%s: never bricked (worst %+v)", st, c.Worst)
			}
		default:
			if bricked.Count != 0 {
				t.Errorf("%s: bricked %d times (worst %+v)", st, bricked.Count, c.Worst)
			}
		}
		if c.Space.N == 0 || c.Programmed.N == 0 || c.BootOps.N == 0 || c.NoCut.N == 0 {
			t.Errorf("%s: flash cost or time not measured: %+v", st, c)
		}
		if st != "naive-inplace" && c.Cache.P50 <= 0 {
			t.Errorf("%s: no cache reported", st)
		}
	}
	// A/B needs two slots: more flash than in place for the same image.
	safe, _ := report.FindColumn(cols, "inplace-recovery")
	swap, _ := report.FindColumn(cols, "ab-swap")
	if swap.Space.P50 <= safe.Space.P50 {
		t.Errorf("ab-swap needs %.0f B, inplace-recovery %.0f B: two slots should cost more", swap.Space.P50, safe.Space.P50)
	}
	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(page), `id="strategies"`) {
		t.Error("report.html has no strategy table")
	}
	// The page as a reader sees it: five columns, every row filled, the
	// plots drawn, nothing loaded from the network.
	t.Run("in browser", func(t *testing.T) {
		pv := browse(t, chromiumPath(t), filepath.Join(out, "report.html"), "")
		d := pv.Data
		want := []string{"inplace-recovery", "naive-inplace", "ab-overwrite", "ab-swap", "ab-direct"}
		if !slices.Equal(d.StrategyCols, want) {
			t.Errorf("strategy columns %q, want %q", d.StrategyCols, want)
		}
		for _, row := range []string{"share-bricked", "worst-cut", "time-no-cut", "recovery-p50", "space", "programmed", "erased", "max-erases", "boot-ops", "cache"} {
			cells := d.StrategyCells[row]
			if len(cells) != len(want) || slices.Contains(cells, "") {
				t.Errorf("row %s: %q", row, cells)
			}
		}
		if got := d.StrategyCells["share-bricked"]; len(got) == 5 && (!strings.HasPrefix(got[0], "0/32") || strings.HasPrefix(got[1], "0/32")) {
			t.Errorf("bricked: %q", got)
		}
		if d.StrategyPlots != 4 || d.StrategyPlotsLit != 4 {
			t.Errorf("%d plots in #strategies, %d drawn; want 4", d.StrategyPlots, d.StrategyPlotsLit)
		}
		if len(pv.Requests) != 1 || len(pv.Failed) != 0 || len(pv.Console) != 0 {
			t.Errorf("requests %q, failed %q, console %q", pv.Requests, pv.Failed, pv.Console)
		}
	})
}
