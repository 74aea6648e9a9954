package report

// The supply section: what a measuring supply read during each cycle's
// update, and the energy per update and per recovery.

import (
	"fmt"
	"html/template"
	"slices"
	"strconv"

	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/fudbench/fudbench/results"
)

// MaxCurrentCycles bounds the cycles drawn per board in the current plot;
// a longer run shows that many, spread evenly over it.
const MaxCurrentCycles = 40

// CurrentCycle is one cycle's supply readings, in seconds since its
// update started and milliamperes.
type CurrentCycle struct {
	Cycle   int
	Outcome results.Outcome
	X, Y    []float64
	// CutX is when the cut fired, in the same seconds; negative when none.
	CutX float64
}

// CurrentSeries is a board's readings, cycle by cycle.
type CurrentSeries struct {
	Board   string
	Cycles  []CurrentCycle
	Omitted int // cycles with readings not drawn
	SVG     template.HTML
}

// EnergyRow is a board's line of the energy table.
type EnergyRow struct {
	Board string
	results.BoardEnergy
}

// buildCurrent gathers each board's power.reading events per cycle, timed
// from the cycle's update.start before its first reading.
func buildCurrent(boards []string, cycles []results.Cycle, tl timeline) []CurrentSeries {
	outcome := map[cycleKey]results.Outcome{}
	for _, c := range cycles {
		outcome[cycleKey{c.Board, c.Cycle}] = c.Outcome
	}
	var out []CurrentSeries
	for _, b := range boards {
		var keys []int
		for k, evs := range tl {
			if k.board == b && slices.ContainsFunc(evs, func(e results.Event) bool { return e.Kind == results.PowerReading }) {
				keys = append(keys, k.cycle)
			}
		}
		if len(keys) == 0 {
			continue
		}
		slices.Sort(keys)
		s := CurrentSeries{Board: b}
		if len(keys) > MaxCurrentCycles {
			s.Omitted = len(keys) - MaxCurrentCycles
			picked := make([]int, 0, MaxCurrentCycles)
			for i := range MaxCurrentCycles {
				picked = append(picked, keys[i*(len(keys)-1)/(MaxCurrentCycles-1)])
			}
			keys = slices.Compact(picked)
		}
		for _, n := range keys {
			k := cycleKey{b, n}
			cc := CurrentCycle{Cycle: n, Outcome: outcome[k], CutX: -1}
			var t0 float64
			started := false
			for _, e := range tl[k] {
				sec := e.T.Seconds()
				switch e.Kind {
				case results.UpdateStart:
					if len(cc.X) == 0 {
						t0, started = sec, true
					}
				case results.CutTrigger:
					if started {
						cc.CutX = sec - t0
					}
				case results.PowerReading:
					amps, err := strconv.ParseFloat(e.Attrs["amps"], 64)
					if err != nil {
						continue
					}
					if !started {
						t0, started = sec, true
					}
					cc.X = append(cc.X, sec-t0)
					cc.Y = append(cc.Y, 1e3*amps)
				}
			}
			s.Cycles = append(s.Cycles, cc)
		}
		out = append(out, s)
	}
	return out
}

// plotCurrent draws a board's current over each cycle's update, one line
// per cycle coloured by its outcome, a cross where the cut fired.
func plotCurrent(s CurrentSeries) (template.HTML, error) {
	title := "Supply current of " + s.Board + " during each update"
	p := newPlot(title, "time since the update started (s)", "mA")
	p.Add(plotter.NewGrid())
	legend := map[results.Outcome]bool{}
	for _, c := range s.Cycles {
		if len(c.X) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(c.X))
		for i := range c.X {
			xys[i] = plotter.XY{X: c.X[i], Y: c.Y[i]}
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return "", fmt.Errorf("report: current of %s cycle %d: %w", s.Board, c.Cycle, err)
		}
		l.Color = outcomeColor(c.Outcome)
		l.Width = vg.Points(0.8)
		p.Add(l)
		if !legend[c.Outcome] {
			legend[c.Outcome] = true
			p.Legend.Add(string(c.Outcome), l)
		}
		if c.CutX >= 0 {
			y := c.Y[0]
			for i, x := range c.X {
				if x <= c.CutX {
					y = c.Y[i]
				}
			}
			sc, err := plotter.NewScatter(plotter.XYs{{X: c.CutX, Y: y}})
			if err != nil {
				return "", fmt.Errorf("report: current of %s cycle %d: %w", s.Board, c.Cycle, err)
			}
			sc.Color = l.Color
			sc.Radius = vg.Points(3)
			sc.Shape = draw.CrossGlyph{}
			p.Add(sc)
		}
	}
	p.Legend.Top = true
	p.Y.Min = 0
	return svg(p, plotWidth, 260, title)
}

// buildEnergy is the energy table: one row per board whose supply
// measured.
func buildEnergy(s results.Summary) []EnergyRow {
	var rows []EnergyRow
	for _, b := range s.PerBoard {
		if b.Energy != nil {
			rows = append(rows, EnergyRow{Board: b.Board, BoardEnergy: *b.Energy})
		}
	}
	return rows
}
