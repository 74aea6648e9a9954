package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// RunOptions configure one execution of a prepared job.
type RunOptions struct {
	Prepared *Prepared
	// Run names the run; JobHash identifies the job and its images for
	// --resume.
	Run    results.RunInfo
	OutDir string
	DB     *results.DB
	Resume bool
	Locker Locker
	Log    *slog.Logger
	Out    io.Writer // the final table
	// Watch, when set, makes a watcher that receives every event of the
	// run as well (a live status); done counts each board's cycles
	// already recorded by a run being resumed. It is closed once the
	// cycles are over, before the final table.
	Watch   func(done map[string]int) Watcher
	Tx      coap.Transmission
	Console bool // open the boards' consoles
	// PowerTimeout bounds each power switch call; 0 is
	// bench.DefaultPowerTimeout.
	PowerTimeout time.Duration
	// Witnesses are the boards' own cut records when the caller has them
	// (simulated boards in this process), by board name.
	Witnesses map[string]power.CutWitness
	// Sinks receive every event of the run as well (lab mode's agent
	// forwards them to the coordinator). Emit must not block.
	Sinks []results.Sink
	// Recorded, when set, is called with each cycle once it is durable
	// in DB, in order; an error stops the run like a failed write.
	Recorded func(results.Cycle) error
}

// A Watcher sees a run's events as they happen.
type Watcher interface {
	results.Sink
	Close()
}

// Report is what a run ended with.
type Report struct {
	Run     results.RunInfo
	Summary results.Summary
	Cycles  []results.Cycle
	// Interrupted is set when ctx ended the run early.
	Interrupted bool
}

// ErrPrepare marks a failure before any board was powered: a board that
// cannot be locked or bound.
var ErrPrepare = errors.New("run not started")

// worker is one board of a run.
type worker struct {
	b     *bench.Board
	st    *bench.Strategy
	lease Lease
	done  map[int]bool // cycles recorded by a run being resumed
	chain *chainState  // the board's place in a chain job's images
}

// fanout emits every event to several sinks.
type fanout []results.Sink

func (f fanout) Emit(e results.Event) {
	for _, s := range f {
		s.Emit(e)
	}
}

// Execute runs a prepared job: every selected board, every planned cycle.
// It records as it goes, so an interruption or a crash loses nothing
// already finished, and leaves every board it touched in its safe state.
func Execute(ctx context.Context, o RunOptions) (*Report, error) {
	p := o.Prepared
	j := p.Job
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	names := p.Names()
	run := o.Run
	var prior []results.Cycle
	resuming := false
	if o.Resume && o.DB != nil {
		if ri, cs, err := o.DB.LatestUnfinished(run.JobHash); err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		} else if ri != nil {
			run, prior, resuming = *ri, cs, true
		}
	}

	// Lock every board before touching the output directory or the
	// database: a run that cannot have its boards must leave no trace (a
	// removed events.jsonl of the run holding them, a run row that never
	// finishes and that --resume would pick up).
	leases := map[string]Lease{}
	releaseLeases := func() {
		for _, l := range leases {
			l.Release()
		}
	}
	if o.Locker != nil {
		holder := Holder{Run: run.ID, Job: j.Name, Host: run.Host, PID: os.Getpid()}
		for _, n := range names {
			l, err := o.Locker.Acquire(ctx, n, holder)
			if err != nil {
				releaseLeases()
				return nil, fmt.Errorf("%w: %w", ErrPrepare, err)
			}
			leases[n] = l
		}
	}
	if resuming {
		if err := o.DB.ResumeRun(run.ID); err != nil {
			releaseLeases()
			return nil, fmt.Errorf("resume: %w", err)
		}
		o.Log.Info("resuming run", "run", run.ID, "cycles recorded", len(prior))
	}
	run.Boards = names
	run.Planned = map[string]int{}
	for _, n := range names {
		run.Planned[n] = len(p.Plan)
	}

	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		releaseLeases()
		return nil, fmt.Errorf("output directory: %w", err)
	}
	jsonlPath := filepath.Join(o.OutDir, "events.jsonl")
	if len(prior) == 0 {
		os.Remove(jsonlPath) // a new run starts a new timeline file
	}
	jl, err := results.OpenJSONL(jsonlPath)
	if err != nil {
		releaseLeases()
		return nil, err
	}
	defer jl.Close()
	sinks := fanout{jl}
	sinks = append(sinks, o.Sinks...)
	var dbEvents *results.EventSink
	if o.DB != nil {
		if len(prior) == 0 && !(o.Resume && run.ID != o.Run.ID) {
			if err := o.DB.BeginRun(run); err != nil {
				releaseLeases()
				return nil, err
			}
		}
		dbEvents = o.DB.Events(run.ID)
		defer dbEvents.Close()
		sinks = append(sinks, dbEvents)
	}
	var watcher Watcher
	if o.Watch != nil {
		done := map[string]int{}
		for _, c := range prior {
			done[c.Board]++
		}
		watcher = o.Watch(done)
		sinks = append(sinks, watcher)
	}
	clock := results.NewClock()
	hub := bench.NewHub(clock, sinks)

	// The device nonces recorded so far in a resumed run: a reuse across
	// the interruption is still a reuse.
	var priorNonces []results.NonceUse
	if resuming {
		if priorNonces, err = o.DB.Nonces(run.ID); err != nil {
			releaseLeases()
			return nil, fmt.Errorf("resume: %w", err)
		}
	}

	// Bind every board, still without powering anything.
	var workers []*worker
	release := func() {
		releaseLeases()
		for _, w := range workers {
			w.b.Close()
		}
	}
	for _, bd := range p.Boards {
		b, err := bench.Bind(ctx, bd, hub, bench.BindOptions{
			Console: (o.Console || bd.VersionOnConsole()) && bd.Console != nil, Probe: true, Inputs: true,
			Tx: o.Tx, Log: o.Log, PowerTimeout: o.PowerTimeout, Witness: o.Witnesses[bd.Name],
			Link: j.LinkFor(bd.Name),
		})
		if err != nil {
			release()
			return nil, fmt.Errorf("%w: %w", ErrPrepare, err)
		}
		st := &bench.Strategy{
			Board: b, Baseline: p.Baseline, Update: p.Update, SZX: j.SZX(),
			Profile: j.ProfileFor(bd.Name, b.Profile), OffTime: j.OffTime, RecoveryTimeout: j.RecoveryTimeout,
			Reflash: j.Reflash, Accepted: j.AcceptedFor(bd.Name), Run: run.ID,
			Sample: j.SampleFor(), BaselineVersion: p.BaselineVersion, UpdateVersion: p.UpdateVersion,
		}
		if b.Nonces != nil {
			var mine []results.NonceUse
			for _, n := range priorNonces {
				if n.Board == bd.Name {
					mine = append(mine, n)
				}
			}
			b.Nonces.Load(mine)
		}
		w := &worker{b: b, st: st, lease: leases[bd.Name], done: map[int]bool{}}
		var mine []results.Cycle
		for _, c := range prior {
			if c.Board == bd.Name {
				w.done[c.Cycle] = true
				mine = append(mine, c)
			}
		}
		if p.Chain != nil {
			w.chain = newChainState(p.Chain, mine)
		}
		workers = append(workers, w)
	}
	defer release()

	rep := &Report{Run: run}
	cycles := append([]results.Cycle(nil), prior...)
	var mu sync.Mutex
	record := func(c results.Cycle) error {
		mu.Lock()
		defer mu.Unlock()
		if o.DB != nil {
			if err := o.DB.RecordCycle(c); err != nil {
				return err
			}
		}
		if o.Recorded != nil {
			if err := o.Recorded(c); err != nil {
				return err
			}
		}
		// Only a durable cycle counts in the summary: summary.json and the
		// database agree, and --resume runs the lost one again.
		cycles = append(cycles, c)
		// A timeline that can no longer be written (a full disk) stops the
		// run: cycles without their events cannot be explained.
		return jl.Err()
	}
	r := &runner{o: o, run: run, hub: hub, record: record}

	// On interruption (Ctrl-C, SIGTERM) boards go to their safe state at
	// once, not after the workers notice.
	finished := make(chan struct{})
	safeDone := make(chan struct{})
	go func() {
		defer close(safeDone)
		select {
		case <-ctx.Done():
			for _, w := range workers {
				if err := w.b.Safe(); err != nil {
					o.Log.Error("safe state", "board", w.b.Name, "err", err)
				}
			}
		case <-finished:
		}
	}()
	// A result that cannot be recorded stops every board (runCtx), not
	// only the one that met it.
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	r.stop = stopRun
	var wg sync.WaitGroup
	errs := make([]error, len(workers))
	for i, w := range workers {
		if j.Parallel {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = r.board(runCtx, w) }()
		} else {
			errs[i] = r.board(runCtx, w)
		}
	}
	wg.Wait()
	close(finished)
	<-safeDone
	if watcher != nil {
		watcher.Close()
	}
	// Safe state for every board the run touched (done above already when
	// the run was interrupted).
	for _, w := range workers {
		if ctx.Err() != nil {
			break
		}
		if err := w.b.Safe(); err != nil {
			o.Log.Error("safe state", "board", w.b.Name, "err", err)
		}
	}
	rep.Interrupted = ctx.Err() != nil
	// Stopped because results could not be recorded: the run stays
	// unfinished in the database so --resume can complete it once the
	// disk has room again.
	stopped := !rep.Interrupted && runCtx.Err() != nil
	jlErr := jl.Close()
	if dbEvents != nil {
		dbEvents.Close()
	}
	rep.Cycles = cycles
	rep.Summary = results.Summarize(run, cycles)
	var outErr error
	if o.DB != nil && !rep.Interrupted && !stopped {
		outErr = o.DB.FinishRun(run.ID, string(rep.Summary.Verdict), rep.Summary)
	}
	if jlErr != nil && !stopped {
		outErr = errors.Join(outErr, jlErr)
	}
	outErr = errors.Join(outErr,
		results.WriteSummaryJSON(filepath.Join(o.OutDir, "summary.json"), rep.Summary),
		results.WriteJUnit(filepath.Join(o.OutDir, "junit.xml"), rep.Summary, cycles))
	if !rep.Interrupted {
		results.WriteTable(o.Out, rep.Summary)
	}
	for _, e := range errs {
		if e != nil && !errors.Is(e, context.Canceled) {
			outErr = errors.Join(outErr, e)
		}
	}
	return rep, outErr
}

type runner struct {
	stop   context.CancelCauseFunc // stops every board
	o      RunOptions
	run    results.RunInfo
	hub    *bench.Hub
	record func(results.Cycle) error
}

// board runs every planned cycle on one board.
//
// A bench fault that leaves the board in a state the bench cannot vouch
// for — its power switch failed or stopped answering, or the baseline
// could not be restored — takes the board out of the run: the faulty
// cycle is recorded as it ended, the board is put in its safe state at
// once, and each of its remaining cycles is recorded as an infra-error
// that names the fault, so every planned cycle has an outcome and no
// outcome is blamed on the device. The other boards go on.
func (r *runner) board(ctx context.Context, w *worker) error {
	j := r.o.Prepared.Job
	plan := r.o.Prepared.Plan
	var out error // why the board was taken out of the run
	outAt := 0
	for i, spec := range plan {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := i + 1
		if w.done[n] {
			continue
		}
		w.b.SetCycle(n)
		e := w.b.Event(results.CycleStart)
		e.Text, e.Block = spec.Desc, spec.Block()
		e.Attrs = map[string]string{"planned": strconv.Itoa(len(plan))}
		r.hub.Emit(e)
		var c results.Cycle
		if out != nil {
			c = r.skipped(w, spec, n, outAt, out)
		} else {
			var fault error
			w.st.Brownout = spec.Brownout
			c, fault = r.attempt(ctx, w, n, spec)
			if fault == nil && ctx.Err() == nil && c.Outcome == results.MissedCut && j.MissedCut == MissedRetry {
				// The bench missed its own plan: the cycle tested nothing
				// it names. Once more, and what that attempt gives counts.
				note := w.b.Event(results.Note)
				note.Text = "missed cut, running the cycle again: " + c.Missed
				r.hub.Emit(note)
				r.o.Log.Warn("missed cut, running the cycle again", "board", w.b.Name, "cycle", n, "plan", spec.Desc, "why", c.Missed)
				first := c
				c, fault = r.attempt(ctx, w, n, spec)
				c.Attempts = 2
				addCost(&c, first)
			}
			if ctx.Err() != nil {
				// Interrupted mid-cycle: the cycle is not recorded; --resume
				// runs it again.
				return ctx.Err()
			}
			if fault != nil {
				out, outAt = fault, n
				r.takeOut(w, n, fault)
			}
		}
		if err := r.record(c); err != nil {
			err = fmt.Errorf("board %s cycle %d: record: %w", w.b.Name, n, err)
			r.stop(err)
			return err
		}
		// The outcome goes on the timeline once the cycle is durable, so
		// events.jsonl never shows an outcome the database lost (an
		// interrupted cycle is not recorded and runs again on --resume).
		e = w.b.Event(results.CycleOutcome)
		e.Text = string(c.Outcome)
		e.Attrs = map[string]string{}
		if c.Reason != "" {
			e.Attrs["reason"] = c.Reason
		}
		if c.Reflashed {
			e.Attrs["reflashed"] = "true"
		}
		if !c.Accepted {
			e.Attrs["accepted"] = "false"
		}
		r.hub.Emit(e)
	}
	return nil
}

// attempt runs cycle n once; on a chain job, from the image the device
// is believed to run to the chain's next link.
func (r *runner) attempt(ctx context.Context, w *worker, n int, spec CycleSpec) (results.Cycle, error) {
	if w.chain == nil {
		return w.st.Cycle(ctx, n, spec.Cut)
	}
	if err := w.chain.step(w.st); err != nil {
		c := r.skipped(w, spec, n, n, err)
		c.Reason = "baseline: " + err.Error()
		return c, err
	}
	c, fault := w.st.Cycle(ctx, n, spec.Cut)
	w.chain.after(w.st)
	return c, fault
}

// addCost adds what an earlier attempt of the same cycle cost the probe
// and the flash to c.
func addCost(c *results.Cycle, first results.Cycle) {
	c.ProbeUses += first.ProbeUses
	c.ProbeTime += first.ProbeTime
	if first.Erases != nil {
		n := *first.Erases
		if c.Erases != nil {
			n += *c.Erases
		}
		c.Erases = &n
	}
}

// takeOut puts a board the run can no longer use in its safe state and
// says so on the timeline.
func (r *runner) takeOut(w *worker, n int, why error) {
	e := w.b.Event(results.Note)
	e.Text = fmt.Sprintf("board out of the run after cycle %d: %v", n, why)
	r.hub.Emit(e)
	r.o.Log.Error("board out of the run", "board", w.b.Name, "cycle", n, "err", why)
	if err := w.b.Safe(); err != nil {
		r.o.Log.Error("safe state", "board", w.b.Name, "err", err)
	}
}

// skipped is the record of a cycle not run because its board was taken
// out of the run at cycle outAt.
func (r *runner) skipped(w *worker, spec CycleSpec, n, outAt int, why error) results.Cycle {
	p := r.o.Prepared
	now := r.hub.Clock().Since()
	return results.Cycle{
		Run: r.run.ID, Board: w.b.Name, Cycle: n, Plan: spec.Desc, PlannedBlock: spec.Block(),
		Blocks: int(p.Job.Blocks(len(p.Update))), BlockSize: p.Job.BlockSize, ImageSize: len(p.Update),
		Outcome: results.InfraError, Reason: fmt.Sprintf("not run: board %s out of the run since cycle %d: %v", w.b.Name, outAt, why),
		Start: now, End: now,
	}
}
