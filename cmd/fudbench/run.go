package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

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

// builtinBoards are the built-in simulated bench's boards as a job sees
// them (names and tags), known before they are started.
func builtinBoards() []boards.Board {
	var out []boards.Board
	for _, c := range sim.DefaultBench() {
		out = append(out, boards.Board{Name: c.Name, Tags: []string{"sim", string(c.Strategy)}})
	}
	return out
}

// checkImage verifies an image in fudbench's signed format (magic "FUDI")
// before anything is powered: header, payload digest, signature with pub
// (the development key unless keyGiven), so a corrupt or wrongly signed
// image fails the job at once. An image in another format is passed on
// as it is: the device verifies it.
func checkImage(g *globals, what string, spec jobs.ImageSpec, img []byte, pub ed25519.PublicKey, keyGiven bool) error {
	name := spec.File
	if name == "" {
		name = "(built)"
	}
	if !bytes.HasPrefix(img, []byte(fwimage.Magic)) {
		g.log.Info("image is not in fudbench's format; the device verifies it", "image", what, "file", name)
		return nil
	}
	h, err := fwimage.ParseHeader(img)
	if err != nil {
		return fmt.Errorf("%s image %s: %w", what, name, err)
	}
	if !keyGiven && h.KeyID != fwimage.KeyID(pub) {
		return fmt.Errorf("%s image %s: signed by key id %x, not the development key: give its public key with --image-key", what, name, h.KeyID)
	}
	if _, err := fwimage.Verify(img, pub); err != nil {
		return fmt.Errorf("%s image %s: %w", what, name, err)
	}
	return nil
}

// checkWiring opens each selected board's drivers the way the run will,
// powering and connecting nothing, and reads its DTLS key, so that a
// misspelt driver setting or an unreadable key is reported before any
// output exists. Driver errors point at the driver's entry in the bench
// file when the driver's own error has no position.
func checkWiring(inv *boards.Bench, names []string) error {
	at := func(d *boards.DriverConfig, board string, err error) error {
		var ce *boards.ConfigError
		if errors.As(err, &ce) && ce.Line > 0 {
			return &boards.ConfigError{File: ce.File, Line: ce.Line, Column: ce.Column, Msg: fmt.Sprintf("board %s: %s", board, ce.Msg)}
		}
		return d.Errorf("board %s: %v", board, err)
	}
	for _, n := range names {
		bd, err := inv.Board(n)
		if err != nil {
			return err
		}
		if bd.Power != nil {
			if _, err := power.Open(bd.Power.Driver, bd.Power); err != nil {
				return at(bd.Power, n, err)
			}
		}
		if bd.Probe != nil && bd.Probe.Driver != "" && slices.Contains(probes.Drivers(), bd.Probe.Driver) {
			p, err := probes.Open(bd.Probe.Driver, bd.Probe)
			if err != nil {
				return at(bd.Probe, n, err)
			}
			p.Close()
		}
		if bd.CoAP != nil && bd.CoAP.DTLS != nil {
			if _, err := bd.CoAP.DTLS.Key(); err != nil {
				return &boards.ConfigError{File: inv.File, Msg: fmt.Sprintf("board %s: %v", n, err)}
			}
		}
	}
	return nil
}

// loadImage reads or builds one of the job's images.
func loadImage(spec jobs.ImageSpec) ([]byte, error) {
	if spec.Build != nil {
		b := spec.Build
		return fwimage.Build(fwimage.Spec{Version: b.Version, Seq: b.Seq, Size: b.Size, Seed: b.Seed}, fwimage.DevKey())
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
		imageKey                           string
		skipImageCheck                     bool
		withReport                         bool
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
			if !skipImageCheck {
				pub := fwimage.DevKey().Public().(ed25519.PublicKey)
				if imageKey != "" {
					if pub, err = fwimage.LoadPublicKey(imageKey); err != nil {
						return usageErr(fmt.Errorf("--image-key: %w", err))
					}
				}
				for _, im := range []struct {
					what string
					spec jobs.ImageSpec
					b    []byte
				}{{"baseline", job.Baseline, baseline}, {"update", job.Image, upd}} {
					if err := checkImage(g, im.what, im.spec, im.b, pub, imageKey != ""); err != nil {
						return usageErr(err)
					}
				}
			}
			if _, err := job.Cycles(job.Blocks(len(upd))); err != nil {
				return usageErr(err)
			}
			var inv *boards.Bench
			if job.Bench != "" {
				if inv, err = boards.Load(job.Bench); err != nil {
					return usageErr(err)
				}
			} else if _, err := job.SelectBoards(builtinBoards()); err != nil {
				// Before the built-in boards are started.
				return usageErr(err)
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
			// Boards, wiring and image sizes: checked before the database
			// is opened or created, so a bad job leaves no trace.
			names, _, err := jobs.Check(job, inv, baseline, upd)
			if err == nil {
				err = checkWiring(inv, names)
			}
			if err != nil {
				if errors.Is(err, boards.ErrConfig) {
					return usageErr(err)
				}
				return infraErr(err)
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
				Tx:      coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3},
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
			if withReport && !rep.Interrupted {
				path := filepath.Join(outDir, "report.html")
				if rerr := writeRunReport(db, outDir, rep.Run.ID, path, reportFirmware(baseline, upd)); rerr != nil {
					g.log.Error("report", "err", rerr)
					err = errors.Join(err, rerr)
				} else {
					fmt.Fprintf(out, "report: %s\n", path)
				}
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
	cmd.Flags().StringVar(&imageKey, "image-key", "", "public key (PEM) that signs the job's images; default: the development key")
	cmd.Flags().BoolVar(&skipImageCheck, "skip-image-check", false, "push images that do not verify (to test that a device refuses them)")
	cmd.Flags().BoolVar(&withReport, "report", false, "also write the campaign report to OUT/report.html (see fudbench report)")
	cmd.Flags().Float64Var(&timeScale, "time-scale", 0, "built-in sim boards: scale of flash and boot timings (0 = instant)")
	return cmd
}
