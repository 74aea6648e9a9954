package report

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fudbench/fudbench/results"
)

// The strategy comparison: one column per update strategy (on a
// comparison page, per run and strategy) with how its cut cycles ended,
// the worst cut point found, the time to the new version with and
// without a cut, and what the update cost in flash.

// Attributes of device and flash.cost events (see results.DeviceInfo and
// results.FlashCost).
const (
	attrStrategy   = "strategy"
	attrSpace      = "space"
	attrCache      = "cache"
	attrProgrammed = "programmed"
	attrErased     = "erased"
	attrMaxErases  = "max_erases"
	attrBootOps    = "boot_ops"
)

// Missing is what the strategy table shows for a figure nothing measured:
// never a zero.
const Missing = "—"

// SurvivalOutcomes are the outcomes of a cut cycle the strategy table
// gives shares of, mildest first. Bench failures (missed cuts, infra
// errors) tested nothing and are counted apart.
var SurvivalOutcomes = []results.Outcome{results.Updated, results.RolledBack, results.StuckRecovery, results.Bricked}

// OutcomeShare is the share of a column's cut cycles that ended in one
// outcome: Count of N, Share = Count/N, and its 95 % Wilson interval
// [Lo, Hi]. With N = 0 nothing is known: Share is 0 and the interval
// [0, 1].
type OutcomeShare struct {
	Outcome       results.Outcome
	Count, N      int
	Share, Lo, Hi float64
}

// WorstCut is the planned cut with the most severe outcome a column's
// cut cycles ended in (bricked, then stuck-recovery, then rolled-back).
// Plan is empty when none was found: every cut ended updated, or there
// was no cut.
type WorstCut struct {
	Plan    string // the cycle's planned cut, as in Cycle.Plan
	Outcome results.Outcome
	// Count is how many cycles at Plan ended in Outcome, of Of cycles cut
	// at Plan; Plans how many planned cuts had a cycle end in Outcome.
	Count, Of, Plans int
}

// Found reports whether a cut point ended worse than updated.
func (w WorstCut) Found() bool { return w.Plan != "" }

// Figure sums up the samples of one quantity: N samples (0: nothing
// measured), their nearest-rank median and 95th percentile, smallest and
// largest.
type Figure struct {
	N                  int
	P50, P95, Min, Max float64
}

// FigureOf sums up vs.
func FigureOf(vs []float64) Figure {
	if len(vs) == 0 {
		return Figure{}
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return Figure{N: len(s), P50: s[nearestRank(50, len(s))], P95: s[nearestRank(95, len(s))], Min: s[0], Max: s[len(s)-1]}
}

// StrategyColumn is one column of the strategy comparison: the boards of
// one run that share an update strategy. Durations are in milliseconds,
// flash figures in bytes (MaxErases and BootOps are counts).
type StrategyColumn struct {
	// Label heads the column: the strategy in a run's report; the run ID,
	// with the strategy when the run has several, on a comparison page.
	Label string
	// Strategy is the label the boards reported in their device event;
	// a board that reported none is a column of its own named by the
	// board, with Reported false.
	Strategy string
	Reported bool
	RunID    string
	Job      string
	Started  time.Time
	Boards   []string
	// Cycles counts every cycle of the column's boards.
	Cycles int
	// Cuts counts the cycles with a planned cut (a plan other than
	// "none") that tested the device: the base of the shares. Missed and
	// Infra count the cycles with a planned cut left out of it because
	// the bench failed (missed-cut, infra-error).
	Cuts, Missed, Infra int
	// Outcomes holds one share per SurvivalOutcomes, in that order.
	Outcomes []OutcomeShare
	Worst    WorstCut
	// NoCut is update.start to the new version answering on cycles
	// without a cut (update.verified events), AfterCut power-on after
	// the cut to the new version running on the cut cycles that reached
	// it: milliseconds.
	NoCut, AfterCut Figure
	// Space is the flash beyond the bootloader the strategy needs for
	// the image, Cache what the device keeps in flash to complete an
	// interrupted update: one sample per board that reported it.
	Space, Cache Figure
	// Programmed and Erased are bytes per update, MaxErases the most
	// erases of one sector during an update, BootOps the device's flash
	// operations from the last block to the new image running: one
	// sample per flash.cost event.
	Programmed, Erased, MaxErases, BootOps Figure
}

// Share returns the column's share of cut cycles that ended in o.
func (c StrategyColumn) Share(o results.Outcome) OutcomeShare {
	for _, s := range c.Outcomes {
		if s.Outcome == o {
			return s
		}
	}
	lo, hi := Wilson(0, c.Cuts, Z95)
	return OutcomeShare{Outcome: o, N: c.Cuts, Lo: lo, Hi: hi}
}

// FindColumn returns the first column of strategy (or, for a board that
// reported none, of that board), or false.
func FindColumn(cols []StrategyColumn, strategy string) (StrategyColumn, bool) {
	i := slices.IndexFunc(cols, func(c StrategyColumn) bool { return c.Strategy == strategy })
	if i < 0 {
		return StrategyColumn{}, false
	}
	return cols[i], true
}

// Strategies shapes the strategy columns of one run: one per strategy
// label the boards reported (in their first device event), in the order
// of the run's boards; a board that reported none is its own column,
// named by the board.
func Strategies(in Input) []StrategyColumn {
	boards := slices.Clone(in.Summary.Boards)
	if len(boards) == 0 {
		boards = slices.Clone(in.Run.Boards)
	}
	for _, c := range in.Cycles {
		if !slices.Contains(boards, c.Board) {
			boards = append(boards, c.Board)
		}
	}
	info := map[string]results.Event{}
	for _, e := range in.Events {
		if e.Kind != results.DeviceInfo {
			continue
		}
		if _, ok := info[e.Board]; !ok && strategyOf(e) != "" {
			info[e.Board] = e
		}
	}
	type key struct {
		reported bool
		name     string
	}
	var keys []key
	members := map[key][]string{}
	for _, b := range boards {
		k := key{false, b}
		if e, ok := info[b]; ok {
			k = key{true, strategyOf(e)}
		}
		if _, ok := members[k]; !ok {
			keys = append(keys, k)
		}
		members[k] = append(members[k], b)
	}

	byBoard := map[string][]results.Cycle{}
	cycleOf := map[cycleKey]results.Cycle{}
	for _, c := range in.Cycles {
		byBoard[c.Board] = append(byBoard[c.Board], c)
		cycleOf[cycleKey{c.Board, c.Cycle}] = c
	}
	evByBoard := map[string][]results.Event{}
	for _, e := range in.Events {
		switch e.Kind {
		case results.FlashCost, results.UpdateVerified:
			evByBoard[e.Board] = append(evByBoard[e.Board], e)
		}
	}

	var cols []StrategyColumn
	for _, k := range keys {
		col := StrategyColumn{Label: k.name, Strategy: k.name, Reported: k.reported, RunID: in.Summary.RunID,
			Job: in.Summary.Job, Started: in.Summary.Started, Boards: members[k]}
		col.RunID = cmp.Or(col.RunID, in.Run.ID)
		col.Job = cmp.Or(col.Job, in.Run.Job)
		if col.Started.IsZero() {
			col.Started = in.Run.Started
		}
		var cut []results.Cycle
		var space, cache, noCut, after, prog, erased, maxErases, bootOps []float64
		for _, b := range col.Boards {
			for _, c := range byBoard[b] {
				col.Cycles++
				if !plannedCut(c) {
					continue
				}
				switch c.Outcome {
				case results.MissedCut:
					col.Missed++
				case results.InfraError:
					col.Infra++
				default:
					cut = append(cut, c)
					if c.RecoveryVersion > 0 {
						after = append(after, msOf(c.RecoveryVersion))
					}
				}
			}
			if e, ok := info[b]; ok {
				space = appendAttr(space, e, attrSpace)
				cache = appendAttr(cache, e, attrCache)
			}
			for _, e := range evByBoard[b] {
				switch e.Kind {
				case results.UpdateVerified:
					c, ok := cycleOf[cycleKey{e.Board, e.Cycle}]
					if ok && !plannedCut(c) && e.Dur > 0 {
						noCut = append(noCut, msOf(e.Dur))
					}
				case results.FlashCost:
					prog = appendAttr(prog, e, attrProgrammed)
					erased = appendAttr(erased, e, attrErased)
					maxErases = appendAttr(maxErases, e, attrMaxErases)
					bootOps = appendAttr(bootOps, e, attrBootOps)
				}
			}
		}
		col.Cuts = len(cut)
		for _, o := range SurvivalOutcomes {
			n := 0
			for _, c := range cut {
				if c.Outcome == o {
					n++
				}
			}
			s := OutcomeShare{Outcome: o, Count: n, N: col.Cuts}
			if col.Cuts > 0 {
				s.Share = float64(n) / float64(col.Cuts)
			}
			s.Lo, s.Hi = Wilson(n, col.Cuts, Z95)
			col.Outcomes = append(col.Outcomes, s)
		}
		col.Worst = worstCut(cut)
		col.NoCut, col.AfterCut = FigureOf(noCut), FigureOf(after)
		col.Space, col.Cache = FigureOf(space), FigureOf(cache)
		col.Programmed, col.Erased = FigureOf(prog), FigureOf(erased)
		col.MaxErases, col.BootOps = FigureOf(maxErases), FigureOf(bootOps)
		cols = append(cols, col)
	}
	return cols
}

// CompareStrategies shapes the columns of several runs side by side: each
// run's strategy columns, labelled with the run ID, and with the strategy
// as well when the run has several.
func CompareStrategies(ins []Input) []StrategyColumn {
	var out []StrategyColumn
	for _, in := range ins {
		cols := Strategies(in)
		for _, c := range cols {
			c.Label = c.RunID
			if len(cols) > 1 {
				c.Label += " · " + c.Strategy
			}
			out = append(out, c)
		}
	}
	return out
}

// strategyOf is a device event's strategy label.
func strategyOf(e results.Event) string {
	return strings.TrimSpace(cmp.Or(e.Attrs[attrStrategy], e.Text))
}

// appendAttr appends e's attribute a when it is a count (a whole number,
// not negative).
func appendAttr(vs []float64, e results.Event, a string) []float64 {
	s, ok := e.Attrs[a]
	if !ok {
		return vs
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return vs
	}
	return append(vs, float64(n))
}

// worstCut finds the planned cut whose cycles ended worst: the most
// severe outcome of any cycle, then the plan with the most cycles ending
// so, then the plan seen first.
func worstCut(cut []results.Cycle) WorstCut {
	var w WorstCut
	worst := severity(results.Updated)
	for _, c := range cut {
		worst = max(worst, severity(c.Outcome))
	}
	if worst == severity(results.Updated) {
		return w
	}
	type tally struct{ n, of int }
	by := map[string]*tally{}
	var plans []string
	for _, c := range cut {
		t := by[c.Plan]
		if t == nil {
			t = &tally{}
			by[c.Plan] = t
			plans = append(plans, c.Plan)
		}
		t.of++
		if severity(c.Outcome) == worst {
			t.n++
			w.Outcome = c.Outcome
		}
	}
	for _, p := range plans {
		t := by[p]
		if t.n == 0 {
			continue
		}
		w.Plans++
		if t.n > w.Count {
			w.Plan, w.Count, w.Of = p, t.n, t.of
		}
	}
	return w
}

// StrategyRow is one row of the strategy table, its cells formatted, one
// per column; Missing where nothing was measured.
type StrategyRow struct {
	// Key names the row for scripts and tests ("cuts", "share-bricked",
	// "worst-cut", "recovery-p95", "space", ...).
	Key string
	// Group is the row's heading when it opens a group of rows.
	Group string
	Name  string
	Help  string // what the row means
	Cells []string
}

// StrategyRows formats the strategy table: one row per figure, one cell
// per column.
func StrategyRows(cols []StrategyColumn) []StrategyRow {
	var rows []StrategyRow
	add := func(group, key, name, help string, cell func(StrategyColumn) string) {
		r := StrategyRow{Key: key, Group: group, Name: name, Help: help}
		for _, c := range cols {
			r.Cells = append(r.Cells, cell(c))
		}
		rows = append(rows, r)
	}
	add("", "strategy", "strategy", "the update strategy the boards reported (or the board, when it reported none)", func(c StrategyColumn) string {
		if !c.Reported {
			return "(not reported)"
		}
		return c.Strategy
	})
	add("", "boards", "boards", "the boards of this column", func(c StrategyColumn) string { return strings.Join(c.Boards, ", ") })
	add("", "cycles", "cycles", "every cycle of these boards, with and without a cut", func(c StrategyColumn) string { return strconv.Itoa(c.Cycles) })

	add("Survival of a power cut", "cuts", "cuts", "cycles with a planned cut that tested the device (missed cuts and infra errors left out)", func(c StrategyColumn) string {
		return strconv.Itoa(c.Cuts)
	})
	for _, o := range SurvivalOutcomes {
		add("", "share-"+string(o), string(o), "share of the cuts that ended "+string(o)+", with its 95 % Wilson interval", func(c StrategyColumn) string {
			return fmtShare(c.Share(o))
		})
	}
	add("", "excluded", "bench failures", "cycles with a planned cut that did not test the device: the cut missed its point, or the bench failed", func(c StrategyColumn) string {
		if c.Missed == 0 && c.Infra == 0 {
			return "none"
		}
		var parts []string
		if c.Missed > 0 {
			parts = append(parts, plural(c.Missed, "missed cut", "missed cuts"))
		}
		if c.Infra > 0 {
			parts = append(parts, plural(c.Infra, "infra error", "infra errors"))
		}
		return strings.Join(parts, ", ")
	})
	add("", "worst-cut", "worst cut point", "the planned cut with the most severe outcome, and how many cycles cut there ended so", func(c StrategyColumn) string {
		switch {
		case c.Cuts == 0:
			return Missing
		case !c.Worst.Found():
			return "none found"
		}
		s := fmt.Sprintf("%s: %s (%d of %d)", c.Worst.Plan, c.Worst.Outcome, c.Worst.Count, c.Worst.Of)
		if c.Worst.Plans > 1 {
			s += fmt.Sprintf("; %d cut points %s", c.Worst.Plans, c.Worst.Outcome)
		}
		return s
	})

	add("Time to the new version", "time-no-cut", "no cut (median)", "update start to the new version answering, over the cycles without a cut", func(c StrategyColumn) string {
		return fmtFigure(c.NoCut, c.NoCut.P50, fmtMs, true)
	})
	add("", "recovery-p50", "after a cut (p50)", "power-on after the cut to the new version running, over the cut cycles that reached it", func(c StrategyColumn) string {
		return fmtFigure(c.AfterCut, c.AfterCut.P50, fmtMs, true)
	})
	add("", "recovery-p95", "after a cut (p95)", "power-on after the cut to the new version running, 95th percentile", func(c StrategyColumn) string {
		return fmtFigure(c.AfterCut, c.AfterCut.P95, fmtMs, false)
	})

	add("Flash cost", "space", "space needed", "flash beyond the bootloader the strategy needs for this image, as the device reported it", func(c StrategyColumn) string {
		return fmtRange(c.Space, FormatBytes)
	})
	add("", "programmed", "programmed per update", "bytes programmed during an update without a cut (median)", func(c StrategyColumn) string {
		return fmtFigure(c.Programmed, c.Programmed.P50, FormatBytes, true)
	})
	add("", "erased", "erased per update", "bytes erased during an update without a cut (median)", func(c StrategyColumn) string {
		return fmtFigure(c.Erased, c.Erased.P50, FormatBytes, true)
	})
	add("", "max-erases", "erases of one sector per update", "the most erases any one sector took during an update (median over updates): wear", func(c StrategyColumn) string {
		return fmtFigure(c.MaxErases, c.MaxErases.P50, fmtCount, true)
	})
	add("", "boot-ops", "boot flash operations", "device flash operations from the last block sent to the new image running (median)", func(c StrategyColumn) string {
		return fmtFigure(c.BootOps, c.BootOps.P50, fmtCount, true)
	})
	add("", "cache", "cache", "flash the device keeps so that an interrupted update completes on its own (recovery record and journal, or trailer and swap status)", func(c StrategyColumn) string {
		return fmtRange(c.Cache, FormatBytes)
	})
	return rows
}

// fmtShare renders a share as "25/40 · 62.5 % (47.3–75.9 %)".
func fmtShare(s OutcomeShare) string {
	if s.N == 0 {
		return Missing
	}
	return fmt.Sprintf("%d/%d · %s %% (%s–%s %%)", s.Count, s.N, pct1(s.Share), pct1(s.Lo), pct1(s.Hi))
}

func pct1(f float64) string { return strconv.FormatFloat(100*f, 'f', 1, 64) }

// fmtFigure renders v of f, with f's sample count when withN.
func fmtFigure(f Figure, v float64, format func(float64) string, withN bool) string {
	if f.N == 0 {
		return Missing
	}
	s := format(v)
	if withN {
		s += fmt.Sprintf(" (n %d)", f.N)
	}
	return s
}

// fmtRange renders a figure reported once per board: its value, or its
// range when the boards differ.
func fmtRange(f Figure, format func(float64) string) string {
	switch {
	case f.N == 0:
		return Missing
	case f.Min == f.Max:
		return format(f.Min)
	}
	return format(f.Min) + " – " + format(f.Max)
}

func fmtCount(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return strconv.FormatInt(int64(v), 10)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// FormatBytes renders a size: bytes below 1 KiB, KiB (to a tenth)
// below 1 MiB, MiB (to a hundredth) above; no trailing zeros.
func FormatBytes(b float64) string {
	unit := func(v float64, name string) string { return strconv.FormatFloat(v, 'f', -1, 64) + " " + name }
	switch {
	case math.IsNaN(b):
		return Missing
	case b < 1024:
		return fmtCount(b) + " B"
	case b < 1<<20:
		return unit(math.Round(b/1024*10)/10, "KiB")
	}
	return unit(math.Round(b/(1<<20)*100)/100, "MiB")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
