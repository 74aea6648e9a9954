package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/results"
)

// The lab's figures (docs/PERFORMANCE.md), measured on whole processes
// built without the race detector, as a lab runs them:
//
//	go test ./cmd/fudbench -run '^$' -bench 'Lab' -benchtime 3x

var (
	plainOnce sync.Once
	plainBin  string
	plainErr  error
)

// usePlainBinary points the helpers at a build without -race for the
// benchmark's duration.
func usePlainBinary(b *testing.B) {
	plainOnce.Do(func() {
		plainBin = filepath.Join(filepath.Dir(binary), "fudbench-plain")
		out, err := exec.Command("go", "build", "-o", plainBin, ".").CombinedOutput()
		if err != nil {
			plainErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		b.Fatal(plainErr)
	}
	raced := binary
	binary = plainBin
	b.Cleanup(func() { binary = raced })
}

// BenchmarkLabDispatch runs the same 32-cycle job as `fudbench run` and
// through a lab (`submit --wait`, one agent), alternately, and reports
// the lab's time over the local one, the overhead per cycle, and the
// time from submit to the first cycle starting on the agent.
func BenchmarkLabDispatch(b *testing.B) {
	usePlainBinary(b)
	l := startLab(b, b.TempDir(), "", "")
	l.agent(b, "pi1")
	dir := b.TempDir()
	var local, remote, first time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		_, errOut, code := cli(b, "run", "testdata/lab/long.yaml", "--no-db", "--out", filepath.Join(dir, strconv.Itoa(i)))
		if code != 0 {
			b.Fatalf("run: exit %d\n%s", code, errOut)
		}
		local += time.Since(start)

		start = time.Now()
		out, errOut, code := l.submit(b, "testdata/lab/long.yaml", "--wait")
		if code != 0 {
			b.Fatalf("submit --wait: exit %d\n%s", code, errOut)
		}
		remote += time.Since(start)
		evs, err := l.db(b).ReadEvents(strings.TrimSpace(out))
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == results.CycleStart {
				first += e.Wall.Sub(start)
				break
			}
		}
	}
	n := float64(b.N)
	b.ReportMetric(local.Seconds()/n, "local-s/run")
	b.ReportMetric(remote.Seconds()/n, "lab-s/run")
	b.ReportMetric(remote.Seconds()/local.Seconds(), "lab/local")
	b.ReportMetric(float64((remote-local).Milliseconds())/n/32, "overhead-ms/cycle")
	b.ReportMetric(float64(first.Milliseconds())/n, "submit-to-first-cycle-ms")
}

// BenchmarkLabScale runs a lab of many agents on this machine, each with
// the five built-in boards, and one job per agent at once; it reports the
// coordinator's CPU time and peak memory, and the agents' (mean).
func BenchmarkLabScale(b *testing.B) {
	for _, agents := range []int{4, 8, 16, 24} {
		b.Run(fmt.Sprintf("agents=%d", agents), func(b *testing.B) {
			usePlainBinary(b)
			for i := 0; i < b.N; i++ {
				l := startLab(b, b.TempDir(), "", "")
				var procs []*labProc
				for a := range agents {
					procs = append(procs, l.agent(b, fmt.Sprintf("pi%d", a+1)))
				}
				start := time.Now()
				var wg sync.WaitGroup
				for range agents {
					wg.Go(func() {
						if _, errOut, code := l.submit(b, "testdata/lab/small.yaml", "--wait"); code != 0 {
							b.Errorf("submit --wait: exit %d\n%s", code, errOut)
						}
					})
				}
				wg.Wait()
				wall := time.Since(start)
				cpu, rss := procStats(b, l.cmd.Process.Pid)
				var acpu, arss float64
				for _, p := range procs {
					c, r := procStats(b, p.cmd.Process.Pid)
					acpu += c
					arss += r
				}
				b.ReportMetric(float64(agents*5), "boards")
				b.ReportMetric(wall.Seconds(), "wall-s")
				b.ReportMetric(cpu, "coordinator-cpu-s")
				b.ReportMetric(rss, "coordinator-peak-MiB")
				b.ReportMetric(acpu/float64(agents), "agent-cpu-s")
				b.ReportMetric(arss/float64(agents), "agent-peak-MiB")
			}
		})
	}
}

// procStats reads a live process's CPU seconds (user and system) and peak
// resident memory in MiB from /proc.
func procStats(b *testing.B, pid int) (cpu, peakMiB float64) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may hold spaces): utime and
	// stime are the 14th and 15th fields of the line.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	cpu = (ut + st) / 100 // USER_HZ
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			peakMiB = kb / 1024
		}
	}
	return cpu, peakMiB
}
