package results

import (
	"fmt"
	"time"
)

// testRun is the run the fixtures belong to.
func testRun(id string) RunInfo {
	return RunInfo{
		ID: id, Job: "demo", JobFile: "(built-in demo)", JobHash: "hash-" + id,
		Started: time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC),
		Boards:  []string{"sim-safe", "sim-naive"},
		Host:    "bench1", Version: "0.1.0-test",
		Planned: map[string]int{"sim-safe": 4, "sim-naive": 4},
	}
}

// testCycles are two boards' cycles covering the outcomes but
// stuck-recovery, with and without cuts, a device's record of a cut, and
// a missed cut.
func testCycles(run string) []Cycle {
	ms := time.Millisecond
	cut := func(block int64, lat time.Duration) *CutInfo {
		return &CutInfo{Trigger: fmt.Sprintf("after_block %d", block), T: time.Duration(block) * time.Second,
			Latency: lat, LastAcked: block, InFlight: -1}
	}
	base := func(board string, n int, plan string, planned int64) Cycle {
		return Cycle{Run: run, Board: board, Cycle: n, Plan: plan, PlannedBlock: planned,
			Blocks: 64, BlockSize: 1024, ImageSize: 64*1024 - 100, BlocksSent: 64,
			Start: time.Duration(n) * 10 * time.Second, End: time.Duration(n)*10*time.Second + 2500*ms}
	}
	var cs []Cycle
	// sim-safe: four cycles, all updated.
	for i, b := range []int64{0, 17, 40, 63} {
		c := base("sim-safe", i+1, fmt.Sprintf("after_block %d", b), b)
		c.Cut = cut(b, time.Duration(20+10*i)*time.Microsecond)
		c.Outcome, c.Accepted = Updated, true
		c.BlocksResent = i // 0, 1, 2, 3
		c.BlocksSent = 64 + i
		c.Resumes = []uint32{uint32(b + 1)}
		c.Transfer = time.Duration(1000+100*i) * ms
		c.RecoveryAnswer = time.Duration(100+10*i) * ms
		c.RecoveryVersion = time.Duration(500+100*i) * ms
		cs = append(cs, c)
	}
	// Cycle 2 landed on its second run, and its device kept a record.
	cs[1].Attempts = 2
	cs[1].Cut.Device = &DeviceCut{Writing: 18, LastAcked: 17, Flash: "program"}
	// sim-naive: bricked and reflashed (accepted), rolled back (not
	// accepted), infra error, a cut that fired past its planned block
	// (marked accepted, which must not count).
	c := base("sim-naive", 1, "after_block 5", 5)
	c.Cut = cut(5, 50*time.Microsecond)
	c.Outcome, c.Accepted, c.Reflashed = Bricked, true, true
	c.Reason = "no answer within 5s"
	c.BlocksResent = 10
	c.LastConsole = []string{"boot: image invalid", "recovery: <none>"}
	cs = append(cs, c)
	c = base("sim-naive", 2, "random during_block 3 +2ms", -1)
	c.Cut = cut(3, 80*time.Microsecond)
	c.Outcome, c.Accepted = RolledBack, false
	c.Reason = `version 1.0.0 still runs, want "1.1.0"`
	c.LastConsole = []string{"app 1.0.0 up", "\x1b[31mred\x1b[0m & <tag> \x00 bell\a"}
	c.Transfer = 0
	c.RecoveryAnswer = 90 * ms
	cs = append(cs, c)
	c = base("sim-naive", 3, "none", -1)
	c.Outcome, c.Accepted = InfraError, false
	c.Reason = "power: relay driver: i/o error"
	c.Transfer = 0
	c.BlocksSent = 0
	cs = append(cs, c)
	c = base("sim-naive", 4, "after_block 40", 40)
	c.Cut = cut(44, 60*time.Microsecond)
	c.Cut.Trigger = "after_block 40"
	c.Cut.Device = &DeviceCut{Writing: 45, LastAcked: 44, Flash: "erase"}
	c.Outcome, c.Accepted = MissedCut, true
	c.Missed = "fired after block 44 was acknowledged, planned after block 40"
	c.Attempts = 2
	c.LastConsole = []string{"flash: erase sector 11"}
	cs = append(cs, c)
	return cs
}
