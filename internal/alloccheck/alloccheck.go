// Package alloccheck measures what a parser costs in memory, so that
// tests and fuzz targets can bound it by counters rather than by wall
// clock: the bytes and objects allocated by one call.
package alloccheck

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Cost is what one call allocated.
type Cost struct {
	Bytes   uint64 // bytes allocated (garbage included)
	Objects uint64 // heap objects allocated
	// Time is how long f ran: for logs and documentation, never to
	// assert on.
	Time time.Duration
}

var mu sync.Mutex // one measurement at a time: the counters are the process's

// Measure runs f and returns what it allocated. Other goroutines'
// allocations count too: measure where nothing else runs.
//
// It reads runtime.MemStats, which flushes every P's allocation cache
// (a short stop of the world): runtime/metrics counts a small object only
// when the span it came from leaves its cache, so a measure taken with it
// can miss what f allocated, or charge f with up to a span per size class
// allocated before it.
func Measure(f func()) Cost {
	mu.Lock()
	defer mu.Unlock()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	start := time.Now()
	f()
	took := time.Since(start)
	runtime.ReadMemStats(&m1)
	return Cost{Bytes: m1.TotalAlloc - m0.TotalAlloc, Objects: m1.Mallocs - m0.Mallocs, Time: took}
}

// FuzzSlack is what a fuzz target's bound allows beyond its parser's own
// constant: while a target runs, the fuzzing engine's goroutines allocate
// too (a few KiB were seen charged to one call), and Measure counts the
// whole process.
const FuzzSlack = 64 << 10

// YAMLPerByte and YAMLFixed bound what reading a bench or job file
// (internal/config.Parse and a decoder over its nodes) may allocate, for
// the fuzz targets of the packages that read them: the YAML lexer and
// parser take up to about 600 bytes per byte of input.
const (
	YAMLPerByte = 1000
	YAMLFixed   = 2 << 20
)

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

// Stream is a reader of N bytes made of Pattern repeated (the last copy
// cut short), produced as it is read: a test can feed a parser a 100 MB
// line without holding it. Off counts the bytes read so far, so a test
// can tell how much of the input a parser took before it stopped.
type Stream struct {
	Pattern []byte
	N       int64
	Off     int64
}

// Repeat returns a Stream of n bytes of pattern.
func Repeat(pattern string, n int64) *Stream {
	if pattern == "" && n > 0 {
		panic("alloccheck: Repeat of an empty pattern")
	}
	return &Stream{Pattern: []byte(pattern), N: n}
}

// Read fills p from the stream; it never allocates.
func (s *Stream) Read(p []byte) (int, error) {
	if s.Off >= s.N {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), s.N-s.Off)]
	// One period from where the stream is, then doubling copies of it:
	// a byte-long pattern does not cost a copy a byte.
	k := len(s.Pattern)
	phase := int(s.Off % int64(k))
	n := copy(p, s.Pattern[phase:])
	n += copy(p[n:], s.Pattern[:phase])
	for n < len(p) {
		n += copy(p[n:], p[:n-n%k])
	}
	s.Off += int64(n)
	return n, nil
}

// Log logs what one bomb cost, in the form the documentation's bomb
// tables take: input size, time, bytes and objects allocated, and the
// outcome.
func Log(t testing.TB, what string, n int64, c Cost, outcome any) {
	t.Helper()
	t.Logf("bomb %s: %s in, %v, %s allocated (%d objects): %v", what, Size(n), c.Time.Round(time.Microsecond), Size(int64(c.Bytes)), c.Objects, outcome)
}

// Size formats a byte count for logs: bytes, KiB or MiB.
func Size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// Sparse makes a file of size bytes at path that holds nothing on disk
// (a sparse file): a file of gigabytes a parser must refuse by its size.
// The test is skipped where the file system cannot make one.
func Sparse(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Skipf("no sparse file of %s: %v", Size(size), err)
	}
	return path
}

// Counter counts the bytes read through it: how far a parser read into
// an input before a limit stopped it.
type Counter struct {
	R io.Reader
	N int64
}

// Read implements io.Reader.
func (c *Counter) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
