package jobs_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// scaleJob is the job the scale and soak benchmarks run on every board:
// a 4 KiB update in 512-byte blocks (8 blocks), two after_block cuts and
// two during_block cuts per board, the baseline flashed over the GDB
// port before every cycle, everything at time scale 0.
const scaleJob = `
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 4KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 4KiB, seed: 2}}
block_size: 512
cuts:
  - after_block: {from: 1, to: 2}
  - during_block: {block: {from: 3, to: 4}}
off_time: 1ms
recovery_timeout: 10s
repeat: %d
`

// scaleFigures is what one campaign at scale measured.
type scaleFigures struct {
	boards, cycles, infra, missed, notUpdated int
	// during is the number of during_block cuts; duringWriting those
	// the board recorded while it was writing the block (the rest found
	// the block still on its way).
	during, duringWriting                  int
	wall                                   time.Duration
	cpu                                    time.Duration // user+sys of the whole process
	idleHeap, peakHeap, peakTotal, peakRSS float64       // bytes
	peakFDs                                float64
	firstMiss                              string
}

// BenchmarkScale runs one campaign on 64, 128, 256 and 512 in-process sim
// boards in parallel (time scale 0) through the executor, as `fudbench
// run` does (SQLite results, events.jsonl, file locks, gpio power driver,
// GDB probe), and reports: cycles, infra-error outcomes, missed cuts
// (below), cycles per minute, process CPU (user+sys, getrusage) per cycle
// and per board, the heap of the idle booted boards and the peak heap,
// total runtime memory and RSS during the campaign.
//
// A missed cut is a planned cut that did not fire, or whose real cut
// point in the sim board's own CutRecord differs from the plan:
// after_block N must find the board's flash idle, no block being
// written and block N the last it acknowledged; during_block N (delay
// 0, fired as block N is sent) must find block N not yet acknowledged by
// the board (last acknowledged N-1, and block N being written or not yet
// arrived).
//
// Run it with -benchtime 1x: each sub-benchmark is one campaign.
func BenchmarkScale(b *testing.B) {
	for _, n := range []int{64, 128, 256, 512} {
		b.Run(fmt.Sprintf("boards%d", n), func(b *testing.B) {
			var f scaleFigures
			for b.Loop() {
				f = scaleCampaign(b, n, 1)
			}
			reportScale(b, f)
		})
	}
}

// BenchmarkSoak is the soak rate: complete cut-and-recover cycles per
// minute on 1 and on 8 sim boards at time scale 0 (each board's cycles in
// order, the boards in parallel; 100 cycles per board), and the process
// CPU each cycle costs (the sim boards run in the same process, so this
// is bench and boards together).
func BenchmarkSoak(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprintf("boards%d", n), func(b *testing.B) {
			var f scaleFigures
			for b.Loop() {
				f = scaleCampaign(b, n, 25)
			}
			reportScale(b, f)
		})
	}
}

func reportScale(b *testing.B, f scaleFigures) {
	b.ReportMetric(float64(f.boards), "boards")
	b.ReportMetric(float64(f.cycles), "cycles")
	b.ReportMetric(float64(f.infra), "infra-errors")
	b.ReportMetric(float64(f.missed), "missed-cuts")
	b.ReportMetric(float64(f.notUpdated), "not-updated")
	if f.during > 0 {
		b.ReportMetric(100*float64(f.duringWriting)/float64(f.during), "during-writing-%")
	}
	b.ReportMetric(float64(f.cycles)/f.wall.Minutes(), "cycles/min")
	b.ReportMetric(f.cpu.Seconds()/float64(f.cycles), "CPU-s/cycle")
	b.ReportMetric(float64(f.cpu.Milliseconds())/float64(f.boards), "CPU-ms/board")
	b.ReportMetric(f.idleHeap/float64(f.boards)/(1<<20), "idle-MiB/board")
	b.ReportMetric(f.peakHeap/(1<<20), "peak-heap-MiB")
	b.ReportMetric(f.peakTotal/(1<<20), "peak-total-MiB")
	b.ReportMetric(f.peakTotal/float64(f.boards)/(1<<20), "MiB/board")
	b.ReportMetric(f.peakFDs, "peak-fds")
	if f.peakRSS > 0 {
		b.ReportMetric(f.peakRSS/(1<<20), "peak-RSS-MiB")
	}
	if f.firstMiss != "" {
		b.Log("first missed cut: " + f.firstMiss)
	}
}

// scaleCampaign starts n boards, runs scaleJob (repeated repeat times)
// on all of them and checks every cycle against the boards' cut records.
func scaleCampaign(b *testing.B, n, repeat int) scaleFigures {
	b.StopTimer()
	defer b.StartTimer() // b.Loop wants it running
	// Memory an earlier campaign of this process left mapped would count
	// in this one's peak.
	debug.FreeOSMemory()
	heap0 := readMem().heap
	var simLog lockedBuffer
	s, inv := startSimsLogged(b, n, slog.New(slog.NewTextHandler(&simLog, &slog.HandlerOptions{Level: slog.LevelWarn})))
	runtime.GC()
	idle := readMem().heap - heap0
	names := make([]string, n)
	for i, bd := range inv.Boards {
		names[i] = bd.Name
	}
	job := parseJob(b, fmt.Sprintf(scaleJob, strings.Join(names, ", "), repeat))
	base, upd := build(b, "1.0.0", 1, 4<<10, 1), build(b, "2.0.0", 2, 4<<10, 2)
	plan, err := job.Cycles(job.Blocks(len(upd)))
	if err != nil {
		b.Fatal(err)
	}
	before := map[string]int{}
	for _, bd := range s.Boards {
		before[bd.Name()] = len(bd.Cuts())
	}

	resetPeakRSS()
	stop := sampleMem()
	ru0 := rusage()
	b.StartTimer()
	start := time.Now()
	dir := b.TempDir()
	rep, runErr := scaleExecute(b, job, inv, dir, base, upd)
	wall := time.Since(start)
	b.StopTimer()
	cpu := rusage() - ru0
	peak := stop()
	defer s.Close() // before the next iteration's boards start
	if runErr != nil {
		b.Fatalf("run: %v", runErr)
	}

	f := scaleFigures{boards: n, cycles: len(rep.Cycles), wall: wall, cpu: cpu,
		idleHeap: idle, peakHeap: peak.heap - heap0, peakTotal: peak.total, peakRSS: peakRSS(), peakFDs: peak.fds}
	if want := n * len(plan); f.cycles != want {
		b.Errorf("%d cycles recorded, want %d", f.cycles, want)
	}
	byBoard := map[string][]results.Cycle{}
	for _, c := range rep.Cycles {
		byBoard[c.Board] = append(byBoard[c.Board], c)
		switch {
		case c.Outcome == results.InfraError:
			f.infra++
		case c.Outcome != results.Updated:
			f.notUpdated++
		}
	}
	clockStart := runClockStart(b, filepath.Join(dir, "events.jsonl"))
	logged := 0
	for _, c := range rep.Cycles {
		if c.Outcome == results.Updated || logged == 5 {
			continue
		}
		// The first few failures, with the board's own view, for the
		// benchmark's log.
		logged++
		bd := s.Board(c.Board)
		var recs []string
		for _, r := range bd.Cuts()[before[c.Board]:] {
			if !r.At.Before(clockStart.Add(c.Start)) && !r.At.After(clockStart.Add(c.End)) {
				recs = append(recs, fmt.Sprintf("%+v", r))
			}
		}
		b.Logf("%s cycle %d (%s): %s %s; cut %+v; board cuts in the cycle %v; board now %s, %d boots",
			c.Board, c.Cycle, c.Plan, c.Outcome, c.Reason, c.Cut, recs, bd.Mode(), bd.Boots())
	}
	if logged > 0 || f.missed > 0 {
		if text := simLog.String(); text != "" {
			b.Logf("sim boards' warnings and errors:\n%s", text)
		}
	}
	for _, bd := range s.Boards {
		recs := bd.Cuts()[before[bd.Name()]:]
		for _, c := range byBoard[bd.Name()] {
			miss, writing := missedCut(c, plan[c.Cycle-1], clockStart, recs)
			if plan[c.Cycle-1].Kind == "during_block" && c.Cut != nil {
				f.during++
				if writing {
					f.duringWriting++
				}
			}
			if miss != "" {
				f.missed++
				if f.firstMiss == "" {
					f.firstMiss = fmt.Sprintf("%s cycle %d: %s", c.Board, c.Cycle, miss)
				}
			}
		}
	}
	return f
}

// startSimsLogged is startSims with the boards logging to log.
func startSimsLogged(b *testing.B, n int, log *slog.Logger) (*sim.Sim, *boards.Bench) {
	var cfgs []sim.Config
	for i := range n {
		cfgs = append(cfgs, sim.Config{
			Name: fmt.Sprintf("x%d-%d", simSeq.Add(1), i), Strategy: sim.InplaceRecovery, Pins: true,
			UDPAddrs: []string{"127.0.0.1:0"}, DTLSAddr: "-", StateDir: b.TempDir(), Logger: log,
		})
	}
	s, err := sim.Start(cfgs, true, log)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	for _, bd := range s.Boards {
		bd.SetPower(false)
	}
	text, err := simbench.Inventory(s.Boards, nil)
	if err != nil {
		b.Fatal(err)
	}
	inv, err := boards.Parse("(scale bench)", text)
	if err != nil {
		b.Fatal(err)
	}
	return s, inv
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// missedCut compares cycle c, planned as spec, with the board's record
// of the first power-input cut made during the cycle (the trigger's: it
// comes before any power cycle of the recovery); "" when the cut landed
// where planned, and whether the board was writing the planned block.
// clockStart is the wall time of the run clock's zero.
func missedCut(c results.Cycle, spec jobs.CycleSpec, clockStart time.Time, recs []sim.CutRecord) (string, bool) {
	if spec.Kind != "after_block" && spec.Kind != "during_block" {
		return "", false
	}
	if c.Cut == nil {
		return fmt.Sprintf("%s did not fire", spec.Desc), false
	}
	// The run clock's zero is known to the millisecond (JSON wall
	// times); widen the cycle's window by that much.
	from, to := clockStart.Add(c.Start-time.Millisecond), clockStart.Add(c.End+time.Millisecond)
	i := slices.IndexFunc(recs, func(r sim.CutRecord) bool {
		return r.Cause == "power-input" && !r.At.Before(from) && !r.At.After(to)
	})
	if i < 0 {
		return fmt.Sprintf("%s fired but the board recorded no cut during the cycle", spec.Desc), false
	}
	r := recs[i]
	n := spec.Block()
	switch spec.Kind {
	case "after_block":
		if r.Flash.Kind != "idle" || r.Block != -1 || r.LastAcked != n {
			return fmt.Sprintf("%s: board recorded flash %s, block %d being written, last acknowledged %d", spec.Desc, r.Flash.Kind, r.Block, r.LastAcked), false
		}
	case "during_block":
		if r.LastAcked != n-1 || (r.Block != n && r.Block != -1) {
			return fmt.Sprintf("%s: board recorded block %d being written, last acknowledged %d", spec.Desc, r.Block, r.LastAcked), false
		}
	}
	return "", r.Block == n
}

// runClockStart is the wall time of a run's clock zero, from the first
// event of its events.jsonl (each event carries both).
func runClockStart(b *testing.B, path string) time.Time {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadBytes('\n')
	if err != nil {
		b.Fatalf("%s: first event: %v", path, err)
	}
	var e results.Event
	if err := json.Unmarshal(line, &e); err != nil {
		b.Fatalf("%s: first event: %v", path, err)
	}
	return e.Wall.Add(-e.T)
}

// scaleExecute runs job as `fudbench run` does (results database, event
// file, file locks, the same transmission parameters), writing into dir.
func scaleExecute(t testing.TB, job *jobs.Job, inv *boards.Bench, dir string, base, upd []byte) (*jobs.Report, error) {
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return jobs.Execute(context.Background(), jobs.RunOptions{
		Prepared: mustPrepare(t, job, inv, base, upd),
		Run:      results.RunInfo{ID: fmt.Sprintf("r%d", simSeq.Add(1)), Job: job.Name, JobHash: "h", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx: coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3},
	})
}

// rusage is the process's user+system CPU time so far.
func rusage() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type memSample struct{ heap, total, fds float64 }

var memSamples = []metrics.Sample{
	{Name: "/memory/classes/heap/objects:bytes"},
	{Name: "/memory/classes/heap/unused:bytes"},
	{Name: "/memory/classes/total:bytes"},
	{Name: "/memory/classes/heap/released:bytes"},
}

// readMem reads the in-use heap (objects and the unused part of in-use
// spans, as HeapInuse) and the runtime's total mapped memory less what
// it returned to the OS, without stopping the world.
func readMem() memSample {
	s := append([]metrics.Sample(nil), memSamples...)
	metrics.Read(s)
	u := func(i int) float64 { return float64(s[i].Value.Uint64()) }
	return memSample{heap: u(0) + u(1), total: u(2) - u(3)}
}

// sampleMem samples readMem every 10 ms until the returned function is
// called, which returns the peaks.
func sampleMem() func() memSample {
	var mu sync.Mutex
	var peak memSample
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			m := readMem()
			if i%10 == 0 {
				m.fds = openFDs()
			}
			mu.Lock()
			peak.heap, peak.total, peak.fds = max(peak.heap, m.heap), max(peak.total, m.total), max(peak.fds, m.fds)
			mu.Unlock()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() memSample {
		close(done)
		<-finished
		mu.Lock()
		defer mu.Unlock()
		return peak
	}
}

// openFDs counts the process's open file descriptors (0 when
// /proc/self/fd cannot be read).
func openFDs() float64 {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	return float64(len(ents))
}

// resetPeakRSS resets the kernel's record of the process's peak resident
// set (VmHWM); Linux only, ignored elsewhere.
func resetPeakRSS() {
	os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS is VmHWM from /proc/self/status in bytes (0 when unavailable).
func peakRSS() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}
