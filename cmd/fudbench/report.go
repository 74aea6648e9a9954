package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/results/report"
)

func newReportCmd(g *globals) *cobra.Command {
	var (
		runID, out, dbPath string
		compare            bool
	)
	cmd := &cobra.Command{
		Use:   "report [DB|OUTDIR] [--run ID] [-o report.html]\n  fudbench report --compare RUN1 RUN2 ... [--db DB] [-o compare.html]",
		Short: "Write a run's campaign report, or compare runs, as one self-contained HTML file",
		Long: `Write the campaign report of a run: its summary and outcome counts, the
strategy comparison (when its boards run several update strategies), the
outcome map (outcome by cut point, one row per board), recovery-time
distributions, transfer throughput and round trips, the failure-rate trend
across every run of the same job in the database, and the timeline and last
console lines of each failed cycle.

The input is a results database (results.db) or a run's output directory
(default fudbench-out). From a database the report shows the newest run
unless --run names one; from an output directory, the run its summary.json
names. The page embeds its plots as SVG and loads nothing from the network.

With --compare, put two or more runs side by side in the form of the
Strategies section: one column per run and update strategy, with each run's
job, start and cycle count (default output compare.html). Each RUN is one of:
  OUTDIR          a run's output directory: its run
  DB              a results database file: its newest run
  DB#RUNID        run RUNID of that database
  RUNID           run RUNID of the database given by --db
                  (default fudbench-out/results.db)
For example, runs of your own boards in one database:
  fudbench report --compare --db lab/results.db 20261125T214056Z-08fa 20261126T091502Z-1c2e

Exit codes: 0 written; 2 a bad input (no such file, not a results database,
unknown run, fewer than two runs to compare); 3 the report could not be
written.`,
		Args: func(c *cobra.Command, args []string) error {
			if compare {
				if len(args) < 2 {
					return usageErr(fmt.Errorf("report --compare: give at least two runs (got %d)", len(args)))
				}
				if runID != "" {
					return usageErr(errors.New("report --compare: name each run as DB#RUNID or RUNID (with --db), not with --run"))
				}
				return nil
			}
			if c.Flags().Changed("db") && len(args) > 0 {
				return usageErr(errors.New("report: give the database as the argument or as --db, not both"))
			}
			return cobra.MaximumNArgs(1)(c, args)
		},
		RunE: func(c *cobra.Command, args []string) error {
			if compare {
				if !c.Flags().Changed("output") {
					out = "compare.html"
				}
				return writeComparison(c, g, args, dbPath, out)
			}
			src := "fudbench-out"
			switch {
			case len(args) == 1:
				src = args[0]
			case c.Flags().Changed("db"):
				src = dbPath
			}
			in, err := report.Load(src, runID)
			if err != nil {
				if errors.Is(err, report.ErrInput) {
					return usageErr(err)
				}
				return infraErr(err)
			}
			if err := report.WriteFile(out, *in); err != nil {
				return infraErr(err)
			}
			if out != "-" {
				fmt.Fprintf(c.OutOrStdout(), "report: %s (run %s, %d cycles)\n", out, in.Summary.RunID, in.Summary.Cycles)
			}
			g.log.Debug("report written", "out", out, "run", in.Summary.RunID)
			return nil
		},
	}
	cmd.Flags().StringVar(&runID, "run", "", "run ID (default: the newest run in the database, or the output directory's run)")
	cmd.Flags().StringVarP(&out, "output", "o", "report.html", `output file ("-" for stdout; compare.html with --compare)`)
	cmd.Flags().BoolVar(&compare, "compare", false, "compare the runs given as arguments (at least two) side by side")
	cmd.Flags().StringVar(&dbPath, "db", "fudbench-out/results.db", "the database a run ID given to --compare is looked up in (without --compare: the database to report from)")
	return cmd
}

// writeComparison resolves each argument to a run and writes their
// comparison page.
func writeComparison(c *cobra.Command, g *globals, args []string, dbPath, out string) error {
	var ins []report.Input
	seen := map[string]string{}
	for _, a := range args {
		in, err := report.ResolveRun(a, dbPath)
		if err != nil {
			if errors.Is(err, report.ErrInput) {
				return usageErr(err)
			}
			return infraErr(fmt.Errorf("%s: %w", a, err))
		}
		id := in.Summary.RunID
		if prev, ok := seen[id]; ok {
			return usageErr(fmt.Errorf("report --compare: %s and %s are the same run %s", prev, a, id))
		}
		seen[id] = a
		ins = append(ins, *in)
	}
	if err := report.WriteComparison(out, ins); err != nil {
		return infraErr(err)
	}
	if out != "-" {
		var ids []string
		for _, in := range ins {
			ids = append(ids, in.Summary.RunID)
		}
		fmt.Fprintf(c.OutOrStdout(), "report: %s (runs %s)\n", out, strings.Join(ids, ", "))
	}
	g.log.Debug("comparison written", "out", out, "runs", len(ins))
	return nil
}

// writeRunReport writes the report of a run that just ended to path,
// from the open database when there is one, else from the output
// directory's files. firmware names the images' versions.
func writeRunReport(db *results.DB, outDir, runID, path string, firmware []string) error {
	var (
		in  *report.Input
		err error
	)
	if db != nil {
		in, err = report.FromDB(db, runID)
	} else {
		in, err = report.Load(outDir, runID)
	}
	if err != nil {
		return err
	}
	in.Firmware = firmware
	return report.WriteFile(path, *in)
}

// imageVersion names an image's version for the report: the version of
// an image built on the fly, or the one in the header of an image in
// fudbench's format; "" when unknown.
func imageVersion(img []byte) string {
	if h, err := fwimage.ParseHeader(img); err == nil {
		return fmt.Sprintf("%s (seq %d)", h.Version, h.Seq)
	}
	return ""
}

// reportFirmware lists the baseline and update versions for the report.
func reportFirmware(baseline, update []byte) []string {
	var out []string
	if v := imageVersion(baseline); v != "" {
		out = append(out, "baseline "+v)
	}
	if v := imageVersion(update); v != "" {
		out = append(out, "update "+v)
	}
	return out
}
