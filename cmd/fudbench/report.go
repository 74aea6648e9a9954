package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/results/report"
)

func newReportCmd(g *globals) *cobra.Command {
	var (
		runID, out string
	)
	cmd := &cobra.Command{
		Use:   "report [DB|OUTDIR] [--run ID] [-o report.html]",
		Short: "Write a run's campaign report as one self-contained HTML file",
		Long: `Write the campaign report of a run: its summary and outcome counts, the
outcome map (outcome by cut point, one row per board), recovery-time
distributions, transfer throughput and round trips, the failure-rate trend
across every run of the same job in the database, and the timeline and last
console lines of each failed cycle.

The input is a results database (results.db) or a run's output directory
(default fudbench-out). From a database the report shows the newest run
unless --run names one; from an output directory, the run its summary.json
names. The page embeds its plots as SVG and loads nothing from the network.

Exit codes: 0 written; 2 a bad input (no such file, not a results database,
unknown run); 3 the report could not be written.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			src := "fudbench-out"
			if len(args) == 1 {
				src = args[0]
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
	cmd.Flags().StringVarP(&out, "output", "o", "report.html", `output file ("-" for stdout)`)
	return cmd
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
