package report

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fudbench/fudbench/results"
)

// ErrInput marks an input the report cannot be drawn from: a missing
// file, a file that is not a results database, an unknown run. Callers
// tell it from a failure to write with errors.Is.
var ErrInput = errors.New("bad report input")

// inputErr wraps err (which names the file) so it matches ErrInput.
func inputErr(format string, a ...any) error {
	return &inputError{fmt.Errorf(format, a...)}
}

type inputError struct{ err error }

func (e *inputError) Error() string        { return e.err.Error() }
func (e *inputError) Unwrap() error        { return e.err }
func (e *inputError) Is(target error) bool { return target == ErrInput }

// Output directory files (see docs/report.md).
const (
	DBFile      = "results.db"
	SummaryFile = "summary.json"
	EventsFile  = "events.jsonl"
)

var sqliteMagic = []byte("SQLite format 3\x00")

// Load reads a report's input from path: a results database, or a run's
// output directory. From a database the run is runID, or the newest run
// when runID is empty. From a directory holding results.db the run is
// runID, else the one its summary.json names; a directory without
// results.db is read from summary.json and events.jsonl alone (no
// trend). Errors for a bad input match ErrInput.
func Load(path, runID string) (*Input, error) { return load(path, runID, true) }

// load is Load; history says whether to read the other runs of the job
// for the trend.
func load(path, runID string, history bool) (*Input, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, inputErr("report input %s: %w", path, err)
	}
	if !fi.IsDir() {
		return loadDBFile(path, runID, history)
	}
	dbPath := filepath.Join(path, DBFile)
	sumPath := filepath.Join(path, SummaryFile)
	if _, err := os.Stat(dbPath); err == nil {
		if runID == "" {
			if s, err := readSummary(sumPath); err == nil {
				runID = s.RunID
			}
		}
		in, err := loadDBFile(dbPath, runID, history)
		if err != nil {
			return nil, err
		}
		in.Source = path
		return in, nil
	}
	if _, err := os.Stat(sumPath); err != nil {
		return nil, inputErr("report input %s: a directory with neither %s nor %s", path, DBFile, SummaryFile)
	}
	return loadFiles(path, runID)
}

// loadDBFile checks that path is an SQLite file before opening it, so a
// wrong file is reported as such and never turned into a database.
func loadDBFile(path, runID string, history bool) (*Input, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, inputErr("report input %s: %w", path, err)
	}
	head := make([]byte, len(sqliteMagic))
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil || !bytes.Equal(head, sqliteMagic) {
		return nil, inputErr("report input %s: not a results database (want an SQLite file, or a run's output directory)", path)
	}
	db, err := results.OpenDB(path)
	if err != nil {
		return nil, inputErr("report input %s: %w", path, err)
	}
	defer db.Close()
	return fromDB(db, runID, history)
}

// FromDB reads run runID (the newest when empty) from an open database,
// with every run of the same job for the trend.
func FromDB(db *results.DB, runID string) (*Input, error) { return fromDB(db, runID, true) }

func fromDB(db *results.DB, runID string, history bool) (*Input, error) {
	runs, err := db.Runs()
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	if len(runs) == 0 {
		return nil, inputErr("report input %s: the database holds no run", db.Path())
	}
	var run results.RunRecord
	if runID == "" {
		run = runs[len(runs)-1]
	} else {
		i := slices.IndexFunc(runs, func(r results.RunRecord) bool { return r.ID == runID })
		if i < 0 {
			return nil, inputErr("report input %s: no run %q (the newest is %s)", db.Path(), runID, runs[len(runs)-1].ID)
		}
		run = runs[i]
	}
	cycles, err := db.Cycles(run.ID)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	events, err := db.ReadEvents(run.ID)
	if err != nil {
		return nil, fmt.Errorf("report: %w", err)
	}
	in := &Input{Run: run, Cycles: cycles, Events: events, Source: db.Path()}
	in.Summary = summaryOf(db, run, cycles)
	for _, r := range runs {
		if r.Job != run.Job || !history && r.ID != run.ID {
			continue
		}
		s := in.Summary
		if r.ID != run.ID {
			cs, err := db.Cycles(r.ID)
			if err != nil {
				return nil, fmt.Errorf("report: %w", err)
			}
			s = summaryOf(db, r, cs)
		}
		if s.Cycles > 0 {
			in.History = append(in.History, NewRunStat(s))
		}
	}
	return in, nil
}

// summaryOf returns a run's stored summary, or derives it from its
// cycles when it has none (a run killed before it finished).
func summaryOf(db *results.DB, r results.RunRecord, cs []results.Cycle) results.Summary {
	if s, ok, err := db.Summary(r.ID); err == nil && ok {
		return s
	}
	return results.Summarize(r.RunInfo, cs)
}

// MaxSummaryFile bounds the summary.json a report reads: the bench writes
// about 300 bytes a cycle, so 64 MiB holds 200,000 cycles. A larger
// file is refused before it is read; a file that grows while it is read,
// or a device such as /dev/zero, is refused once it passes the bound.
const MaxSummaryFile = 64 << 20

// maxSummaryFile is MaxSummaryFile, lowered by tests.
var maxSummaryFile int64 = MaxSummaryFile

func readSummary(path string) (results.Summary, error) {
	var s results.Summary
	f, err := os.Open(path)
	if err != nil {
		return s, inputErr("report input %s: %w", path, err)
	}
	defer f.Close()
	var size int64
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	if size > maxSummaryFile {
		return s, inputErr("report input %s: %d bytes, more than the %d a run summary may have", path, size, maxSummaryFile)
	}
	// Room for the size the file claims, and a read more to see its end.
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, maxSummaryFile+1)); err != nil {
		return s, inputErr("report input %s: %w", path, err)
	}
	b := buf.Bytes()
	if int64(len(b)) > maxSummaryFile {
		return s, inputErr("report input %s: more than the %d bytes a run summary may have", path, maxSummaryFile)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, inputErr("report input %s: not a run summary: %w", path, err)
	}
	if s.RunID == "" {
		return s, inputErr("report input %s: not a run summary: no run_id", path)
	}
	return s, nil
}

// loadFiles reads a run from its output directory without a database.
func loadFiles(dir, runID string) (*Input, error) {
	sumPath := filepath.Join(dir, SummaryFile)
	s, err := readSummary(sumPath)
	if err != nil {
		return nil, err
	}
	if runID != "" && runID != s.RunID {
		return nil, inputErr("report input %s: no run %q (it holds run %s)", sumPath, runID, s.RunID)
	}
	var events []results.Event
	evPath := filepath.Join(dir, EventsFile)
	if f, err := os.Open(evPath); err == nil {
		events, err = results.ReadJSONL(f)
		f.Close()
		if err != nil && len(events) == 0 {
			return nil, inputErr("report input %s: %w", evPath, err)
		}
		// A run killed mid-write leaves a torn last line: the events
		// before it still make a report.
	}
	in := FromFiles(s, events)
	in.Source = dir
	return in, nil
}

// FromFiles rebuilds a run's input from its summary and its event
// timeline, as written to an output directory. The summary gives each
// cycle's plan, cut and outcome; the events give block counts, transfer
// and recovery times and console lines.
func FromFiles(s results.Summary, events []results.Event) *Input {
	in := &Input{Summary: s, Events: events}
	in.Run = results.RunRecord{
		RunInfo: results.RunInfo{ID: s.RunID, Job: s.Job, JobFile: s.JobFile, JobHash: s.JobHash,
			Started: s.Started, Boards: s.Boards, Host: s.Host, Version: s.Version},
		Status: string(s.Verdict),
	}
	for _, e := range events {
		if e.Wall.After(in.Run.Finished) {
			in.Run.Finished = e.Wall
		}
	}
	reasons := map[cycleKey]results.Failure{}
	for _, f := range s.Failures {
		reasons[cycleKey{f.Board, f.Cycle}] = f
	}
	tl := indexEvents(events)
	for _, cp := range s.Cuts {
		k := cycleKey{cp.Board, cp.Cycle}
		c := results.Cycle{Run: s.RunID, Board: cp.Board, Cycle: cp.Cycle, Plan: cp.Plan, PlannedBlock: cp.PlannedBlock,
			Outcome: cp.Outcome, Accepted: cp.Accepted, Missed: cp.Missed, Attempts: cp.Attempts}
		if f, ok := reasons[k]; ok {
			c.Reason, c.Reflashed = f.Reason, f.Reflashed
			c.Missed = cmp.Or(c.Missed, f.Missed)
		}
		if cp.Fired {
			c.Cut = &results.CutInfo{Trigger: cp.Trigger, T: fromMs(cp.TMs), Latency: fromMs(cp.LatencyMs),
				LastAcked: cp.LastAcked, InFlight: cp.InFlight, Device: cp.Device}
		}
		fillFromEvents(&c, tl[k])
		in.Cycles = append(in.Cycles, c)
	}
	return in
}

func fromMs(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// fillFromEvents derives a cycle's figures from its timeline the way
// the executor does: blocks sent and re-sent, transfer time, recovery
// milestones, the last console lines.
func fillFromEvents(c *results.Cycle, evs []results.Event) {
	if len(evs) == 0 {
		return
	}
	c.Start, c.End = evs[0].T, evs[len(evs)-1].T
	seen := map[int64]bool{}
	var start, end time.Duration = -1, -1
	var console []string
	for _, e := range evs {
		switch e.Kind {
		case results.BlockSent:
			c.BlocksSent++
			if seen[e.Block] {
				c.BlocksResent++
			}
			seen[e.Block] = true
			c.Blocks = max(c.Blocks, int(e.Block)+1)
		case results.UpdateStart:
			if start < 0 {
				start = e.T
			}
		case results.UpdateDone, results.UpdateError, results.CutTrigger:
			end = e.T
		case results.Recovery:
			switch e.Text {
			case "coap-reachable":
				if c.RecoveryAnswer == 0 {
					c.RecoveryAnswer = e.Dur
				}
			case "new-version-running":
				if c.RecoveryVersion == 0 {
					c.RecoveryVersion = e.Dur
				}
			}
		case results.ConsoleLine:
			console = append(console, e.Text)
		case results.Note:
			if n, ok := blockSizeNote(e.Text); ok {
				c.BlockSize = n
			}
		}
	}
	if start >= 0 && end > start {
		c.Transfer = end - start
	}
	if len(console) > 20 {
		console = console[len(console)-20:]
	}
	c.LastConsole = console
}

// blockSizeNote reads "device asked for N-byte blocks".
func blockSizeNote(s string) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(s, "device asked for %d-byte blocks", &n); err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
