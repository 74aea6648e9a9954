package lab

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// BenchmarkIngest measures the events per second the coordinator stores:
// an agent's publisher sends b.N events (batches of PublishBatch) over
// the embedded server, and the coordinator writes them to its database.
//
//	go test ./lab -run '^$' -bench Ingest -benchtime 200000x
func BenchmarkIngest(b *testing.B) {
	s, err := StartServer(ServerOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	js := connect(b, s.ClientURL())
	db, err := results.OpenDB(filepath.Join(b.TempDir(), "results.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := NewCoordinator(ctx, js, CoordinatorOptions{DB: db})
	if err != nil {
		b.Fatal(err)
	}
	run := "bench-run"
	if err := db.PutRun(results.RunInfo{ID: run, Job: "bench", JobFile: "bench.yaml", JobHash: "h", Started: time.Now()}, StatusRunning); err != nil {
		b.Fatal(err)
	}
	go c.Ingest(ctx)
	p := NewPublisher(js, run, "pi1", 1, nil)
	e := results.Event{Board: "sim-safe", Cycle: 1, Kind: results.BlockAcked, Block: 7, Dur: 800 * time.Microsecond}
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		e.T, e.Wall, e.Block = time.Duration(i)*time.Microsecond, start.Add(time.Duration(i)), int64(i%64)
		p.Emit(e)
	}
	if err := p.Close(ctx); err != nil {
		b.Fatal(err)
	}
	for {
		n, err := db.CountEvents(run)
		if err != nil {
			b.Fatal(err)
		}
		if n >= b.N {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
