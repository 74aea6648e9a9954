package jobs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
	"periph.io/x/conn/v3/gpio/gpioreg"
)

// RunOptions configure one execution of a job.
type RunOptions struct {
	Job       *Job
	Inventory *boards.Bench
	// Baseline and Update are the image bytes (files read or images built
	// by the caller).
	Baseline, Update []byte
	// Run names the run; JobHash identifies the job and its images for
	// --resume.
	Run     results.RunInfo
	OutDir  string
	DB      *results.DB
	Resume  bool
	Locker  Locker
	Log     *slog.Logger
	Out     io.Writer // progress and the final table
	TTY     bool
	Tx      coap.Transmission
	Console bool // open the boards' consoles
	// PowerTimeout bounds each power switch call; 0 is
	// bench.DefaultPowerTimeout.
	PowerTimeout time.Duration
}

// Report is what a run ended with.
type Report struct {
	Run     results.RunInfo
	Summary results.Summary
	Cycles  []results.Cycle
	// Interrupted is set when ctx ended the run early.
	Interrupted bool
}

// ErrPrepare marks a failure before any board was powered: bad wiring,
// a board that cannot be locked, an image too large for its slot.
var ErrPrepare = errors.New("run not started")

// worker is one board of a run.
type worker struct {
	b        *bench.Board
	bd       *boards.Board
	probe    probes.Flasher
	profile  bench.Profile
	accepted []results.Outcome
	lease    Lease
	done     map[int]bool // cycles recorded by a run being resumed
}

// fanout emits every event to several sinks.
type fanout []results.Sink

func (f fanout) Emit(e results.Event) {
	for _, s := range f {
		s.Emit(e)
	}
}

// Execute runs the job: every selected board, every planned cycle. It
// records as it goes, so an interruption or a crash loses nothing already
// finished, and leaves every board it touched in its safe state.
func Execute(ctx context.Context, o RunOptions) (*Report, error) {
	j := o.Job
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	names, plan, err := Check(j, o.Inventory, o.Baseline, o.Update)
	if err != nil {
		return nil, err
	}

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
		run.Planned[n] = len(plan)
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
	clock := results.NewClock()
	hub := bench.NewHub(clock, sinks)

	// Bind and lock every board, still without powering anything.
	var workers []*worker
	release := func() {
		releaseLeases()
		for _, w := range workers {
			if w.probe != nil {
				w.probe.Close()
			}
			w.b.Close()
		}
	}
	for _, n := range names {
		bd, _ := o.Inventory.Board(n)
		b, err := bench.Bind(ctx, bd, hub, bench.BindOptions{Console: o.Console && bd.Console != nil, Tx: o.Tx, Log: o.Log, PowerTimeout: o.PowerTimeout})
		if err != nil {
			release()
			return nil, err
		}
		w := &worker{b: b, bd: bd, profile: j.ProfileFor(n), accepted: j.AcceptedFor(n), done: map[int]bool{}}
		workers = append(workers, w)
		if bd.CoAP.Profile != "" && j.Profiles[n] == "" && j.Profile == "" {
			w.profile = bench.Profile(bd.CoAP.Profile)
		}
		if bd.Probe != nil && bd.Probe.Driver != "" && slices.Contains(probes.Drivers(), bd.Probe.Driver) {
			if w.probe, err = probes.Open(bd.Probe.Driver, bd.Probe); err != nil {
				release()
				return nil, fmt.Errorf("%w: board %s: probe: %w", boards.ErrConfig, n, err)
			}
		}
		w.lease = leases[n]
		for _, c := range prior {
			if c.Board == n {
				w.done[c.Cycle] = true
			}
		}
	}
	defer release()

	rep := &Report{Run: run}
	cycles := append([]results.Cycle(nil), prior...)
	var mu sync.Mutex
	total := len(plan) * len(workers)
	prog := results.NewProgress(o.Out, o.TTY, total)
	prog.Skip(len(prior))
	record := func(c results.Cycle) error {
		mu.Lock()
		defer mu.Unlock()
		if o.DB != nil {
			if err := o.DB.RecordCycle(c); err != nil {
				return err
			}
		}
		// Only a durable cycle counts in the summary: summary.json and the
		// database agree, and --resume runs the lost one again.
		cycles = append(cycles, c)
		// Reported once durable: a cycle shown finished survives a crash.
		prog.Cycle(c.Board, c.Cycle, c.Outcome)
		// A timeline that can no longer be written (a full disk) stops the
		// run: cycles without their events cannot be explained.
		if err := jl.Err(); err != nil {
			return err
		}
		return nil
	}
	r := &runner{o: o, run: run, plan: plan, hub: hub, record: record,
		baseDigest: sha256.Sum256(o.Baseline), updDigest: sha256.Sum256(o.Update)}

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
	prog.Done()
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
	status := string(rep.Summary.Verdict)
	var outErr error
	if o.DB != nil && !rep.Interrupted && !stopped {
		outErr = o.DB.FinishRun(run.ID, status, rep.Summary)
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

// Check validates a job against a bench and its images without touching
// anything: the boards it selects, their wiring (a power switch and a CoAP
// endpoint each), whether both images fit every board's slot, and the
// cycle plan. It returns the selected boards and the plan. Execute calls
// it first; a caller that creates outputs (a results database) calls it
// before, so a bad job leaves no trace.
func Check(j *Job, inv *boards.Bench, baseline, update []byte) ([]string, []CycleSpec, error) {
	names, err := j.SelectBoards(inv.Boards)
	if err != nil {
		return nil, nil, err
	}
	plan, err := j.Cycles(j.Blocks(len(update)))
	if err != nil {
		return nil, nil, err
	}
	for _, n := range names {
		bd, err := inv.Board(n)
		if err != nil {
			return nil, nil, err
		}
		if bd.Power == nil {
			return nil, nil, &boards.ConfigError{File: inv.File, Msg: fmt.Sprintf("board %s has no power switch: a power-cut job needs one", n)}
		}
		if bd.CoAP == nil {
			return nil, nil, &boards.ConfigError{File: inv.File, Msg: fmt.Sprintf("board %s has no coap endpoint", n)}
		}
		if f := bd.Flash; f != nil && f.SlotSize > 0 {
			for _, im := range []struct {
				what string
				b    []byte
			}{{"baseline", baseline}, {"update", update}} {
				if len(im.b) > int(f.SlotSize) {
					return nil, nil, &boards.ConfigError{File: j.File, Msg: fmt.Sprintf("%s image of %d bytes does not fit board %s's %d-byte slot", im.what, len(im.b), n, int(f.SlotSize))}
				}
			}
		}
	}
	return names, plan, nil
}

type runner struct {
	stop       context.CancelCauseFunc // stops every board
	o          RunOptions
	run        results.RunInfo
	plan       []CycleSpec
	hub        *bench.Hub
	record     func(results.Cycle) error
	baseDigest [32]byte
	updDigest  [32]byte
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
	var out error // why the board was taken out of the run
	outAt := 0
	for i, spec := range r.plan {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n := i + 1
		if w.done[n] {
			continue
		}
		w.b.SetCycle(n)
		var c results.Cycle
		if out != nil {
			c = r.skipped(w, spec, n, outAt, out)
		} else {
			var fault error
			c, fault = r.cycle(ctx, w, spec, n)
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
		e := w.b.Event(results.CycleOutcome)
		e.Text = string(c.Outcome)
		if c.Reason != "" {
			e.Attrs = map[string]string{"reason": c.Reason}
		}
		r.hub.Emit(e)
	}
	return nil
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
	now := r.hub.Clock().Since()
	reason := fmt.Sprintf("not run: board %s out of the run since cycle %d: %v", w.b.Name, outAt, why)
	return results.Cycle{
		Run: r.run.ID, Board: w.b.Name, Cycle: n, Plan: spec.Desc, PlannedBlock: spec.Block,
		Blocks: int(r.o.Job.Blocks(len(r.o.Update))), BlockSize: fwproto.BlockSize(r.o.Job.SZX()), ImageSize: len(r.o.Update),
		Outcome: results.InfraError, Accepted: slices.Contains(w.accepted, results.InfraError), Reason: reason,
		Start: now, End: now,
	}
}

func (r *runner) event(w *worker, k results.Kind, text string, d time.Duration) {
	e := w.b.Event(k)
	e.Text, e.Dur = text, d
	r.hub.Emit(e)
}

// cycle makes sure the baseline runs, runs the update with the planned
// cut, and classifies how it ended. A non-nil fault takes the board out of
// the run (see board).
func (r *runner) cycle(ctx context.Context, w *worker, spec CycleSpec, n int) (_ results.Cycle, fault error) {
	j := r.o.Job
	start := r.hub.Clock().Since()
	szx := j.SZX()
	c := results.Cycle{
		Run: r.run.ID, Board: w.b.Name, Cycle: n, Plan: spec.Desc, PlannedBlock: spec.Block,
		Blocks: int(j.Blocks(len(r.o.Update))), BlockSize: fwproto.BlockSize(szx), ImageSize: len(r.o.Update),
		Start: start,
	}
	finish := func(o results.Outcome, reason string) results.Cycle {
		c.Outcome, c.Reason = o, reason
		c.Accepted = slices.Contains(w.accepted, o)
		c.End = r.hub.Clock().Since()
		if w.b.Console != nil {
			for _, l := range w.b.Console.Last(20) {
				c.LastConsole = append(c.LastConsole, l.Text)
			}
		}
		return c
	}
	if err := r.ensureBaseline(ctx, w); err != nil {
		if ctx.Err() != nil {
			return c, nil
		}
		// Every later cycle would start from an unknown image.
		return finish(results.InfraError, "baseline: "+err.Error()), fmt.Errorf("baseline: %w", err)
	}
	trig, err := r.trigger(w, spec)
	if err != nil {
		return finish(results.InfraError, err.Error()), nil
	}
	res := w.b.Run(ctx, bench.Update{
		Profile: w.profile, Image: r.o.Update, SZX: szx, Path: j.Path, Trigger: trig,
		OffTime: j.OffTime, RecoveryTimeout: j.RecoveryTimeout,
	})
	if ctx.Err() != nil {
		return c, nil
	}
	c.BlocksSent, c.BlocksResent, c.Resumes, c.Transfer = res.BlocksSent, res.BlocksResent, res.Resumes, res.Transfer
	if res.Cut != nil {
		c.Cut = &results.CutInfo{Trigger: res.Cut.Trigger, T: res.Cut.T, Latency: res.Cut.Latency, LastAcked: res.Cut.LastAcked, InFlight: res.Cut.InFlight}
	}
	c.RecoveryAnswer = res.Milestones[bench.MilestoneCoAP]
	c.RecoveryVersion = res.Milestones[bench.MilestoneVersion]
	if res.Err == nil {
		return finish(results.Updated, ""), nil
	}
	if res.Infra {
		if errors.Is(res.Err, bench.ErrPower) {
			fault = res.Err
		}
		return finish(results.InfraError, res.Err.Error()), fault
	}
	outcome, reason, lost := r.classify(ctx, w, res)
	if lost {
		// The device went silent and its power switch is gone too: the
		// bench lost the board.
		return finish(outcome, reason), errors.New(reason)
	}
	if outcome == results.Bricked && j.Reflash {
		if err := r.reflash(ctx, w, "reflash"); err != nil {
			// The device's outcome stands; the next cycle tries to
			// restore the baseline once more and takes the board out of
			// the run if that fails too.
			reason += "; reflash failed: " + err.Error()
		} else {
			c.Reflashed = true
		}
	}
	return finish(outcome, reason), nil
}

// switchLost asks a board's power switch, when it can be read back,
// whether it is still there and on: a device that stopped answering is
// bricked only if the bench still powers it. It returns "" when the
// switch answers on (or cannot be read back).
func (r *runner) switchLost(w *worker) string {
	sr, ok := w.b.Power.(power.StateReader)
	if !ok || !w.b.PoweredOn() {
		return ""
	}
	to := 5 * time.Second
	if w.b.PowerTimeout > 0 {
		to = min(to, w.b.PowerTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), to)
	defer cancel()
	type answer struct {
		on  bool
		err error
	}
	ch := make(chan answer, 1)
	go func() { on, err := sr.State(ctx); ch <- answer{on, err} }()
	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		a.err = fmt.Errorf("no answer: %w", ctx.Err())
	}
	switch {
	case errors.Is(a.err, errors.ErrUnsupported):
		return "" // a switch that cannot read back tells nothing
	case a.err != nil:
		return fmt.Sprintf("board %s: no answer on CoAP and its power switch (%s) fails too: %v", w.b.Name, w.b.Power, a.err)
	case !a.on:
		return fmt.Sprintf("board %s: no answer on CoAP and its power switch (%s) reads off although the bench switched it on", w.b.Name, w.b.Power)
	}
	return ""
}

// classify looks at a device whose update did not finish. lost is set
// when the device is silent and its power switch is gone or reads off:
// the bench, not the device, lost the board.
func (r *runner) classify(ctx context.Context, w *worker, res *bench.Result) (_ results.Outcome, _ string, lost bool) {
	why := res.Err.Error()
	cl, err := w.b.Dial(ctx)
	if err != nil {
		return results.InfraError, err.Error(), false
	}
	defer cl.Close()
	// The session already waited the recovery timeout for an answer; a
	// device that never answered gets one more short look.
	wait := min(r.o.Job.RecoveryTimeout, 2*time.Second)
	if !res.Answering {
		wait = 300 * time.Millisecond
	}
	deadline := time.Now().Add(wait)
	last := ""
	for time.Now().Before(deadline) && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		v, verr := cl.Version(qctx)
		if verr == nil {
			cancel()
			switch {
			case bytes.Equal(v.Digest, r.updDigest[:]):
				return results.Updated, "", false
			case bytes.Equal(v.Digest, r.baseDigest[:]):
				return results.RolledBack, "the old image runs: " + why, false
			default:
				return results.RolledBack, fmt.Sprintf("another image runs (%s): %s", v.Version, why), false
			}
		}
		st, serr := cl.State(qctx)
		cancel()
		if serr == nil {
			return results.StuckRecovery, fmt.Sprintf("recovery state %s next %d/%d: %s", st.State, st.Next, fwproto.Blocks(st.Size, st.SZX), why), false
		}
		var se *coap.StatusError
		if errors.As(verr, &se) || errors.As(serr, &se) {
			// Answering but neither app nor recovery state yet: it may
			// still be booting; look again until the deadline.
			last = fmt.Sprintf("device answers %v: %s", se.Code, why)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if nc, derr := w.b.Dial(ctx); derr == nil {
			cl.Close()
			cl = nc
		}
	}
	if last != "" {
		return results.StuckRecovery, last, false
	}
	if lost := r.switchLost(w); lost != "" {
		return results.InfraError, lost + ": " + why, true
	}
	if res.Answering {
		return results.StuckRecovery, "device stopped answering: " + why, false
	}
	return results.Bricked, "no answer on CoAP within the recovery timeout: " + why, false
}

// trigger builds the cycle's cut trigger.
func (r *runner) trigger(w *worker, s CycleSpec) (bench.Trigger, error) {
	switch s.Kind {
	case KindNone:
		return nil, nil
	case KindAfterBlock:
		return &bench.AfterBlock{N: uint32(s.Block)}, nil
	case KindDuringBlock:
		return &bench.DuringBlock{N: uint32(s.Block), Delay: s.Delay}, nil
	case KindAtTime:
		return &bench.AtTime{T: s.At}, nil
	case KindOnConsole:
		re, err := regexp.Compile(s.Pattern)
		if err != nil {
			return nil, err
		}
		return &bench.OnConsole{Pattern: re, Board: w.b, Delay: s.Delay}, nil
	case KindOnGPIO:
		pin := gpioreg.ByName(s.Pin)
		if pin == nil {
			return nil, fmt.Errorf("on_gpio: no pin %q in gpioreg", s.Pin)
		}
		return &bench.OnGPIO{Pin: pin, Edge: s.GPIOEdge(), Nth: s.Nth, Delay: s.Delay}, nil
	}
	return nil, fmt.Errorf("unknown cut kind %q", s.Kind)
}

// ensureBaseline powers the board and makes sure the baseline image runs:
// flashed over the probe when it has one, otherwise pushed over CoAP.
func (r *runner) ensureBaseline(ctx context.Context, w *worker) error {
	if err := w.b.PowerOn(ctx); err != nil {
		return err
	}
	ver, err := r.waitApp(ctx, w)
	if err == nil && bytes.Equal(ver.Digest, r.baseDigest[:]) {
		return nil
	}
	if w.probe != nil {
		return r.reflash(ctx, w, "baseline")
	}
	if err != nil {
		return fmt.Errorf("board %s does not run an application and has no probe: %w", w.b.Name, err)
	}
	res := w.b.Run(ctx, bench.Update{Profile: w.profile, Image: r.o.Baseline, SZX: r.o.Job.SZX(), Path: r.o.Job.Path, RecoveryTimeout: r.o.Job.RecoveryTimeout})
	if res.Err != nil {
		return fmt.Errorf("restoring the baseline over CoAP (the board has no probe): %w", res.Err)
	}
	return nil
}

// waitApp waits until the application answers /fw/version.
func (r *runner) waitApp(ctx context.Context, w *worker) (fwproto.Version, error) {
	cl, err := w.b.Dial(ctx)
	if err != nil {
		return fwproto.Version{}, err
	}
	defer func() { cl.Close() }()
	deadline := time.Now().Add(r.o.Job.RecoveryTimeout)
	var last error
	// A request sent while the board boots is lost: a short first bound
	// so the answer comes soon after the app is up, doubled after each
	// attempt that timed out so a busy host is not flooded.
	wait := 20 * time.Millisecond
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return fwproto.Version{}, ctx.Err()
		}
		qctx, cancel := context.WithTimeout(ctx, wait)
		v, err := cl.Version(qctx)
		cancel()
		if err == nil {
			return v, nil
		}
		last = err
		if errors.Is(err, context.DeadlineExceeded) {
			wait = min(2*wait, time.Second)
		}
		var se *coap.StatusError
		if errors.As(err, &se) {
			return fwproto.Version{}, err // answering, but not an app
		}
		if nc, derr := w.b.Dial(ctx); derr == nil {
			cl.Close()
			cl = nc
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fwproto.Version{}, fmt.Errorf("no application answer within %v: %w", r.o.Job.RecoveryTimeout, last)
}

// reflash writes the baseline over the probe: erase what the board's
// flash entry names (records, journal, counters and the app slot), write
// the image at the app address, reset, and wait for the app.
func (r *runner) reflash(ctx context.Context, w *worker, why string) error {
	if w.probe == nil {
		return fmt.Errorf("board %s has no probe", w.b.Name)
	}
	f := w.bd.Flash
	if f == nil {
		return fmt.Errorf("board %s: flash: app_address is needed to flash over the probe", w.b.Name)
	}
	start := time.Now()
	if !w.b.PoweredOn() {
		if err := w.b.PowerOn(ctx); err != nil {
			return err
		}
	}
	if er, ok := w.probe.(probes.Eraser); ok && f.EraseFrom != 0 {
		end := uint32(f.Base) + uint32(f.Size)
		if err := er.Erase(ctx, uint32(f.EraseFrom), end-uint32(f.EraseFrom)); err != nil {
			return fmt.Errorf("%s over %s: %w", why, w.probe, err)
		}
	}
	if err := w.probe.Flash(ctx, uint32(f.AppAddr), r.o.Baseline, nil); err != nil {
		return fmt.Errorf("%s over %s: %w", why, w.probe, err)
	}
	if err := w.probe.Reset(ctx); err != nil {
		return fmt.Errorf("%s over %s: reset: %w", why, w.probe, err)
	}
	r.event(w, results.FlashProgress, why, time.Since(start))
	v, err := r.waitApp(ctx, w)
	if err != nil {
		return fmt.Errorf("after %s: %w", why, err)
	}
	if !bytes.Equal(v.Digest, r.baseDigest[:]) {
		return fmt.Errorf("after %s the board runs %s, not the baseline", why, v.Version)
	}
	return nil
}
