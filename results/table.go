package results

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// outcomeHeads are the short column heads of the outcomes in a table;
// outcomeHead falls back to the outcome's name for one missing here, so
// an outcome added to Outcomes always gets its column.
var outcomeHeads = map[Outcome]string{
	Updated:       "UPDATED",
	RolledBack:    "ROLLBACK",
	StuckRecovery: "STUCK",
	Bricked:       "BRICKED",
	MissedCut:     "MISSED",
	InfraError:    "INFRA",
}

func outcomeHead(o Outcome) string {
	if h, ok := outcomeHeads[o]; ok {
		return h
	}
	return strings.ToUpper(string(o))
}

// WriteTable writes the end-of-run table: one row per board with its
// cycles, the count of each outcome, recovery (power-on to new version)
// p50/p95, trigger latency p99 and verdict; a total row; then the
// failures, at most ten, each with its reason (for a missed cut, why the
// cut did not land).
func WriteTable(w io.Writer, s Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"BOARD", "CYCLES"}
	for _, o := range Outcomes {
		head = append(head, outcomeHead(o))
	}
	head = append(head, "RECOV p50", "RECOV p95", "TRIG p99", "VERDICT")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	row := func(name string, cycles int, outcomes map[Outcome]int, rec, trig DurationStats, v Verdict) {
		cells := []string{name, fmt.Sprint(cycles)}
		for _, o := range Outcomes {
			cells = append(cells, fmt.Sprint(outcomes[o]))
		}
		cells = append(cells, fmtStat(rec.N, rec.P50Ms), fmtStat(rec.N, rec.P95Ms), fmtStat(trig.N, trig.P99Ms), string(v))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	for _, b := range s.PerBoard {
		row(b.Board, b.Cycles, b.Outcomes, b.RecoveryVersion, b.TriggerLatency, b.Verdict)
	}
	if len(s.PerBoard) != 1 {
		row("total", s.Cycles, s.Outcomes, s.RecoveryVersion, s.TriggerLatency, s.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("results: table: %w", err)
	}
	for _, b := range s.PerBoard {
		if line := energyLine(b); line != "" {
			fmt.Fprintln(w, line)
		}
		if line := flashLine(b); line != "" {
			fmt.Fprintln(w, line)
		}
	}
	const shown = 10
	for i, f := range s.Failures {
		if i == shown {
			fmt.Fprintf(w, "  … and %d more failures\n", len(s.Failures)-shown)
			break
		}
		line := fmt.Sprintf("  FAIL %s cycle %d (%s): %s", f.Board, f.Cycle, f.Plan, f.Outcome)
		if why := failureWhy(f.Missed, f.Reason); why != "" {
			line += ": " + why
		}
		for _, fd := range f.Findings {
			line += "; SECURITY " + fd.Kind + ": " + fd.Detail
		}
		fmt.Fprintln(w, line)
	}
	sec := ""
	if n := s.Findings[FindingNonceReuse] + s.Findings[FindingReplayAccepted]; n > 0 {
		sec = fmt.Sprintf(", security findings: %d (nonce reuse %d, replay accepted %d)", n, s.Findings[FindingNonceReuse], s.Findings[FindingReplayAccepted])
	}
	_, err := fmt.Fprintf(w, "verdict: %s (%d cycles, %d failed, infra errors: %d, missed cuts: %d%s)\n",
		s.Verdict, s.Cycles, len(s.Failures), s.InfraErrors, s.MissedCuts, sec)
	if err != nil {
		return fmt.Errorf("results: table: %w", err)
	}
	return nil
}

// failureWhy joins why a cut missed and the cycle's reason, each once:
// the executor may put the same words in both.
func failureWhy(missed, reason string) string {
	switch {
	case missed == "" || missed == reason:
		return reason
	case reason == "":
		return missed
	}
	return missed + "; " + reason
}

// fmtStat renders milliseconds as a short duration, or "-" without data.
func fmtStat(n int, msec float64) string {
	if n == 0 {
		return "-"
	}
	return FormatDuration(time.Duration(msec * float64(time.Millisecond)))
}

// FormatDuration renders d with three significant digits or so: 42µs,
// 1.25ms, 850ms, 3.20s, 2m05s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "-" + FormatDuration(-d)
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
}

// energyLine is a board's energy under the table: "  energy sim-safe:
// update 41.2 mJ p50 (20), with a cut 63.0 mJ p50 (10), recovery 12.1 mJ
// p50 (10), peak 9.80 mA"; "" when its supply does not measure.
func energyLine(b BoardSummary) string {
	e := b.Energy
	if e == nil {
		return ""
	}
	var parts []string
	for _, p := range []struct {
		what string
		st   EnergyStats
	}{{"update", e.Update}, {"with a cut", e.UpdateCut}, {"recovery", e.Recovery}} {
		if p.st.N > 0 {
			parts = append(parts, fmt.Sprintf("%s %s p50 (%d)", p.what, FormatEnergy(p.st.P50MJ), p.st.N))
		}
	}
	parts = append(parts, fmt.Sprintf("peak %.2f mA", 1e3*e.PeakAmps))
	return "  energy " + b.Board + ": " + strings.Join(parts, ", ")
}

// flashLine is what a board's cycles cost its probe and its flash, under
// the table: "  probe sim-safe: 0 uses, 0s (0.00 uses, 0s per cycle);
// flash: 1000 sector erases (5.00 per cycle)"; "" for a board without
// cycles, or one that never used its probe on a device that does not
// count its erases (nothing to say). The flash part is left out when the
// device does not count its erases.
func flashLine(b BoardSummary) string {
	f := b.Flash
	if b.Cycles == 0 || (f.ProbeUses == 0 && f.ErasesCycles == 0) {
		return ""
	}
	per := func(ms float64) string {
		if ms == 0 {
			return "0s"
		}
		return FormatDuration(time.Duration(ms * float64(time.Millisecond)))
	}
	uses := "uses"
	if f.ProbeUses == 1 {
		uses = "use"
	}
	line := fmt.Sprintf("  probe %s: %d %s, %s (%.2f uses, %s per cycle)", b.Board, f.ProbeUses, uses, per(f.ProbeMs), f.ProbeUsesPerCycle, per(f.ProbeMsPerCycle))
	if f.ErasesCycles > 0 {
		line += fmt.Sprintf("; flash: %d sector erases (%.2f per cycle)", f.Erases, f.ErasesPerCycle)
	}
	return line
}

// FormatEnergy renders millijoules with three significant digits or so:
// 0.512 mJ, 41.2 mJ, 1.25 J.
func FormatEnergy(mj float64) string {
	switch {
	case mj >= 1000:
		return fmt.Sprintf("%.3g J", mj/1000)
	case mj >= 100:
		return fmt.Sprintf("%.0f mJ", mj)
	}
	return fmt.Sprintf("%.3g mJ", mj)
}
