// Package report renders a campaign report: one self-contained HTML file
// with the run's header and outcome counts, the strategy comparison
// (one column per update strategy: survival of cuts, time to the new
// version, flash cost), the outcome map (where in the update each board
// is fragile), the cut points (planned beside
// where the power went), recovery-time distributions, transfer figures,
// the failure-rate trend across runs of the same job, and the timeline
// of each failed cycle.
//
// Plots are drawn with gonum/plot into SVG and embedded inline; the page
// has no script, loads nothing from the network and opens from a file.
// Everything that came from a device (console lines, reasons) is escaped
// by html/template. The report aggregates, so a soak run of thousands of
// cycles stays a file of a few hundred kilobytes: only the first
// MaxFailedShown failed cycles get their own timeline.
//
// Load reads the input from a results database or a run's output
// directory; Build shapes it; Render writes the HTML. ResolveRun and
// WriteComparison put several runs side by side in the form of the
// strategy comparison.
package report

import (
	"bytes"
	"cmp"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/results"
)

// OutcomeCount is one outcome's count in the header.
type OutcomeCount struct {
	Outcome results.Outcome
	Count   int
	Color   string
}

// BoardHeader is one board's line in the header.
type BoardHeader struct {
	Board, Profile string
	Firmware       []string
	Cycles         int
	Planned        int
	Outcomes       []OutcomeCount
	Verdict        results.Verdict
	// Flash is what the board's cycles cost its probe and its flash.
	Flash results.BoardFlash
}

// Header is the report's first section.
type Header struct {
	Job, JobFile, RunID, Host, Version, Status string
	Started                                    time.Time
	Duration                                   time.Duration // zero when unknown
	Verdict                                    results.Verdict
	Cycles, Planned, Failures, InfraErrors     int
	MissedCuts                                 int
	// Findings counts the run's security findings (every kind).
	Findings int
	Outcomes []OutcomeCount
	Boards   []BoardHeader
	Firmware []string
}

// GridView is an outcome map with its plot.
type GridView struct {
	Grid
	SVG template.HTML
}

// FailedView is a failed cycle with its plot.
type FailedView struct {
	FailedCycle
	SVG template.HTML
}

// Report is a shaped report, ready to render.
type Report struct {
	Title     string
	Generated time.Time
	Source    string
	Header    Header
	Legend    []OutcomeCount

	// Strategies compares the run's update strategies; nil when the run
	// has fewer than two strategy columns.
	Strategies *StrategyView

	Grids []GridView

	// CutTallies count each board's planned cuts; CutRows list cut
	// points, planned beside actual: all of them when CutRowsAll, else
	// those that missed or ran again, CutRowsMore of which are left out.
	CutTallies  []CutTally
	CutRows     []results.CutPoint
	CutRowsAll  bool
	CutRowsMore int

	Recovery              []Board
	AnswerSVG, VersionSVG template.HTML
	// Secure sums up each board's secured recoveries and findings;
	// SecureRows list cycles (those with findings first), SecureMore of
	// which are left out.
	Secure                []SecureBoard
	SecureRows            []SecureRow
	SecureMore            int
	Throughput            []Throughput
	ThroughputSVG, RTTSVG template.HTML
	RTT                   []RTTSeries
	// Current is each measuring supply's readings per cycle (with its
	// plot); Energy the energy table.
	Current                   []CurrentSeries
	Energy                    []EnergyRow
	Resent                    []ResentSeries
	ResentSVGs                []template.HTML
	ResentCuts, ResentMax     int
	ResentMean                float64
	Trend                     []RunStat
	TrendOmitted              int
	TrendRateSVG, TrendRecSVG template.HTML

	Failed      []FailedView
	FailedTotal int
	FailedMore  int
}

// Build shapes in into a report and draws its plots.
func Build(in Input) (*Report, error) {
	s := in.Summary
	boards := s.Boards
	if len(boards) == 0 {
		boards = in.Run.Boards
	}
	tl := indexEvents(in.Events)
	prof := profiles(in.Events)
	labels := map[string]string{}
	for _, b := range boards {
		if p := prof[b]; p != "" {
			labels[b] = b + " (" + p + ")"
		}
	}
	r := &Report{
		Title:     fmt.Sprintf("fudbench report: %s, run %s", s.Job, s.RunID),
		Generated: time.Now().UTC(),
		Source:    in.Source,
	}
	for _, o := range results.Outcomes {
		r.Legend = append(r.Legend, OutcomeCount{Outcome: o, Color: hex(outcomeColor(o))})
	}
	r.Header = header(in, prof)

	if cols := Strategies(in); len(cols) >= 2 {
		var err error
		if r.Strategies, err = buildStrategyView(cols, false); err != nil {
			return nil, err
		}
	}

	for _, g := range BuildGrids(boards, labels, in.Cycles, tl) {
		v := GridView{Grid: g}
		var err error
		if v.SVG, err = plotGrid(g); err != nil {
			return nil, err
		}
		r.Grids = append(r.Grids, v)
	}

	r.CutTallies, r.CutRows, r.CutRowsAll, r.CutRowsMore = buildCuts(boards, in.Cycles)

	r.Recovery = buildRecovery(boards, labels, in.Cycles)
	r.Secure, r.SecureRows, r.SecureMore = buildSecure(boards, in.Cycles)
	var err error
	if r.AnswerSVG, _, err = plotBoxes("Power-on to answering", r.Recovery, func(b Board) []float64 { return b.Answer }); err != nil {
		return nil, err
	}
	if r.VersionSVG, _, err = plotBoxes("Power-on to new version running", r.Recovery, func(b Board) []float64 { return b.Version }); err != nil {
		return nil, err
	}

	r.Throughput = buildThroughput(boards, in.Cycles)
	if len(r.Throughput) > 0 {
		if r.ThroughputSVG, err = plotThroughput(r.Throughput); err != nil {
			return nil, err
		}
	}
	r.RTT = buildRTT(boards, in.Events)
	if len(r.RTT) > 0 {
		if r.RTTSVG, err = plotRTT(r.RTT); err != nil {
			return nil, err
		}
	}
	r.Current = buildCurrent(boards, in.Cycles, tl)
	for i := range r.Current {
		if r.Current[i].SVG, err = plotCurrent(r.Current[i]); err != nil {
			return nil, err
		}
	}
	r.Energy = buildEnergy(s)
	r.Resent = buildResent(boards, in.Cycles, tl)
	for _, axis := range []string{AxisBlock, AxisTime} {
		svg, ok, err := plotResent(r.Resent, axis)
		if err != nil {
			return nil, err
		}
		if ok {
			r.ResentSVGs = append(r.ResentSVGs, svg)
		}
	}
	sum := 0
	for _, c := range in.Cycles {
		if c.Cut != nil {
			r.ResentCuts++
			sum += c.BlocksResent
			r.ResentMax = max(r.ResentMax, c.BlocksResent)
		}
	}
	if r.ResentCuts > 0 {
		r.ResentMean = float64(sum) / float64(r.ResentCuts)
	}

	r.Trend = in.History
	if len(r.Trend) > MaxTrendRuns {
		r.TrendOmitted = len(r.Trend) - MaxTrendRuns
		r.Trend = r.Trend[r.TrendOmitted:]
	}
	if len(r.Trend) > 0 {
		if r.TrendRateSVG, err = plotTrendRate(r.Trend); err != nil {
			return nil, err
		}
		if r.TrendRecSVG, _, err = plotTrendRecovery(r.Trend); err != nil {
			return nil, err
		}
	}

	rank := map[string]int{}
	for i, b := range boards {
		rank[b] = i
	}
	var failed []results.Cycle
	for _, c := range in.Cycles {
		if cycleFailed(c) {
			failed = append(failed, c)
		}
	}
	slices.SortStableFunc(failed, func(a, b results.Cycle) int {
		if ra, rb := rank[a.Board], rank[b.Board]; ra != rb {
			return ra - rb
		}
		return a.Cycle - b.Cycle
	})
	r.FailedTotal = len(failed)
	if len(failed) > MaxFailedShown {
		r.FailedMore = len(failed) - MaxFailedShown
		failed = failed[:MaxFailedShown]
	}
	for _, c := range failed {
		evs := slices.Clone(tl[cycleKey{c.Board, c.Cycle}])
		slices.SortStableFunc(evs, func(a, b results.Event) int { return cmp.Compare(a.T, b.T) })
		fc := FailedCycle{Cycle: c, Events: evs}
		fc.Items, fc.Truncated = buildItems(evs)
		v := FailedView{FailedCycle: fc}
		if v.SVG, err = plotCycle(fc); err != nil {
			return nil, err
		}
		r.Failed = append(r.Failed, v)
	}
	return r, nil
}

func header(in Input, prof map[string]string) Header {
	s := in.Summary
	h := Header{
		Job: s.Job, JobFile: s.JobFile, RunID: s.RunID, Host: s.Host, Version: s.Version,
		Status: in.Run.Status, Started: s.Started, Verdict: s.Verdict,
		Cycles: s.Cycles, Planned: s.Planned, Failures: len(s.Failures), InfraErrors: s.InfraErrors,
		MissedCuts: s.MissedCuts, Firmware: in.Firmware,
		Findings: s.Findings[results.FindingNonceReuse] + s.Findings[results.FindingReplayAccepted],
	}
	if !in.Run.Finished.IsZero() && !s.Started.IsZero() {
		h.Duration = in.Run.Finished.Sub(s.Started)
	}
	counts := func(m map[results.Outcome]int) []OutcomeCount {
		var out []OutcomeCount
		for _, o := range results.Outcomes {
			out = append(out, OutcomeCount{Outcome: o, Count: m[o], Color: hex(outcomeColor(o))})
		}
		return out
	}
	h.Outcomes = counts(s.Outcomes)
	vers := deviceVersions(in.Events)
	for _, b := range s.PerBoard {
		h.Boards = append(h.Boards, BoardHeader{Board: b.Board, Profile: prof[b.Board], Firmware: vers[b.Board],
			Cycles: b.Cycles, Planned: b.Planned, Outcomes: counts(b.Outcomes), Verdict: b.Verdict, Flash: b.Flash})
	}
	return h
}

//go:embed report.html.tmpl
var pageText string

// pages parses the report's templates once, when a page is first drawn:
// commands that never draw one do not pay for it at start-up.
var pages = sync.OnceValue(func() *template.Template {
	t := template.Must(template.New("report").Funcs(funcs).Parse(pageText))
	template.Must(t.New("strategies").Parse(strategiesText))
	template.Must(t.New("compare").Parse(compareText))
	return t
})

var funcs = template.FuncMap{
	"ms":        fmtMs,
	"pct":       func(f float64) string { return fmt.Sprintf("%.1f %%", 100*f) },
	"kibps":     func(bps float64) string { return fmt.Sprintf("%.1f KiB/s", bps/1024) },
	"dur":       func(d time.Duration) string { return results.FormatDuration(d) },
	"utc":       func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 MST") },
	"join":      strings.Join,
	"color":     func(o results.Outcome) string { return hex(outcomeColor(o)) },
	"f1":        func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"add":       func(a, b int) int { return a + b },
	"blockOr":   blockOr,
	"hasPrefix": strings.HasPrefix,
	"mj": func(n int, mj float64) string {
		if n == 0 {
			return "–"
		}
		return results.FormatEnergy(mj)
	},
	"ma": func(a float64) string { return fmt.Sprintf("%.2f mA", 1e3*a) },
}

//go:embed strategies.html.tmpl
var strategiesText string

//go:embed compare.html.tmpl
var compareText string

func blockOr(v int64) string {
	if v < 0 {
		return "–"
	}
	return fmt.Sprint(v)
}

// Render writes r as one HTML page.
func Render(w io.Writer, r *Report) error {
	if err := pages().ExecuteTemplate(w, "report", r); err != nil {
		return fmt.Errorf("report: render: %w", err)
	}
	return nil
}

// WriteFile builds the report of in and writes it to path atomically
// (a reader never sees half a page); "-" writes to stdout.
func WriteFile(path string, in Input) error {
	r, err := Build(in)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := Render(&b, r); err != nil {
		return err
	}
	return writePage(path, b.Bytes())
}

// writePage writes a page to path atomically; "-" writes to stdout.
func writePage(path string, page []byte) error {
	if path == "-" {
		if _, err := os.Stdout.Write(page); err != nil {
			return fmt.Errorf("report: write stdout: %w", err)
		}
		return nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	_, err = f.Write(page)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("report: write %s: %w", path, err)
	}
	return nil
}
