package report

import (
	"fmt"
	"html/template"
	"image/color"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// StrategyView is the Strategies section: the table and its plots.
type StrategyView struct {
	Columns []StrategyColumn
	Rows    []StrategyRow
	// Legend gives the colours of the outcome plot.
	Legend []OutcomeCount
	// Compare is set on a comparison page: a column per run and
	// strategy.
	Compare bool
	// OutcomeSVG stacks each column's outcome shares; RecoverySVG sets
	// the p50 and p95 recovery after a cut side by side; TimeSVG the
	// median time to the new version with and without a cut; FlashSVG
	// the bytes programmed and erased per update. Empty when nothing
	// was measured.
	OutcomeSVG, RecoverySVG, TimeSVG, FlashSVG template.HTML
}

// buildStrategyView formats cols and draws their plots.
func buildStrategyView(cols []StrategyColumn, compare bool) (*StrategyView, error) {
	v := &StrategyView{Columns: cols, Rows: StrategyRows(cols), Compare: compare}
	for _, o := range SurvivalOutcomes {
		v.Legend = append(v.Legend, OutcomeCount{Outcome: o, Color: hex(outcomeColor(o))})
	}
	var err error
	if v.OutcomeSVG, err = plotStrategyOutcomes(cols); err != nil {
		return nil, err
	}
	ms := func(f Figure, q float64) (float64, bool) {
		if f.N == 0 {
			return 0, false
		}
		if q == 95 {
			return f.P95, true
		}
		return f.P50, true
	}
	if v.RecoverySVG, err = plotStrategyBars("Recovery after a cut (power-on to new version running)", "ms", cols, []barSeries{
		{"p50", seriesColor(0), func(c StrategyColumn) (float64, bool) { return ms(c.AfterCut, 50) }},
		{"p95", seriesColor(4), func(c StrategyColumn) (float64, bool) { return ms(c.AfterCut, 95) }},
	}); err != nil {
		return nil, err
	}
	if v.TimeSVG, err = plotStrategyBars("Time to the new version running (median)", "ms", cols, []barSeries{
		{"no cut (update start)", seriesColor(2), func(c StrategyColumn) (float64, bool) { return ms(c.NoCut, 50) }},
		{"after a cut (power-on)", seriesColor(1), func(c StrategyColumn) (float64, bool) { return ms(c.AfterCut, 50) }},
	}); err != nil {
		return nil, err
	}
	kib := func(f Figure) (float64, bool) { return f.P50 / 1024, f.N > 0 }
	if v.FlashSVG, err = plotStrategyBars("Flash written per update (median)", "KiB", cols, []barSeries{
		{"programmed", seriesColor(0), func(c StrategyColumn) (float64, bool) { return kib(c.Programmed) }},
		{"erased", seriesColor(5), func(c StrategyColumn) (float64, bool) { return kib(c.Erased) }},
	}); err != nil {
		return nil, err
	}
	return v, nil
}

// strategyNames are the columns' labels bottom to top, for a nominal y
// axis with the first column on top.
func strategyNames(cols []StrategyColumn) []string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[len(cols)-1-i] = c.Label
	}
	return names
}

func strategyPlotHeight(n, series int) vg.Length {
	return vg.Points(80 + float64(n)*float64(12+10*series))
}

// plotStrategyOutcomes draws one horizontal bar per column, its cut
// cycles' outcome shares stacked (updated, rolled-back, stuck-recovery,
// bricked from the left); the page's legend gives the colours.
func plotStrategyOutcomes(cols []StrategyColumn) (template.HTML, error) {
	title := "Outcome of the cuts per strategy"
	p := newPlot(title, "% of the cuts", "")
	n := len(cols)
	p.Add(plotter.NewGrid())
	var prev *plotter.BarChart
	for _, o := range SurvivalOutcomes {
		vs := make(plotter.Values, n)
		for i, c := range cols {
			vs[n-1-i] = 100 * c.Share(o).Share
		}
		bc, err := plotter.NewBarChart(vs, vg.Points(16))
		if err != nil {
			return "", fmt.Errorf("report: %s: %w", title, err)
		}
		bc.Horizontal = true
		bc.Color = outcomeColor(o)
		bc.LineStyle.Width = 0
		if prev != nil {
			bc.StackOn(prev)
		}
		p.Add(bc)
		prev = bc
	}
	p.NominalY(strategyNames(cols)...)
	p.X.Min, p.X.Max = 0, 100
	return svg(p, plotWidth, strategyPlotHeight(n, 1), title)
}

// barSeries is one bar of each column on a grouped bar plot; get reports
// false when the column has no value (no bar is drawn).
type barSeries struct {
	name  string
	color color.RGBA
	get   func(StrategyColumn) (float64, bool)
}

// plotStrategyBars draws, per column, one horizontal bar per series side
// by side; nothing when no column has a value.
func plotStrategyBars(title, unit string, cols []StrategyColumn, series []barSeries) (template.HTML, error) {
	p := newPlot(title, unit, "")
	n := len(cols)
	w := vg.Points(10)
	p.Add(plotter.NewGrid())
	top := 0.0
	any := false
	for j, s := range series {
		vs := make(plotter.Values, n)
		for i, c := range cols {
			if v, ok := s.get(c); ok && v >= 0 {
				vs[n-1-i] = v
				top = max(top, v)
				any = true
			}
		}
		bc, err := plotter.NewBarChart(vs, w)
		if err != nil {
			return "", fmt.Errorf("report: %s: %w", title, err)
		}
		bc.Horizontal = true
		bc.Color = s.color
		bc.LineStyle.Width = 0
		// The first series on top within each column.
		bc.Offset = w * vg.Length(float64(len(series)-1)/2-float64(j))
		p.Add(bc)
		p.Legend.Add(s.name, bc)
	}
	if !any {
		return "", nil
	}
	p.NominalY(strategyNames(cols)...)
	p.Legend.Top = true
	p.X.Min = 0
	// Room on the right for the legend.
	p.X.Max = max(top*1.45, 1e-3)
	return svg(p, plotWidth, strategyPlotHeight(n, len(series)), title)
}
