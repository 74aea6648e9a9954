package results

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func openTestDB(t testing.TB) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sub", "results.db")
	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

func TestDBRoundTrip(t *testing.T) {
	d, path := openTestDB(t)
	run := testRun("r1")
	if err := d.BeginRun(run); err != nil {
		t.Fatal(err)
	}
	if err := d.BeginRun(run); err == nil {
		t.Fatal("BeginRun with a used ID succeeded")
	}
	want := testCycles(run.ID)
	for _, c := range want {
		if err := d.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	sum := Summarize(run, want)
	if err := d.FinishRun(run.ID, string(sum.Verdict), sum); err != nil {
		t.Fatal(err)
	}
	if err := d.FinishRun("nope", "pass", sum); !errors.Is(err, ErrNoRun) {
		t.Fatalf("FinishRun of an unknown run: %v, want ErrNoRun", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Everything must read back from a fresh open.
	d2, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if v, err := d2.SchemaVersion(); err != nil || v != schemaVersion {
		t.Fatalf("schema version %d, %v; want %d", v, err, schemaVersion)
	}
	if err := d2.IntegrityCheck(); err != nil {
		t.Fatal(err)
	}
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "synchronous": "2", "busy_timeout": "10000"} {
		var got string
		if err := d2.db.QueryRow("PRAGMA " + pragma).Scan(&got); err != nil || got != want {
			t.Errorf("PRAGMA %s = %q (%v), want %q", pragma, got, err, want)
		}
	}
	got, err := d2.Cycles(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]Cycle{}
	for _, c := range want {
		byKey[fmt.Sprint(c.Board, c.Cycle)] = c
	}
	if len(got) != len(want) {
		t.Fatalf("%d cycles read back, want %d", len(got), len(want))
	}
	for i, c := range got {
		if i > 0 && (got[i-1].Board > c.Board || got[i-1].Board == c.Board && got[i-1].Cycle >= c.Cycle) {
			t.Errorf("cycles not ordered by board, cycle at %d", i)
		}
		if w := byKey[fmt.Sprint(c.Board, c.Cycle)]; !reflect.DeepEqual(c, w) {
			t.Errorf("cycle %s/%d:\n got %+v\nwant %+v", c.Board, c.Cycle, c, w)
		}
	}
	runs, err := d2.Runs()
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 1 || runs[0].Status != string(VerdictFail) || runs[0].Finished.IsZero() {
		t.Fatalf("runs = %+v", runs)
	}
	if !runs[0].Started.Equal(run.Started) {
		t.Errorf("started %v, want %v", runs[0].Started, run.Started)
	}
	runs[0].Started = run.Started
	if !reflect.DeepEqual(runs[0].RunInfo, run) {
		t.Errorf("run info:\n got %+v\nwant %+v", runs[0].RunInfo, run)
	}
	s, ok, err := d2.Summary(run.ID)
	if err != nil || !ok {
		t.Fatalf("summary: %v, %v", ok, err)
	}
	if s.Verdict != sum.Verdict || s.Cycles != sum.Cycles || s.Outcomes[Bricked] != 1 {
		t.Errorf("stored summary %+v", s)
	}
	if _, err := d2.Run("nope"); !errors.Is(err, ErrNoRun) {
		t.Errorf("Run(nope): %v, want ErrNoRun", err)
	}
}

func TestRecordCycleRules(t *testing.T) {
	d, _ := openTestDB(t)
	run := testRun("r1")
	if err := d.BeginRun(run); err != nil {
		t.Fatal(err)
	}
	c := testCycles(run.ID)[7] // a missed cut with the device's record
	if c.Outcome != MissedCut || c.Cut.Device == nil {
		t.Fatalf("fixture changed: %+v", c)
	}
	if err := d.RecordCycle(c); err != nil {
		t.Fatal(err)
	}
	// The same cycle again replaces it, down to the fields it no longer
	// has.
	c.Outcome, c.Reason, c.Cut, c.Missed, c.Attempts = Bricked, "again", nil, "", 0
	if err := d.RecordCycle(c); err != nil {
		t.Fatal(err)
	}
	got, err := d.Cycles(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Outcome != Bricked || got[0].Reason != "again" || got[0].Cut != nil ||
		got[0].Missed != "" || got[0].Attempts != 0 {
		t.Fatalf("after re-record: %+v", got)
	}
	// A cycle of an unknown run is refused by the foreign key.
	c.Run = "ghost"
	err = d.RecordCycle(c)
	if err == nil || !strings.Contains(err.Error(), d.Path()) {
		t.Fatalf("cycle of an unknown run: %v, want an error naming %s", err, d.Path())
	}
}

func TestLatestUnfinished(t *testing.T) {
	d, _ := openTestDB(t)
	t0 := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	runs := []struct {
		id, hash string
		at       time.Duration
		status   string // "" leaves it unfinished
	}{
		{"a-old-unfinished", "A", 0, ""},
		{"a-newer-unfinished", "A", time.Hour, ""},
		{"a-newest-finished", "A", 2 * time.Hour, "pass"},
		{"b-interrupted", "B", time.Hour, RunInterrupted},
		{"b-finished", "B", 2 * time.Hour, "fail"},
		{"c-finished", "C", 0, "pass"},
	}
	for _, r := range runs {
		ri := testRun(r.id)
		ri.JobHash, ri.Started = r.hash, t0.Add(r.at)
		if err := d.BeginRun(ri); err != nil {
			t.Fatal(err)
		}
		c := testCycles(r.id)[0]
		if err := d.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
		if r.status != "" {
			if err := d.FinishRun(r.id, r.status, Summary{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A resumed interrupted run is running again; a second interruption
	// keeps it findable.
	if err := d.ResumeRun("b-interrupted"); err != nil {
		t.Fatal(err)
	}
	if r, err := d.Run("b-interrupted"); err != nil || r.Status != RunRunning || !r.Finished.IsZero() {
		t.Fatalf("resumed run: %+v, %v", r, err)
	}
	if err := d.ResumeRun("nope"); !errors.Is(err, ErrNoRun) {
		t.Fatalf("ResumeRun(nope): %v", err)
	}
	tests := []struct {
		hash, want string
	}{
		{"A", "a-newer-unfinished"},
		{"B", "b-interrupted"},
		{"C", ""},
		{"unknown", ""},
	}
	for _, tt := range tests {
		t.Run(tt.hash, func(t *testing.T) {
			ri, cs, err := d.LatestUnfinished(tt.hash)
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == "" {
				if ri != nil || cs != nil {
					t.Fatalf("got %+v, %d cycles; want none", ri, len(cs))
				}
				return
			}
			if ri == nil || ri.ID != tt.want {
				t.Fatalf("got %+v, want run %s", ri, tt.want)
			}
			if len(cs) != 1 || cs[0].Run != tt.want {
				t.Fatalf("cycles %+v", cs)
			}
		})
	}
}

func TestDBConcurrentEventsAndCycles(t *testing.T) {
	d, path := openTestDB(t)
	run := testRun("r1")
	if err := d.BeginRun(run); err != nil {
		t.Fatal(err)
	}
	sink := d.Events(run.ID)
	const emitters, each, recorders, cycles = 4, 1000, 2, 40
	clock := NewClock()
	var wg sync.WaitGroup
	for w := range emitters {
		wg.Go(func() {
			for i := range each {
				e := clock.Stamp(fmt.Sprint("board", w), i/100, BlockSent)
				e.Block = int64(i)
				if i%10 == 0 {
					e.Attrs = map[string]string{"i": fmt.Sprint(i)}
				}
				sink.Emit(e)
			}
		})
	}
	errs := make(chan error, recorders*cycles)
	for r := range recorders {
		wg.Go(func() {
			for i := range cycles {
				c := testCycles(run.ID)[0]
				c.Board, c.Cycle = fmt.Sprint("rec", r), i
				errs <- d.RecordCycle(c)
			}
		})
	}
	// A second handle on the same file, as a second process would be,
	// reads while the writers write.
	other, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	wg.Go(func() {
		for range 20 {
			if _, err := other.Cycles(run.ID); err != nil {
				errs <- err
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if n := sink.Dropped(); n != 0 {
		t.Errorf("%d events dropped", n)
	}
	n, err := other.CountEvents(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if n != emitters*each {
		t.Errorf("%d events stored, want %d", n, emitters*each)
	}
	cs, err := other.Cycles(run.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != recorders*cycles {
		t.Errorf("%d cycles stored, want %d", len(cs), recorders*cycles)
	}
	if err := other.IntegrityCheck(); err != nil {
		t.Fatal(err)
	}
}

func TestEventSinkFlushesOnItsOwn(t *testing.T) {
	d, _ := openTestDB(t)
	if err := d.BeginRun(testRun("r1")); err != nil {
		t.Fatal(err)
	}
	sink := d.Events("r1")
	defer sink.Close()
	want := []Event{
		{T: time.Millisecond, Wall: time.Date(2026, 11, 25, 10, 0, 0, 5, time.UTC), Board: "b", Cycle: 2,
			Kind: ConsoleLine, Block: -1, Text: "app 1.0.0 up", Attrs: map[string]string{"port": "/dev/pts/1"}},
		{T: 2 * time.Millisecond, Board: "b", Cycle: 2, Kind: BlockAcked, Block: 7, Dur: 300 * time.Microsecond},
	}
	for _, e := range want {
		sink.Emit(e)
	}
	// No Flush: the interval alone must store them.
	deadline := time.Now().Add(10 * EventFlushInterval)
	for {
		n, err := d.CountEvents("r1")
		if err != nil {
			t.Fatal(err)
		}
		if n == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events stored after %v, want %d", n, 10*EventFlushInterval, len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
	got, err := d.ReadEvents("r1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if !got[i].Wall.Equal(want[i].Wall) {
			t.Errorf("event %d wall %v, want %v", i, got[i].Wall, want[i].Wall)
		}
		got[i].Wall = want[i].Wall
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", got, want)
	}
	// Flush after Close returns the sink's error state, not a hang.
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sink.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestEventSinkUnknownRun(t *testing.T) {
	d, _ := openTestDB(t)
	sink := d.Events("ghost")
	sink.Emit(Event{Kind: Note, Block: -1})
	err := sink.Flush()
	if err == nil || !strings.Contains(err.Error(), d.Path()) {
		t.Fatalf("Flush: %v, want a foreign key error naming the db", err)
	}
	if sink.Dropped() != 1 {
		t.Errorf("Dropped() = %d, want 1", sink.Dropped())
	}
	if err := sink.Close(); err == nil {
		t.Error("Close forgot the write error")
	}
}

func TestEventSinkOverflowDrops(t *testing.T) {
	d, _ := openTestDB(t)
	if err := d.BeginRun(testRun("r1")); err != nil {
		t.Fatal(err)
	}
	sink := d.Events("r1")
	defer sink.Close()
	sink.mu.Lock()
	sink.maxPending = 10
	sink.mu.Unlock()
	// Far faster than the writer's 100 ms tick: most of these overflow.
	const emitted = 50
	for range emitted {
		sink.Emit(Event{Kind: Note, Block: -1})
	}
	err := sink.Flush()
	if err == nil || !strings.Contains(err.Error(), "dropping") {
		t.Fatalf("Flush after an overflow: %v", err)
	}
	n, err := d.CountEvents("r1")
	if err != nil {
		t.Fatal(err)
	}
	if sink.Dropped() == 0 || n+sink.Dropped() != emitted {
		t.Errorf("stored %d + dropped %d, want a sum of %d with some dropped", n, sink.Dropped(), emitted)
	}
}

// TestDBMigratesSchema1 opens a database written by fudbench before
// missed cuts (testdata/schema1.db: schema 1, made by the results
// package of commit 96edfa1, one unfinished run with one cycle and one
// event), as --resume would: the old rows read back unchanged, and a
// missed cut is stored and read back in full.
func TestDBMigratesSchema1(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "schema1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "results.db")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := raw.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != 1 {
		t.Fatalf("fixture schema version %d (%v), want 1", v, err)
	}
	raw.Close()

	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if v, err := d.SchemaVersion(); err != nil || v != schemaVersion || schemaVersion != 6 {
		t.Fatalf("schema version %d (%v) after the upgrade, want %d = 6", v, err, schemaVersion)
	}
	if err := d.IntegrityCheck(); err != nil {
		t.Fatal(err)
	}
	info, cs, err := d.LatestUnfinished("hash-old")
	if err != nil {
		t.Fatal(err)
	}
	if info == nil || info.ID != "old-run" || len(cs) != 1 {
		t.Fatalf("unfinished run %+v with %d cycles, want old-run with 1", info, len(cs))
	}
	oldCycle := cs[0]
	if c := oldCycle; c.Outcome != Updated || c.Plan != "after_block 17" || c.Cut == nil || c.Cut.LastAcked != 17 ||
		c.Cut.Device != nil || c.Missed != "" || c.Attempts != 0 || c.BlocksSent != 65 || !reflect.DeepEqual(c.Resumes, []uint32{18}) ||
		c.ProbeUses != 0 || c.ProbeTime != 0 || c.Erases != nil {
		t.Fatalf("old cycle after the upgrade: %+v (cut %+v)", c, c.Cut)
	}
	if n, err := d.CountEvents("old-run"); err != nil || n != 1 {
		t.Fatalf("old events: %d, %v", n, err)
	}

	// The resumed run records a cut that fired late and one that never
	// fired.
	if err := d.ResumeRun("old-run"); err != nil {
		t.Fatal(err)
	}
	late := Cycle{Run: "old-run", Board: "sim-safe", Cycle: 2, Plan: "after_block 30", PlannedBlock: 30,
		Cut: &CutInfo{Trigger: "after_block 30", T: 9 * time.Second, Latency: 45 * time.Microsecond, LastAcked: 33, InFlight: 34,
			Device: &DeviceCut{Writing: 34, LastAcked: 33, Flash: "program"}},
		Outcome: MissedCut, Missed: "fired after block 33, planned after block 30", Attempts: 2,
		Blocks: 64, BlockSize: 1024, BlocksSent: 35, Start: 5 * time.Second, End: 10 * time.Second,
		Energy:    &Energy{Joules: 0.125, Recovery: 0.0125, PeakAmps: 0.021, Samples: 90, Every: 50 * time.Millisecond},
		ProbeUses: 1, ProbeTime: 1500 * time.Millisecond, Erases: ptr(70)}
	never := Cycle{Run: "old-run", Board: "sim-safe", Cycle: 3, Plan: "console /never/", PlannedBlock: -1,
		Outcome: MissedCut, Missed: "the trigger never fired", Attempts: 1, Blocks: 64, BlocksSent: 64}
	for _, c := range []Cycle{late, never} {
		if err := d.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// A second open of the upgraded file migrates nothing more.
	d2, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	_, cs, err = d2.LatestUnfinished("hash-old")
	if err != nil {
		t.Fatal(err)
	}
	want := []Cycle{oldCycle, late, never}
	if !reflect.DeepEqual(cs, want) {
		t.Errorf("cycles after the upgrade:\n got %+v\nwant %+v", cs, want)
	}
	if cs[1].Cut == nil || cs[1].Cut.Device == nil || *cs[1].Cut.Device != *late.Cut.Device {
		t.Errorf("device record read back as %+v", cs[1].Cut)
	}
	s := Summarize(*infoOf(t, d2, "old-run"), cs)
	if s.MissedCuts != 2 || s.Verdict != VerdictInfraError || len(s.Failures) != 2 {
		t.Errorf("summary of the resumed run: missed %d verdict %s failures %d", s.MissedCuts, s.Verdict, len(s.Failures))
	}
}

func infoOf(t *testing.T, d *DB, id string) *RunInfo {
	t.Helper()
	r, err := d.Run(id)
	if err != nil {
		t.Fatal(err)
	}
	return &r.RunInfo
}

func TestOpenDBRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if _, err := OpenDB(path); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("OpenDB of a newer schema: %v", err)
	}
}

func TestOpenDBBadPaths(t *testing.T) {
	for _, p := range []string{"", "a?b.db", filepath.Join(t.TempDir(), "x#.db")} {
		if d, err := OpenDB(p); err == nil {
			d.Close()
			t.Errorf("OpenDB(%q) succeeded", p)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestDBMigratesSchema5 opens a database of the schema before probe and
// erase accounting (made here by the migrations up to 5, with a run and
// a cycle written by that schema's columns): the old cycle reads back
// with no probe use and its erases not counted, and a new cycle keeps
// its probe uses, probe time and erases — a counted zero too.
func TestDBMigratesSchema5(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.db")
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations[:5] {
		if _, err := raw.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	for _, q := range []string{
		`PRAGMA user_version = 5`,
		`INSERT INTO runs (id, job, job_file, job_hash, started, boards, host, version, planned, status)
			VALUES ('r5', 'soak', 'soak.yaml', 'hash5', 1, '["b"]', 'h', 'v', '{"b":3}', 'running')`,
		`INSERT INTO cycles (run, board, cycle, plan, planned_block, outcome, reflashed, accepted, reason,
			blocks, block_size, image_size, blocks_sent, blocks_resent, resumes, transfer, recovery_answer,
			recovery_version, start_t, end_t, last_console, missed, attempts, energy)
			VALUES ('r5', 'b', 1, 'none', -1, 'updated', 0, 1, '', 16, 256, 4096, 16, 0, '[]', 5, 0, 0, 1, 2, '[]', '', 1, NULL)`,
	} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	raw.Close()

	d, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if v, err := d.SchemaVersion(); err != nil || v != 6 {
		t.Fatalf("schema version %d (%v), want 6", v, err)
	}
	if err := d.IntegrityCheck(); err != nil {
		t.Fatal(err)
	}
	counted := Cycle{Run: "r5", Board: "b", Cycle: 2, Plan: "after_block 3", PlannedBlock: 3, Outcome: Bricked, Reflashed: true,
		Accepted: true, Blocks: 16, BlockSize: 256, ImageSize: 4096, Attempts: 1,
		ProbeUses: 1, ProbeTime: 2300 * time.Millisecond, Erases: ptr(21)}
	zero := Cycle{Run: "r5", Board: "b", Cycle: 3, Plan: "after_block 4", PlannedBlock: 4, Outcome: Updated,
		Accepted: true, Blocks: 16, BlockSize: 256, ImageSize: 4096, Attempts: 1, Erases: ptr(0)}
	for _, c := range []Cycle{counted, zero} {
		if err := d.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	_, cs, err := d.LatestUnfinished("hash5")
	if err != nil || len(cs) != 3 {
		t.Fatalf("%d cycles, %v; want 3", len(cs), err)
	}
	if c := cs[0]; c.ProbeUses != 0 || c.ProbeTime != 0 || c.Erases != nil || c.Transfer != 5 {
		t.Errorf("old cycle: probe %d %v erases %v", c.ProbeUses, c.ProbeTime, c.Erases)
	}
	if !reflect.DeepEqual(cs[1:], []Cycle{counted, zero}) {
		t.Errorf("new cycles:\n got %+v\nwant %+v", cs[1:], []Cycle{counted, zero})
	}
	s := Summarize(RunInfo{ID: "r5", Boards: []string{"b"}, Planned: map[string]int{"b": 3}}, cs)
	f := s.PerBoard[0].Flash
	if f.ProbeUses != 1 || f.ProbeMs != 2300 || f.ErasesCycles != 2 || f.Erases != 21 || f.ErasesPerCycle != 10.5 {
		t.Errorf("board flash summary %+v", f)
	}
}
