package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/results/report"
)

// TestRunBrownoutSweep runs examples/brownout-sweep.yaml as a user does:
// the built-in boards powered by their SCPI supply emulators, reached over
// TCP by the scpi driver. At 1.5 V both boards reset (the bench follows
// the recovery); at 2.1 V both run on with flash written at a marginal
// voltage: the recovery bootloader refuses the image by its digest and
// gets it again, the naive board boots what it wrote and bricks. Every
// cycle's energy is measured, and the report shows it.
func TestRunBrownoutSweep(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	job, err := filepath.Abs("../../examples/brownout-sweep.yaml")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Flash timing twice the default: a block takes 21 ms to program, so
	// a brownout 1 ms into it lands while it is written even when a
	// loaded CI host delays the trigger by a few milliseconds.
	stdout, stderr, code := runCLI(t, dir, "run", job, "--time-scale", "2", "--report", "--out", out,
		"--db", filepath.Join(dir, "results.db"), "--lock-dir", filepath.Join(dir, "locks"))
	t.Logf("brownout-sweep took %v", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "  energy sim-safe-psu: update ") || !strings.Contains(stdout, "  energy sim-naive-psu: update ") {
		t.Errorf("no energy line per board in the table:\n%s", stdout)
	}
	in, err := report.Load(out, "")
	if err != nil {
		t.Fatal(err)
	}
	s := in.Summary
	if s.MissedCuts != 0 || s.InfraErrors != 0 {
		t.Fatalf("%d missed cuts, %d infra errors", s.MissedCuts, s.InfraErrors)
	}
	per := map[string]results.BoardSummary{}
	for _, b := range s.PerBoard {
		per[b.Board] = b
	}
	safe, naive := per["sim-safe-psu"], per["sim-naive-psu"]
	if safe.Cycles != 9 || safe.Outcomes[results.Updated] != 9 {
		t.Errorf("sim-safe-psu: %d cycles, outcomes %v; want 9 updated", safe.Cycles, safe.Outcomes)
	}
	if naive.Cycles != 9 || naive.Outcomes[results.Bricked] != 8 || naive.Outcomes[results.Updated] != 1 {
		t.Errorf("sim-naive-psu: %d cycles, outcomes %v; want 8 bricked and the reference updated", naive.Cycles, naive.Outcomes)
	}
	for _, b := range []results.BoardSummary{safe, naive} {
		e := b.Energy
		if e == nil || e.Update.N != 1 || e.Update.P50MJ < 0.5 || e.Update.P50MJ > 50 || e.PeakAmps < 0.005 || e.PeakAmps > 0.05 {
			t.Errorf("%s: energy %+v (want one clean update of a few mJ, a peak of some mA)", b.Board, e)
			continue
		}
		t.Logf("%s: update %.2f mJ, with a cut %.2f mJ p50 (%d), recovery %.3f mJ p50 (%d), peak %.1f mA",
			b.Board, e.Update.P50MJ, e.UpdateCut.P50MJ, e.UpdateCut.N, e.Recovery.P50MJ, e.Recovery.N, 1e3*e.PeakAmps)
	}
	if e := safe.Energy; e != nil && (e.UpdateCut.N != 8 || e.Recovery.N == 0 || e.Recovery.P50MJ <= 0) {
		t.Errorf("sim-safe-psu: energy with cuts %+v, recovery %+v", e.UpdateCut, e.Recovery)
	}

	// What each brownout did, by the bench's own account: the last cut of
	// each cycle (a cycle whose first cut missed on a loaded host runs
	// again, and its second cut is the one recorded).
	resets := map[string]map[bool]int{}
	refused := 0
	plan := map[[2]any]string{}
	for _, c := range in.Cycles {
		plan[[2]any{c.Board, c.Cycle}] = c.Plan
	}
	last := map[[2]any]bool{}
	for _, e := range in.Events {
		switch {
		case e.Kind == results.CutTrigger:
			last[[2]any{e.Board, e.Cycle}] = e.Attrs["device_reset"] == "true"
		case e.Kind == results.Note && e.Board == "sim-safe-psu" && strings.Contains(e.Text, "refused the image after the cut"):
			refused++
		}
	}
	for bc, reset := range last {
		level := "2.1V"
		if strings.Contains(plan[bc], "to 1.5V") {
			level = "1.5V"
		}
		k := bc[0].(string) + " " + level
		if resets[k] == nil {
			resets[k] = map[bool]int{}
		}
		resets[k][reset]++
	}
	for _, b := range []string{"sim-safe-psu", "sim-naive-psu"} {
		if r := resets[b+" 1.5V"]; r[true] != 4 || r[false] != 0 {
			t.Errorf("%s at 1.5V: resets %v, want 4 of 4", b, r)
		}
		if r := resets[b+" 2.1V"]; r[false] != 4 || r[true] != 0 {
			t.Errorf("%s at 2.1V: resets %v, want none of 4", b, r)
		}
	}
	if refused == 0 {
		t.Error("sim-safe-psu never refused an image written at 2.1V: the marginal window was not exercised")
	}

	page, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<section id="supply">`, `<div class="current" data-board="sim-safe-psu">`, `<div class="current" data-board="sim-naive-psu">`,
		`<tr data-board="sim-safe-psu"><td>sim-safe-psu</td><td class="num">1</td>`, "Supply current of sim-naive-psu during each update"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestServedSupply: a board `fudbench sim` serves behind its bench
// supply, wired by the bench file --write-bench writes (the scpi driver on
// the supply's port): `fudbench power state` reads what the supply
// delivers, and a brownout campaign against it follows the reset by the
// board's boot banner on its console (a served board keeps no cut record
// the bench can read over the supply), with the energy of each update.
func TestServedSupply(t *testing.T) {
	s := serveSim(t, "boards:\n  - name: psu\n"+simSection("inplace-recovery", "      time_scale: 1\n      supply: {tcp: \"127.0.0.1:0\"}\n"))
	bench, err := os.ReadFile(s.bench)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(bench), "power: {driver: scpi, address: \"127.0.0.1:") {
		t.Fatalf("served bench does not power the board from its supply:\n%s", bench)
	}
	if !strings.Contains(strings.Join(s.out, "\n"), "  supply    SCPI on 127.0.0.1:") {
		t.Errorf("fudbench sim does not name the supply:\n%s", strings.Join(s.out, "\n"))
	}
	if _, errOut, code := cli(t, "power", "on", "psu", "--bench", s.bench); code != 0 {
		t.Fatalf("power on: exit %d: %s", code, errOut)
	}
	out, errOut, code := cli(t, "power", "state", "psu", "--bench", s.bench, "--json")
	if code != 0 || !strings.Contains(out, `"on":true,"volts":3.3,"amps":0.00`) {
		t.Fatalf("power state: exit %d: %s %s", code, out, errOut)
	}
	dir := t.TempDir()
	job := runWrite(t, filepath.Join(dir, "bo.yaml"), "bench: "+s.bench+"\nboards: [psu]\n"+smallImages+
		"block_size: 256\ncut: {brownout: {to: 1.5V, for: 20ms}}\ncuts: [{after_block: 5}]\nsample: 10ms\nrecovery_timeout: 5s\n")
	out = filepath.Join(dir, "out")
	stdout, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--no-db", "--lock-dir", filepath.Join(dir, "locks"))
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	sum := readSummary(t, out)
	if c := sum.Cuts[0]; !c.Fired || c.Outcome != results.Updated || !strings.Contains(c.Trigger, "brownout to 1.5V for 20ms") {
		t.Errorf("cut %+v", c)
	}
	if e := sum.PerBoard[0].Energy; e == nil || e.UpdateCut.N != 1 || e.Recovery.N != 1 {
		t.Errorf("energy %+v: want the update with its cut and the recovery", e)
	}
	events, err := os.ReadFile(filepath.Join(out, "events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(events), `"device_reset":"true"`) || !strings.Contains(string(events), `reset=brownout`) {
		t.Errorf("the reset was not seen on the console:\n%s", events)
	}
}
