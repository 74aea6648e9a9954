package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// defaultTimeScale is the scale of the built-in boards' flash and boot
// timings in `fudbench run`: fast enough that a campaign with a reflash
// per cycle takes seconds, slow enough that a 1 KiB block's write lasts
// 2.6 ms, so cuts planned during a block's write land there even when a
// busy host fires their timers a millisecond late.
const defaultTimeScale = 0.25

// runFlags are `fudbench run`'s options.
type runFlags struct {
	benchFile, outDir, dbPath, lockDir string
	resume, jsonOut, lockWait, noDB    bool
	timeScale                          float64
	imageKey                           string
	skipImageCheck                     bool
	withReport                         bool
	check                              bool
	checkTimeout                       time.Duration
}

func newRunCmd(g *globals) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [JOB] [--bench FILE] [--out DIR] [--db FILE]",
		Short: "Run a power-cut campaign and report outcomes, timings and statistics",
		Long: `Run a job: for each board and cycle, make sure the baseline runs, start the
update, cut power at the planned point, power back on, follow recovery,
finish or resume the update and classify the cycle (updated, rolled-back,
stuck-recovery, bricked, missed-cut, infra-error). A cycle whose cut did not
happen at its planned point is missed-cut, never a survived cut; it runs
once more by default (missed_cut: retry in the job).

Over a secured link (DTLS, OSCORE) every nonce the device uses is checked
against the whole campaign, and after each cut a request from before it
is sent again: a reused nonce or an accepted replay is a security finding
that fails its cycle whatever the outcome. examples/oscore.yaml runs the
built-in OSCORE boards, one of them with the classic nonce-reuse bug.

With no JOB, the built-in demo runs on the built-in simulated boards in
this process: sim-safe must update after every cut; sim-naive may brick and
is reflashed over its probe port.

Everything is checked before anything is powered: the job, the bench, the
images, each board's wiring and whether each planned cut can land.

Writes OUT/events.jsonl (as it happens), OUT/summary.json, OUT/junit.xml,
and every run into the SQLite database.

Exit codes: 0 every outcome accepted; 1 an outcome not accepted or a
security finding; 2 a bad
job or bench file; 3 the bench failed (infra-error, missed-cut); 130
interrupted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error { return runJob(c, g, &f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.benchFile, "bench", "", "bench file (default: the job's, or the built-in simulated bench)")
	fl.StringVar(&f.outDir, "out", "fudbench-out", "output directory for events.jsonl, summary.json, junit.xml")
	fl.StringVar(&f.dbPath, "db", "", "results database (default fudbench-out/results.db)")
	fl.BoolVar(&f.noDB, "no-db", false, "do not record into the results database")
	fl.BoolVar(&f.resume, "resume", false, "continue the newest unfinished run of this job")
	fl.BoolVar(&f.jsonOut, "json", false, "print the summary as JSON on stdout")
	fl.BoolVar(&f.lockWait, "lock-wait", false, "wait for boards locked by another run instead of failing")
	fl.StringVar(&f.lockDir, "lock-dir", "", "where board leases are kept (default $TMPDIR/fudbench-locks)")
	fl.StringVar(&f.imageKey, "image-key", "", "public key (PEM) that signs the job's images; default: the development key")
	fl.BoolVar(&f.skipImageCheck, "skip-image-check", false, "push images that do not verify (to test that a device refuses them)")
	fl.BoolVar(&f.withReport, "report", false, "also write the campaign report to OUT/report.html (see fudbench report)")
	fl.BoolVar(&f.check, "check", false, "run the wiring checks of fudbench check on the job's boards first; stop with exit 3 if one fails")
	fl.DurationVar(&f.checkTimeout, "check-timeout", 10*time.Second, "--check: how long each check waits")
	fl.Float64Var(&f.timeScale, "time-scale", defaultTimeScale, "built-in sim boards: scale of flash and boot timings (0 = instant, 1 = an nRF52's)")
	return cmd
}

func runJob(c *cobra.Command, g *globals, f *runFlags, args []string) error {
	ctx := c.Context()
	// Decode and validate everything before touching any output.
	job := jobs.Demo()
	jobText := []byte(jobs.DemoFile)
	if len(args) == 1 {
		var err error
		if job, err = jobs.Load(args[0]); err != nil {
			return usageErr(err)
		}
		jobText = job.Text // the bytes parsed: the file is read once
	}
	if f.benchFile != "" {
		job.Bench = f.benchFile
	}
	if f.timeScale < 0 || f.timeScale > 1000 {
		return usageErr(fmt.Errorf("--time-scale %g: want 0 (instant) to 1000", f.timeScale))
	}
	popt := jobs.PrepareOptions{Use: jobs.UseRun, SkipImageCheck: f.skipImageCheck, Log: g.log}
	if f.imageKey != "" {
		pub, err := fwimage.LoadPublicKey(f.imageKey)
		if err != nil {
			return usageErr(fmt.Errorf("--image-key: %w", err))
		}
		popt.ImageKey, popt.KeyGiven = ed25519.PublicKey(pub), true
	}
	builtin := job.Bench == ""
	var inv *boards.Bench
	if !builtin {
		var err error
		if inv, err = boards.Load(job.Bench); err != nil {
			return usageErr(err)
		}
	}
	st, err := stage(ctx, job, inv, f.timeScale, popt, g.log)
	if err != nil {
		return err
	}
	defer st.close()
	prep, witnesses := st.prep, st.witnesses
	if f.check {
		if err := checkBeforeRun(c, g, prep.Boards, f.checkTimeout); err != nil {
			return err
		}
	}
	runInfo := newRunInfo(job, jobText, prep)
	var db *results.DB
	if !f.noDB {
		if f.dbPath == "" {
			f.dbPath = filepath.Join("fudbench-out", "results.db")
		}
		if db, err = results.OpenDB(f.dbPath); err != nil {
			return infraErr(err)
		}
		defer db.Close()
	}
	if f.lockDir == "" {
		f.lockDir = jobs.DefaultLockDir()
	}
	out := c.ErrOrStderr()
	if !f.jsonOut {
		out = c.OutOrStdout()
	}
	tty := isTerminal(os.Stdout) && !f.jsonOut
	// On a terminal, log lines go above the live status rather than
	// through it, for as long as it is drawn.
	logTo := &swapWriter{w: c.ErrOrStderr()}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: logLevel(g.verbose)}))
	watch := func(done map[string]int) jobs.Watcher {
		planned := map[string]int{}
		for _, n := range prep.Names() {
			planned[n] = len(prep.Plan)
		}
		st := newStatus(out, tty, prep.Names(), planned, done, func(board, outcome string) bool {
			return job.Accepts(board, results.Outcome(outcome))
		})
		if tty {
			logTo.swap(st)
		}
		return &closeThen{Watcher: st, then: func() { logTo.swap(c.ErrOrStderr()) }}
	}
	var locker jobs.Locker = &jobs.FileLocker{Dir: f.lockDir, Wait: f.lockWait}
	if builtin {
		// The built-in boards of this run live in this process: no other
		// run can reach them, and two runs of the demo side by side have
		// boards of the same names that are not the same boards.
		locker = nil
	}
	var rep *jobs.Report
	rep, err = jobs.Execute(ctx, jobs.RunOptions{
		Prepared: prep, Run: runInfo, OutDir: f.outDir, DB: db, Resume: f.resume,
		Locker: locker,
		Log:    log, Out: out, Watch: watch,
		Tx:        coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3},
		Console:   true,
		Witnesses: witnesses,
	})
	if rep == nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return classify(err)
	}
	if err != nil {
		g.log.Error("run", "err", err)
	}
	if f.jsonOut {
		enc := json.NewEncoder(c.OutOrStdout())
		enc.SetIndent("", "  ")
		enc.Encode(rep.Summary)
	} else {
		fmt.Fprintf(c.OutOrStdout(), "results: %s (run %s)\n", strings.TrimSuffix(f.outDir, "/"), rep.Run.ID)
	}
	if f.withReport && !rep.Interrupted {
		path := filepath.Join(f.outDir, "report.html")
		if rerr := writeRunReport(db, f.outDir, rep.Run.ID, path, reportFirmware(prep.Baseline, prep.Update)); rerr != nil {
			g.log.Error("report", "err", rerr)
			err = errors.Join(err, rerr)
		} else {
			fmt.Fprintf(out, "report: %s\n", path)
		}
	}
	return runResult(rep, err)
}

// runResult is how a run ended, as an error carrying `fudbench run`'s
// exit code (nil: every outcome accepted).
func runResult(rep *jobs.Report, err error) error {
	s := rep.Summary
	switch {
	case rep.Interrupted:
		return errInterrupted
	case s.Verdict == results.VerdictFail:
		if n := s.Findings[results.FindingNonceReuse] + s.Findings[results.FindingReplayAccepted]; n > 0 {
			return &exitError{ExitDeviceFail, fmt.Errorf("%d cycle(s) failed: %d security finding(s) (nonce reuse %d, replay accepted %d)%s",
				len(s.Failures), n, s.Findings[results.FindingNonceReuse], s.Findings[results.FindingReplayAccepted], otherFailures(s))}
		}
		return &exitError{ExitDeviceFail, fmt.Errorf("%d cycle(s) ended in an outcome the job does not accept", len(s.Failures))}
	case s.Verdict == results.VerdictInfraError:
		return infraErr(benchFailure(s))
	case err != nil:
		return infraErr(err)
	}
	return nil
}

// staged is a job prepared to run, with the built-in boards it uses
// started in this process when it runs on them.
type staged struct {
	prep      *jobs.Prepared
	witnesses map[string]power.CutWitness
	close     func()
}

// stage prepares job against inv, or against the built-in simulated
// boards when inv is nil: those are checked as they will be before any
// is started (a bad job leaves no trace, not even a simulated board),
// then only the ones the job uses are started, and the job is prepared
// again with their real addresses and its drivers opened once.
func stage(ctx context.Context, job *jobs.Job, inv *boards.Bench, timeScale float64, popt jobs.PrepareOptions, log *slog.Logger) (*staged, error) {
	if inv != nil {
		prep, err := jobs.Prepare(ctx, job, inv, popt)
		if err != nil {
			return nil, classify(err)
		}
		return &staged{prep: prep, close: func() {}}, nil
	}
	dir := filepath.Join(os.TempDir(), "fudbench-run")
	plan, err := simbench.Plan(builtinName, inProcessBoards(timeScale, dir), dir)
	if err != nil {
		return nil, err
	}
	popt.NoDrivers = true
	prep, err := jobs.Prepare(ctx, job, plan, popt)
	if err != nil {
		if errors.Is(err, jobs.ErrCannotLand) {
			err = fmt.Errorf("%w (the built-in simulated boards run at --time-scale %g; a larger scale slows their flash toward real timings)", err, timeScale)
		}
		return nil, classify(err)
	}
	if dir, err = os.MkdirTemp("", "fudbench-run-"); err != nil {
		return nil, infraErr(err)
	}
	var use []simbench.Board
	for _, b := range inProcessBoards(timeScale, dir) {
		if slices.Contains(prep.Names(), b.Name) {
			use = append(use, b)
		}
	}
	sims, err := simbench.Start(ctx, builtinName, use, log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, infraErr(err)
	}
	st := &staged{witnesses: sims.Witnesses, close: func() {
		sims.Close()
		os.RemoveAll(dir)
	}}
	popt.NoDrivers, popt.Witnesses = false, sims.Witnesses
	if st.prep, err = jobs.Prepare(ctx, job, sims.Inventory, popt); err != nil {
		st.close()
		return nil, classify(err)
	}
	return st, nil
}

// swapWriter is a writer whose destination can change while loggers
// hold it.
type swapWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *swapWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *swapWriter) swap(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

// closeThen runs then after closing the watcher.
type closeThen struct {
	jobs.Watcher
	then func()
}

func (c *closeThen) Close() {
	c.Watcher.Close()
	c.then()
}

func logLevel(verbose bool) slog.Level {
	if verbose {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// otherFailures notes failed cycles without a security finding.
func otherFailures(s results.Summary) string {
	n := 0
	for _, f := range s.Failures {
		if len(f.Findings) == 0 {
			n++
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("; %d more ended in an outcome the job does not accept", n)
}

// benchFailure says how the bench failed a run.
func benchFailure(s results.Summary) error {
	missed := s.Outcomes[results.MissedCut]
	switch {
	case missed > 0 && s.InfraErrors > 0:
		return fmt.Errorf("the bench failed in %d cycle(s) and missed the planned cut in %d", s.InfraErrors, missed)
	case missed > 0:
		return fmt.Errorf("the planned cut did not happen where planned in %d cycle(s): those cycles tested nothing", missed)
	}
	return fmt.Errorf("the bench failed in %d cycle(s)", s.InfraErrors)
}

// newRunInfo names a run; the job hash (job text and both images) lets
// --resume find it again.
func newRunInfo(job *jobs.Job, jobText []byte, prep *jobs.Prepared) results.RunInfo {
	h := sha256.New()
	h.Write(jobText)
	h.Write(prep.Baseline)
	h.Write(prep.Update)
	host, _ := os.Hostname()
	ri := results.RunInfo{
		ID:  time.Now().UTC().Format("20060102T150405Z") + "-" + fmt.Sprintf("%04x", os.Getpid()&0xffff),
		Job: job.Name, JobFile: job.File, JobHash: hex.EncodeToString(h.Sum(nil)),
		Started: time.Now().UTC(), Host: host, Version: readVersion().String(),
	}
	if ri.JobFile == "" {
		ri.JobFile = jobs.DemoFile
	}
	return ri
}

// checkBeforeRun runs the wiring checks on the job's boards, before
// anything of the campaign is written: a failed check stops the run with
// exit 3.
func checkBeforeRun(c *cobra.Command, g *globals, bds []*boards.Board, timeout time.Duration) error {
	if timeout <= 0 {
		return usageErr(fmt.Errorf("--check-timeout %v: want a positive duration", timeout))
	}
	rs, err := checkBoards(c.Context(), bds, checkOptions{Timeout: timeout, Log: g.log, Report: checkPrinter(c.ErrOrStderr(), bds)})
	if err != nil {
		return err
	}
	if ferr := checkFailures(rs); ferr != nil {
		return infraErr(fmt.Errorf("%w; the campaign was not started", ferr))
	}
	return nil
}
