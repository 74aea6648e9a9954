package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/bench/update"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/boards/sim"
	"github.com/fudbench/fudbench/boards/sim/image"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
)

// version is fudbench's own version, recorded with every run.
const version = "0.1.0-dev"

// startBuiltinSims starts the built-in simulated boards in this process
// and returns their inventory, parsed like any bench file.
func startBuiltinSims(ctx context.Context, g *globals, timeScale float64, dir string) (*sim.Sim, *boards.Bench, error) {
	cfgs := sim.DefaultBench()
	for i := range cfgs {
		cfgs[i].TimeScale = timeScale
		cfgs[i].Pins = true
		cfgs[i].StateDir = dir
		cfgs[i].DTLSAddr = "-"
	}
	s, err := sim.Start(cfgs, false, g.log)
	if err != nil {
		return nil, nil, infraErr(err)
	}
	for _, b := range s.Boards {
		// Endpoints are bound at first boot: boot once, then power off.
		b.SetPower(true)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.WaitReady(wctx); err != nil {
		s.Close()
		return nil, nil, infraErr(err)
	}
	for _, b := range s.Boards {
		b.SetPower(false)
	}
	text, err := sim.Inventory(s.Boards)
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	inv, err := boards.Parse(builtinName, text)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("built-in bench: %w", err)
	}
	return s, inv, nil
}

// loadImage reads or builds one of the job's images.
func loadImage(spec jobs.ImageSpec) ([]byte, error) {
	if spec.Build != nil {
		b := spec.Build
		return image.Build(image.Spec{Version: b.Version, Seq: b.Seq, Size: b.Size, Seed: b.Seed}, image.DevKey())
	}
	data, err := os.ReadFile(spec.File)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return data, nil
}

func newRunCmd(g *globals) *cobra.Command {
	var (
		benchFile, outDir, dbPath, lockDir string
		resume, jsonOut, lockWait, noDB    bool
		timeScale                          float64
	)
	cmd := &cobra.Command{
		Use:   "run [JOB] [--bench FILE] [--out DIR] [--db FILE]",
		Short: "Run a power-cut campaign and report outcomes, timings and statistics",
		Long: `Run a job: for each board and cycle, make sure the baseline runs, start the
update, cut power at the planned point, power back on, follow recovery,
finish or resume the update and classify the cycle (updated, rolled-back,
stuck-recovery, bricked, infra-error).

With no JOB, the built-in demo runs on the built-in simulated boards in
this process: sim-safe must update after every cut; sim-naive may brick and
is reflashed over its probe port.

Writes OUT/events.jsonl (as it happens), OUT/summary.json, OUT/junit.xml,
and every run into the SQLite database.

Exit codes: 0 every outcome accepted; 1 an outcome not accepted; 2 a bad
job or bench file; 3 the bench failed (infra-error); 130 interrupted.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			// Decode and validate everything before touching any output.
			var job *jobs.Job
			jobText := []byte("(built-in demo)")
			if len(args) == 1 {
				var err error
				if job, err = jobs.Load(args[0]); err != nil {
					return usageErr(err)
				}
				jobText, _ = os.ReadFile(args[0])
			} else {
				job = jobs.Demo()
			}
			if benchFile != "" {
				job.Bench = benchFile
			}
			baseline, err := loadImage(job.Baseline)
			if err != nil {
				return usageErr(fmt.Errorf("baseline %w", err))
			}
			upd, err := loadImage(job.Image)
			if err != nil {
				return usageErr(fmt.Errorf("update %w", err))
			}
			if _, err := job.Cycles(job.Blocks(len(upd))); err != nil {
				return usageErr(err)
			}
			var inv *boards.Bench
			if job.Bench != "" {
				if inv, err = boards.Load(job.Bench); err != nil {
					return usageErr(err)
				}
				if _, err := job.SelectBoards(inv.Boards); err != nil {
					return usageErr(err)
				}
			}
			h := sha256.New()
			h.Write(jobText)
			h.Write(baseline)
			h.Write(upd)
			host, _ := os.Hostname()
			runInfo := results.RunInfo{
				ID:  time.Now().UTC().Format("20060102T150405Z") + "-" + fmt.Sprintf("%04x", os.Getpid()&0xffff),
				Job: job.Name, JobFile: job.File, JobHash: hex.EncodeToString(h.Sum(nil)),
				Started: time.Now().UTC(), Host: host, Version: version,
			}
			if runInfo.JobFile == "" {
				runInfo.JobFile = jobs.DemoFile
			}
			if job.Bench == "" {
				dir, err := os.MkdirTemp("", "fudbench-run-")
				if err != nil {
					return infraErr(err)
				}
				defer os.RemoveAll(dir)
				sims, sinv, err := startBuiltinSims(ctx, g, timeScale, dir)
				if err != nil {
					return err
				}
				defer sims.Close()
				inv = sinv
			}
			var db *results.DB
			if !noDB {
				if dbPath == "" {
					dbPath = filepath.Join("fudbench-out", "results.db")
				}
				if db, err = results.OpenDB(dbPath); err != nil {
					return infraErr(err)
				}
				defer db.Close()
			}
			if lockDir == "" {
				lockDir = jobs.DefaultLockDir()
			}
			out := c.ErrOrStderr()
			if !jsonOut {
				out = c.OutOrStdout()
			}
			rep, err := jobs.Execute(ctx, jobs.RunOptions{
				Job: job, Inventory: inv, Baseline: baseline, Update: upd, Run: runInfo,
				OutDir: outDir, DB: db, Resume: resume,
				Locker: &jobs.FileLocker{Dir: lockDir, Wait: lockWait},
				Log:    g.log, Out: out, TTY: isTerminal(os.Stdout) && !jsonOut,
				Tx:      update.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3},
				Console: true,
			})
			if rep == nil {
				if errors.Is(err, boards.ErrConfig) {
					return usageErr(err)
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return infraErr(err)
			}
			if err != nil {
				g.log.Error("run", "err", err)
			}
			if jsonOut {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.Encode(rep.Summary)
			} else {
				fmt.Fprintf(c.OutOrStdout(), "results: %s (run %s)\n", strings.TrimSuffix(outDir, "/"), rep.Run.ID)
			}
			switch {
			case rep.Interrupted:
				return errInterrupted
			case rep.Summary.Verdict == results.VerdictFail:
				return &exitError{ExitDeviceFail, fmt.Errorf("%d cycle(s) ended in an outcome the job does not accept", len(rep.Summary.Failures))}
			case rep.Summary.Verdict == results.VerdictInfraError:
				return infraErr(fmt.Errorf("the bench failed in %d cycle(s)", rep.Summary.InfraErrors))
			case err != nil:
				return infraErr(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file (default: the job's, or the built-in simulated bench)")
	cmd.Flags().StringVar(&outDir, "out", "fudbench-out", "output directory for events.jsonl, summary.json, junit.xml")
	cmd.Flags().StringVar(&dbPath, "db", "", "results database (default fudbench-out/results.db)")
	cmd.Flags().BoolVar(&noDB, "no-db", false, "do not record into the results database")
	cmd.Flags().BoolVar(&resume, "resume", false, "continue the newest unfinished run of this job")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the summary as JSON on stdout")
	cmd.Flags().BoolVar(&lockWait, "lock-wait", false, "wait for boards locked by another run instead of failing")
	cmd.Flags().StringVar(&lockDir, "lock-dir", "", "where board leases are kept (default $TMPDIR/fudbench-locks)")
	cmd.Flags().Float64Var(&timeScale, "time-scale", 0, "built-in sim boards: scale of flash and boot timings (0 = instant)")
	return cmd
}
