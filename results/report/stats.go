package report

import (
	"math"
	"slices"
)

// Z95 is the standard normal quantile of a two-sided 95 % interval.
const Z95 = 1.959963984540054

// Wilson returns the Wilson score interval of a proportion: k successes
// (here: failed cycles) out of n trials, at the confidence whose normal
// quantile is z (Z95 for 95 %). Unlike the normal (Wald) interval it stays
// inside [0, 1] and does not collapse to a width of zero when k is 0 or n,
// which is the usual case of a soak run: "0 failures in 5,000 cycles"
// still bounds the failure rate above. n = 0 gives [0, 1]: nothing known.
func Wilson(k, n int, z float64) (lo, hi float64) {
	if n <= 0 {
		return 0, 1
	}
	k = min(max(k, 0), n)
	nf := float64(n)
	p := float64(k) / nf
	z2 := z * z
	den := 1 + z2/nf
	centre := (p + z2/(2*nf)) / den
	half := z / den * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	lo, hi = centre-half, centre+half
	// At the ends the exact bound is 0 or 1; rounding may leave a
	// negative zero or 1+ε.
	if k == 0 {
		lo = 0
	}
	if k == n {
		hi = 1
	}
	return max(lo, 0), min(hi, 1)
}

// Percentile is the p-th percentile (0 < p ≤ 100) of vs by the
// nearest-rank method, the one summary.json uses: the value at rank
// ceil(p/100·n) of the sorted values, so always one of the values seen.
// NaN when vs is empty. vs is not modified.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[nearestRank(p, len(s))]
}

func nearestRank(p float64, n int) int {
	r := int(math.Ceil(p / 100 * float64(n)))
	return min(max(r, 1), n) - 1
}

// Stats are the order statistics the report prints for a sample.
type Stats struct {
	N             int
	P50, P95, Max float64
}

// StatsOf returns the nearest-rank p50 and p95 and the maximum of vs.
func StatsOf(vs []float64) Stats {
	if len(vs) == 0 {
		return Stats{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return Stats{N: len(s), P50: s[nearestRank(50, len(s))], P95: s[nearestRank(95, len(s))], Max: s[len(s)-1]}
}
