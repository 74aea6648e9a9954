package jobs_test

import (
	"testing"

	"github.com/fudbench/fudbench/sim"
)

// BenchmarkChain runs the same 200-cycle soak (a cut after a random
// block of a 4 KiB image in 256-byte blocks) on an inplace-recovery board
// in both modes, each board leaving the factory with the image its first
// cycle starts from, and reports what each mode cost per cycle: probe
// uses, probe time and the device's sector erases (docs/PERFORMANCE.md).
//
//	go test -run '^$' -bench Chain -benchtime 1x ./jobs/
func BenchmarkChain(b *testing.B) {
	const cycles = 200
	modes := []struct {
		name, baseline string
		factory        func(testing.TB) []byte
	}{
		{"chain", "chain", func(t testing.TB) []byte { return build(t, "2.0.0+c0", 1, 4<<10, 2) }},
		{"baseline", "{build: {version: 1.0.0, seq: 1, size: 4KiB, seed: 1}}", func(t testing.TB) []byte { return build(t, "1.0.0", 1, 4<<10, 1) }},
	}
	sums := make([]struct{ uses, ms, erases, seconds float64 }, len(modes))
	for range b.N {
		for i, m := range modes {
			s, inv := startSims(b, 1, sim.InplaceRecovery)
			factory(b, s.Boards[0], m.factory(b))
			rep := runSim(b, s, inv, parseJob(b, soakJob(inv.Boards[0].Name, m.baseline, cycles)))
			if rep.Summary.Verdict != "pass" || len(rep.Cycles) != cycles {
				b.Fatalf("%s: verdict %s, %d cycles", m.name, rep.Summary.Verdict, len(rep.Cycles))
			}
			f := rep.Summary.PerBoard[0].Flash
			sums[i].uses += f.ProbeUsesPerCycle
			sums[i].ms += f.ProbeMsPerCycle
			sums[i].erases += f.ErasesPerCycle
			last := rep.Cycles[len(rep.Cycles)-1]
			sums[i].seconds += (last.End - rep.Cycles[0].Start).Seconds() / cycles
		}
	}
	for i, m := range modes {
		n := float64(b.N)
		b.ReportMetric(sums[i].uses/n, m.name+"-probe-uses/cycle")
		b.ReportMetric(sums[i].ms/n, m.name+"-probe-ms/cycle")
		b.ReportMetric(sums[i].erases/n, m.name+"-erases/cycle")
		b.ReportMetric(sums[i].seconds/n, m.name+"-s/cycle")
	}
}
