package results_test

import (
	"fmt"
	"os"
	"time"

	"github.com/fudbench/fudbench/results"
)

// A run's end: summarize its cycles and print the table.
func ExampleWriteTable() {
	run := results.RunInfo{ID: "r1", Job: "demo", Boards: []string{"sim-safe"}, Planned: map[string]int{"sim-safe": 2}}
	cycles := []results.Cycle{
		{Run: "r1", Board: "sim-safe", Cycle: 1, Plan: "after_block 3", Outcome: results.Updated, Accepted: true,
			Cut:             &results.CutInfo{Trigger: "after_block 3", Latency: 35 * time.Microsecond, LastAcked: 3, InFlight: -1},
			RecoveryVersion: 640 * time.Millisecond},
		{Run: "r1", Board: "sim-safe", Cycle: 2, Plan: "after_block 9", Outcome: results.Updated, Accepted: true,
			Cut:             &results.CutInfo{Trigger: "after_block 9", Latency: 41 * time.Microsecond, LastAcked: 9, InFlight: -1},
			RecoveryVersion: 710 * time.Millisecond},
	}
	s := results.Summarize(run, cycles)
	results.WriteTable(os.Stdout, s)
	// Output:
	// BOARD     CYCLES  UPDATED  ROLLBACK  STUCK  BRICKED  MISSED  INFRA  RECOV p50  RECOV p95  TRIG p99  VERDICT
	// sim-safe  2       2        0         0      0        0       0      640ms      710ms      41µs      pass
	// verdict: pass (2 cycles, 0 failed, infra errors: 0, missed cuts: 0)
}

// Nearest-rank percentiles are always one of the values seen.
func ExamplePercentile() {
	ds := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	fmt.Println(results.Percentile(ds, 50))
	fmt.Println(results.Percentile(ds, 95))
	// Output:
	// 2ms
	// 4ms
}
