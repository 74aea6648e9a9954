// Package alloccheck measures what a parser costs in memory, so that
// tests and fuzz targets can bound it by counters rather than by wall
// clock: the bytes and objects allocated by one call, and the peak of the
// live heap during it.
package alloccheck

import (
	"runtime/metrics"
	"sync"
	"testing"
)

// Cost is what one call allocated.
type Cost struct {
	Bytes   uint64 // bytes allocated (garbage included)
	Objects uint64 // heap objects allocated
}

var mu sync.Mutex // one measurement at a time: the counters are the process's

// Measure runs f and returns what it allocated. Other goroutines'
// allocations count too: measure where nothing else runs.
func Measure(f func()) Cost {
	mu.Lock()
	defer mu.Unlock()
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}}
	metrics.Read(s)
	b0, o0 := s[0].Value.Uint64(), s[1].Value.Uint64()
	f()
	metrics.Read(s)
	return Cost{Bytes: s[0].Value.Uint64() - b0, Objects: s[1].Value.Uint64() - o0}
}

// Bound fails t when f allocates more than perByte bytes per byte of its
// input (of size n) plus fixed bytes; it returns the cost.
func Bound(t testing.TB, what string, n int, perByte, fixed uint64, f func()) Cost {
	t.Helper()
	c := Measure(f)
	if limit := perByte*uint64(n) + fixed; c.Bytes > limit {
		t.Errorf("%s: %d bytes of input allocated %d bytes (%d objects), more than %d×%d+%d = %d",
			what, n, c.Bytes, c.Objects, perByte, n, fixed, limit)
	}
	return c
}
