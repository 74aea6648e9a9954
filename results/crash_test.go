package results

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a writer (selected by
// this variable, holding the output directory) and kills it with SIGKILL.
const writerEnv = "FUDBENCH_RESULTS_TEST_WRITER"

// TestHelperWriter is the writer process of TestKillWhileWriting: two
// boards emit events to events.jsonl and the database and record cycles
// as fast as they can, printing "recorded BOARD N" after each RecordCycle
// returns. It does nothing in a normal test run.
func TestHelperWriter(t *testing.T) {
	dir := os.Getenv(writerEnv)
	if dir == "" {
		t.Skip("helper process for TestKillWhileWriting")
	}
	j, err := OpenJSONL(filepath.Join(dir, "events.jsonl"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	d, err := OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	run := testRun("crash")
	run.ID = fmt.Sprint("crash-", time.Now().UnixNano())
	if err := d.BeginRun(run); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	sink := d.Events(run.ID)
	both := SinkFunc(func(e Event) { j.Emit(e); sink.Emit(e) })
	clock := NewClock()
	var out sync.Mutex
	var wg sync.WaitGroup
	for _, board := range run.Boards {
		wg.Go(func() {
			for n := 1; ; n++ {
				for b := range 64 {
					e := clock.Stamp(board, n, BlockAcked)
					e.Block = int64(b)
					e.Text = strings.Repeat("payload ", b%8)
					both.Emit(e)
				}
				e := clock.Stamp(board, n, CycleOutcome)
				e.Text = string(Updated)
				both.Emit(e)
				c := testCycles(run.ID)[0]
				c.Board, c.Cycle = board, n
				if err := d.RecordCycle(c); err != nil {
					fmt.Println("error", err)
					os.Exit(1)
				}
				out.Lock()
				fmt.Printf("recorded %s %d\n", board, n) // os.Stdout is unbuffered
				out.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestKillWhileWriting(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns writer processes")
	}
	for round := range 3 {
		t.Run(fmt.Sprint("round", round), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
			cmd.Env = append(os.Environ(), writerEnv+"="+dir)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			recorded := map[string]bool{}
			sc := bufio.NewScanner(stdout)
			// Kill at a different point of the writer's loop each round.
			target := 20 + 7*round
			for sc.Scan() {
				line := sc.Text()
				if strings.HasPrefix(line, "error") {
					t.Fatalf("writer: %s", line)
				}
				if rest, ok := strings.CutPrefix(line, "recorded "); ok {
					recorded[rest] = true
				}
				if len(recorded) == target {
					time.Sleep(time.Duration(round) * 300 * time.Microsecond)
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
					break
				}
			}
			// Lines printed after the kill decision were also recorded.
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "recorded "); ok {
					recorded[rest] = true
				}
			}
			err = cmd.Wait()
			if len(recorded) < target {
				t.Fatalf("writer stopped after %d cycles: %v\n%s", len(recorded), err, stderr.String())
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("writer did not die of SIGKILL: %v", err)
			}

			d, err := OpenDB(filepath.Join(dir, "results.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if err := d.IntegrityCheck(); err != nil {
				t.Fatal(err)
			}
			run, cycles, err := d.LatestUnfinished(testRun("crash").JobHash)
			if err != nil || run == nil {
				t.Fatalf("killed run not found as unfinished: %v", err)
			}
			stored := map[string]bool{}
			for _, c := range cycles {
				stored[fmt.Sprint(c.Board, " ", c.Cycle)] = true
			}
			for k := range recorded {
				if !stored[k] {
					t.Errorf("cycle %s reported recorded but not in the database", k)
				}
			}

			raw, err := os.ReadFile(filepath.Join(dir, "events.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if len(raw) > 0 && raw[len(raw)-1] != '\n' {
				t.Errorf("events.jsonl ends in a torn line: %q", raw[max(0, len(raw)-80):])
			}
			events, err := ReadJSONL(bytes.NewReader(raw))
			if err != nil {
				t.Fatalf("events.jsonl: %v", err)
			}
			// Every recorded cycle's outcome event was emitted before its
			// RecordCycle, so the log must hold it.
			outcomes := map[string]bool{}
			for _, e := range events {
				if e.Kind == CycleOutcome {
					outcomes[fmt.Sprint(e.Board, " ", e.Cycle)] = true
				}
			}
			for k := range recorded {
				if !outcomes[k] {
					t.Errorf("cycle %s recorded but its outcome event is not in events.jsonl", k)
				}
			}
			t.Logf("killed after %d recorded cycles; db holds %d; %d events in jsonl", len(recorded), len(cycles), len(events))
		})
	}
}
