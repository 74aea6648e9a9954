package report

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

func TestWilson(t *testing.T) {
	// Reference values: the Wilson score interval at z = 1.96 as given
	// in the statistics literature (0 of 10: [0, 0.2775]; 5 of 10:
	// [0.2366, 0.7634]).
	for _, tc := range []struct {
		k, n   int
		lo, hi float64
	}{
		{0, 10, 0, 0.277533},
		{5, 10, 0.236593, 0.763407},
		{10, 10, 0.722467, 1},
		{1, 100, 0.001767, 0.054486},
		{0, 5000, 0, 0.000768},
		{18, 20, 0.698966, 0.972134},
	} {
		lo, hi := Wilson(tc.k, tc.n, Z95)
		if math.Abs(lo-tc.lo) > 1e-6 || math.Abs(hi-tc.hi) > 1e-6 {
			t.Errorf("Wilson(%d, %d) = [%.6f, %.6f], want [%.6f, %.6f]", tc.k, tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
	if lo, hi := Wilson(0, 0, Z95); lo != 0 || hi != 1 {
		t.Errorf("Wilson(0, 0) = [%v, %v], want [0, 1]", lo, hi)
	}
}

func TestWilsonProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 2000 {
		n := 1 + rng.IntN(10000)
		k := rng.IntN(n + 1)
		lo, hi := Wilson(k, n, Z95)
		p := float64(k) / float64(n)
		if lo < 0 || hi > 1 || lo > p+1e-12 || hi < p-1e-12 {
			t.Fatalf("Wilson(%d, %d) = [%v, %v] does not hold p = %v within [0, 1]", k, n, lo, hi, p)
		}
		// Four times the trials at the same rate: a narrower interval.
		lo4, hi4 := Wilson(4*k, 4*n, Z95)
		if hi4-lo4 >= hi-lo {
			t.Fatalf("Wilson(%d, %d) width %v is not below Wilson(%d, %d) width %v", 4*k, 4*n, hi4-lo4, k, n, hi-lo)
		}
	}
}

func TestPercentile(t *testing.T) {
	vs := []float64{50, 15, 40, 20, 35} // sorted: 15 20 35 40 50
	for _, tc := range []struct{ p, want float64 }{
		{5, 15}, {30, 20}, {40, 20}, {50, 35}, {95, 50}, {100, 50},
	} {
		if got := Percentile(vs, tc.p); got != tc.want {
			t.Errorf("p%v = %v, want %v", tc.p, got, tc.want)
		}
	}
	if vs[0] != 50 {
		t.Error("Percentile sorted its input")
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("percentile of nothing is not NaN")
	}
	// The same method as summary.json's.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		n := 1 + rng.IntN(300)
		ds := make([]time.Duration, n)
		fs := make([]float64, n)
		for i := range ds {
			ds[i] = time.Duration(rng.IntN(1e9))
			fs[i] = float64(ds[i])
		}
		for _, p := range []float64{50, 95, 99} {
			if got, want := Percentile(fs, p), float64(results.Percentile(ds, p)); got != want {
				t.Fatalf("n %d p%v: %v, results.Percentile says %v", n, p, got, want)
			}
		}
	}
}

func TestStatsOf(t *testing.T) {
	vs := make([]float64, 100)
	for i := range vs {
		vs[i] = float64(100 - i) // 100 … 1
	}
	s := StatsOf(vs)
	if s.N != 100 || s.P50 != 50 || s.P95 != 95 || s.Max != 100 {
		t.Errorf("StatsOf(1…100) = %+v, want n 100 p50 50 p95 95 max 100", s)
	}
	if s := StatsOf(nil); s.N != 0 || s.Max != 0 {
		t.Errorf("StatsOf(nil) = %+v", s)
	}
}

func TestNewRunStat(t *testing.T) {
	s := results.Summary{RunID: "r", Cycles: 40, InfraErrors: 2,
		Outcomes:        map[results.Outcome]int{results.Updated: 20, results.Bricked: 18, results.InfraError: 2},
		RecoveryVersion: results.DurationStats{N: 20, P50Ms: 31.5}}
	r := NewRunStat(s)
	// 18 bricked of the 38 cycles the bench ran without an infra error.
	if r.Failed != 18 || r.Infra != 2 || math.Abs(r.Rate-18.0/38) > 1e-12 || r.RecoveryMs != 31.5 {
		t.Errorf("run stat %+v", r)
	}
	lo, hi := Wilson(18, 38, Z95)
	if r.Lo != lo || r.Hi != hi {
		t.Errorf("interval [%v, %v], want [%v, %v]", r.Lo, r.Hi, lo, hi)
	}
	// Missed cuts tested nothing: out of the rate, both ways.
	s.Cycles, s.MissedCuts, s.Outcomes[results.MissedCut] = 43, 3, 3
	if r := NewRunStat(s); r.Failed != 18 || r.Missed != 3 || r.Infra != 2 || math.Abs(r.Rate-18.0/38) > 1e-12 {
		t.Errorf("run stat with missed cuts %+v", r)
	}
	if r := NewRunStat(results.Summary{}); !math.IsNaN(r.RecoveryMs) || r.Lo != 0 || r.Hi != 1 {
		t.Errorf("empty run stat %+v", r)
	}
}

func TestNiceBin(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{
		{0.7, 1}, {1, 1}, {1.2, 2}, {3, 5}, {7, 10}, {23, 50}, {0.013, 0.02}, {0, 1},
	} {
		if got := niceBin(tc.in); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("niceBin(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestTrimFloats(t *testing.T) {
	in := `<path d="M10.123456 20.5L3.14159,2"/><text x="1.23456">v1.23456 board</text>`
	want := `<path d="M10.12 20.5L3.14,2"/><text x="1.23">v1.23456 board</text>`
	if got := trimFloats(in); got != want {
		t.Errorf("trimFloats:\n got %s\nwant %s", got, want)
	}
}

func TestPlanTime(t *testing.T) {
	for _, tc := range []struct {
		plan string
		want time.Duration
		ok   bool
	}{
		{"at_time 150ms", 150 * time.Millisecond, true},
		{"random at_time 1.5s", 1500 * time.Millisecond, true},
		{"after_block 3", 0, false},
		{"at_time", 0, false},
		{"at_time -3ms", 0, false},
	} {
		got, ok := planTime(tc.plan)
		if got != tc.want || ok != tc.ok {
			t.Errorf("planTime(%q) = %v %v, want %v %v", tc.plan, got, ok, tc.want, tc.ok)
		}
	}
}
