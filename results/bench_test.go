package results

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// benchEvent is a typical hot-path event: a block acknowledged.
func benchEvent(clock *Clock, i int) Event {
	e := clock.Stamp("sim-safe", 3, BlockAcked)
	e.Block = int64(i)
	e.Dur = 180 * time.Microsecond
	return e
}

// BenchmarkJSONLEmit measures one Emit: encode plus one write(2). It also
// reports the 99th percentile of single calls, the figure that matters
// next to the trigger latency goal (p99 < 100 µs).
func BenchmarkJSONLEmit(b *testing.B) {
	j, err := OpenJSONL(filepath.Join(b.TempDir(), "events.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	clock := NewClock()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := benchEvent(clock, i)
		t0 := time.Now()
		j.Emit(e)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	if err := j.Err(); err != nil {
		b.Fatal(err)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[nearestRank(99, len(lat))].Nanoseconds()), "p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "max-ns")
}

// BenchmarkDBEventSink measures storing events through the batching
// sink: ns/op is per event, Emit and the amortised batch insert included.
// It flushes every EventBatch events so the emitter never outruns the
// writer (which would only measure the drop path). emit-p99-ns is the
// cost to the caller of one Emit.
func BenchmarkDBEventSink(b *testing.B) {
	d, _ := openTestDB(b)
	if err := d.BeginRun(testRun("r1")); err != nil {
		b.Fatal(err)
	}
	sink := d.Events("r1")
	defer sink.Close()
	clock := NewClock()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := benchEvent(clock, i)
		t0 := time.Now()
		sink.Emit(e)
		lat = append(lat, time.Since(t0))
		if i%EventBatch == EventBatch-1 {
			if err := sink.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := sink.Flush(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n := sink.Dropped(); n != 0 {
		b.Fatalf("%d events dropped", n)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[nearestRank(99, len(lat))].Nanoseconds()), "emit-p99-ns")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds()), "emit-max-ns")
}

// BenchmarkRecordCycle measures one durable cycle record (a transaction
// with synchronous=FULL).
func BenchmarkRecordCycle(b *testing.B) {
	d, _ := openTestDB(b)
	if err := d.BeginRun(testRun("r1")); err != nil {
		b.Fatal(err)
	}
	c := testCycles("r1")[4]
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.Cycle = i
		if err := d.RecordCycle(c); err != nil {
			b.Fatal(err)
		}
	}
}
