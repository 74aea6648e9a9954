package report

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fudbench/fudbench/results"
)

// The outcome map: one row per board, one column per cut position, the
// worst outcome of each cell.

// Axis kinds of the outcome map.
const (
	AxisBlock = "block"
	AxisTime  = "time"
)

// Cell is one (row, column) of the outcome map.
type Cell struct {
	X      float64 // block number, or the start of a time bin in ms
	Width  float64 // 1 block, or the time bin's width
	Counts map[results.Outcome]int
	Worst  results.Outcome
	N      int
}

// Row is one board of the outcome map.
type Row struct {
	Label string // board, with its update profile when known
	Board string
	Cells []Cell // ordered by X
	// NoCut counts the cycles of this row whose cut never fired, but for
	// missed cuts with a planned point (drawn there).
	NoCut map[results.Outcome]int
	// Fragile describes, in words, where the row failed.
	Fragile []string
}

// Grid is the outcome map of one kind of cut position.
type Grid struct {
	Axis       string // AxisBlock or AxisTime
	XMin, XMax float64
	Rows       []Row
}

// cutPos is where one cycle's power went off.
type cutPos struct {
	axis string // AxisBlock, AxisTime, or "" when no cut fired
	x    float64
}

// cycleKey identifies a cycle within a run.
type cycleKey struct {
	board string
	cycle int
}

// timeline indexes a run's events by cycle.
type timeline map[cycleKey][]results.Event

func indexEvents(evs []results.Event) timeline {
	tl := timeline{}
	for _, e := range evs {
		k := cycleKey{e.Board, e.Cycle}
		tl[k] = append(tl[k], e)
	}
	return tl
}

// mapPosition is where the outcome map shows a cycle: a missed cut at its
// planned point, fired or not, so the map shows which planned points went
// untested; any other cycle where its power was cut.
func mapPosition(c results.Cycle, evs []results.Event) cutPos {
	if c.Outcome == results.MissedCut {
		if c.PlannedBlock >= 0 {
			return cutPos{AxisBlock, float64(c.PlannedBlock)}
		}
		if d, ok := planTime(c.Plan); ok {
			return cutPos{AxisTime, msOf(d)}
		}
	}
	return cutPosition(c, evs)
}

// cutPosition: a cut planned at a time is placed at its time into the
// transfer; any other cut at the block being written when the power went
// (the block in flight, or the last one acknowledged for a cut between
// blocks).
func cutPosition(c results.Cycle, evs []results.Event) cutPos {
	if c.Cut == nil {
		return cutPos{}
	}
	if strings.Contains(c.Plan, "at_time") {
		var start, cut time.Duration = -1, -1
		for _, e := range evs {
			switch {
			case e.Kind == results.UpdateStart && start < 0:
				start = e.T
			case e.Kind == results.CutTrigger && cut < 0:
				cut = e.T
			}
		}
		if start >= 0 && cut >= start {
			return cutPos{AxisTime, msOf(cut - start)}
		}
		if d, ok := planTime(c.Plan); ok {
			return cutPos{AxisTime, msOf(d)}
		}
	}
	b := c.Cut.InFlight
	if b < 0 {
		b = c.Cut.LastAcked
	}
	return cutPos{AxisBlock, float64(max(b, 0))}
}

// planTime reads the duration of an at_time plan ("at_time 150ms",
// "random at_time 1.5s").
func planTime(plan string) (time.Duration, bool) {
	_, rest, ok := strings.Cut(plan, "at_time ")
	if !ok {
		return 0, false
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return 0, false
	}
	d, err := time.ParseDuration(f[0])
	if err != nil || d < 0 {
		return 0, false
	}
	return d, true
}

func msOf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BuildGrids shapes the outcome maps: one over blocks, one over time
// into the transfer, each only when some cycle's cut falls on it. Rows
// follow boards; labels map a board to its row label.
func BuildGrids(boards []string, labels map[string]string, cycles []results.Cycle, tl timeline) []Grid {
	type entry struct {
		c   results.Cycle
		pos cutPos
	}
	var es []entry
	for _, c := range cycles {
		es = append(es, entry{c, mapPosition(c, tl[cycleKey{c.Board, c.Cycle}])})
	}
	var grids []Grid
	for _, axis := range []string{AxisBlock, AxisTime} {
		g := Grid{Axis: axis, XMin: math.Inf(1), XMax: math.Inf(-1)}
		any := false
		for _, e := range es {
			if e.pos.axis == axis {
				any = true
				g.XMin, g.XMax = min(g.XMin, e.pos.x), max(g.XMax, e.pos.x)
			}
		}
		if !any {
			continue
		}
		width := 1.0
		if axis == AxisBlock {
			// Show the whole image, also where no cut fell.
			for _, e := range es {
				if e.c.Blocks > 0 {
					g.XMax = max(g.XMax, float64(e.c.Blocks-1))
				}
			}
			g.XMin = min(g.XMin, 0)
		} else {
			g.XMin = 0
			width = niceBin((g.XMax - g.XMin) / MaxTimeColumns)
		}
		for _, b := range boards {
			row := Row{Label: b, Board: b, NoCut: map[results.Outcome]int{}}
			if l := labels[b]; l != "" {
				row.Label = l
			}
			cells := map[int]*Cell{}
			has := false
			for _, e := range es {
				if e.c.Board != b {
					continue
				}
				if e.pos.axis == "" {
					if axis == AxisBlock {
						row.NoCut[e.c.Outcome]++
					}
					continue
				}
				if e.pos.axis != axis {
					continue
				}
				has = true
				i := int(math.Floor((e.pos.x - g.XMin) / width))
				cl := cells[i]
				if cl == nil {
					cl = &Cell{X: g.XMin + float64(i)*width, Width: width, Counts: map[results.Outcome]int{}, Worst: results.Updated}
					cells[i] = cl
				}
				cl.Counts[e.c.Outcome]++
				cl.N++
				if severity(e.c.Outcome) > severity(cl.Worst) {
					cl.Worst = e.c.Outcome
				}
			}
			if !has && len(row.NoCut) == 0 {
				continue
			}
			for _, i := range sortedKeys(cells) {
				row.Cells = append(row.Cells, *cells[i])
			}
			row.Fragile = fragile(row.Cells, axis)
			g.Rows = append(g.Rows, row)
		}
		if len(g.Rows) == 0 {
			continue // the cuts fell on boards the run does not list
		}
		if axis == AxisTime {
			g.XMax = g.XMin + width*math.Ceil((g.XMax-g.XMin)/width+1e-9)
		}
		grids = append(grids, g)
	}
	return grids
}

func sortedKeys[V any](m map[int]V) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// niceBin rounds a bin width up to 1, 2 or 5 times a power of ten.
func niceBin(w float64) float64 {
	if w <= 0 || math.IsNaN(w) || math.IsInf(w, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(w)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= w {
			return m * p
		}
	}
	return 10 * p
}

// fragile describes the runs of adjacent cells whose worst outcome was
// not updated: "bricked at blocks 0–15".
func fragile(cells []Cell, axis string) []string {
	var out []string
	for i := 0; i < len(cells); {
		c := cells[i]
		if c.Worst == results.Updated {
			i++
			continue
		}
		j := i
		for j+1 < len(cells) && cells[j+1].Worst == c.Worst && cells[j+1].X-cells[j].X <= c.Width*1.0001 {
			j++
		}
		// Count the failures of the worst one's kind: a missed cut beside
		// a brick is not the device's failure, nor a brick the bench's.
		bench := c.Worst.BenchFailure()
		failed, n := 0, 0
		for _, cc := range cells[i : j+1] {
			n += cc.N
			for o, k := range cc.Counts {
				if o != results.Updated && o.BenchFailure() == bench {
					failed += k
				}
			}
		}
		what := "failed"
		if bench {
			what = "not tested as planned"
		}
		var where string
		if axis == AxisBlock {
			if i == j {
				where = fmt.Sprintf("block %d", int(c.X))
			} else {
				where = fmt.Sprintf("blocks %d–%d", int(c.X), int(cells[j].X))
			}
		} else {
			where = fmt.Sprintf("%s–%s into the transfer", fmtMs(c.X), fmtMs(cells[j].X+cells[j].Width))
		}
		out = append(out, fmt.Sprintf("%s at %s (%d of %d cycles %s)", c.Worst, where, failed, n, what))
		i = j + 1
	}
	return out
}

// fmtMs formats milliseconds briefly: 850µs, 12.3ms, 1.25s.
func fmtMs(ms float64) string {
	if math.IsNaN(ms) {
		return "–"
	}
	d := time.Duration(ms * float64(time.Millisecond))
	return results.FormatDuration(d)
}
