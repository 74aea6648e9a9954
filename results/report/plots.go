package report

import (
	"bytes"
	"fmt"
	"html"
	"html/template"
	"image/color"
	"math"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"

	"github.com/fudbench/fudbench/results"
)

// OutcomeColors are the colours of the outcomes on the outcome map and
// in the report's legends; a test checks that every outcome of
// results.Outcomes has its own.
var OutcomeColors = map[results.Outcome]color.RGBA{
	results.Updated:       {0x2e, 0x7d, 0x32, 0xff},
	results.RolledBack:    {0xf9, 0xa8, 0x25, 0xff},
	results.StuckRecovery: {0xef, 0x6c, 0x00, 0xff},
	results.Bricked:       {0xc6, 0x28, 0x28, 0xff},
	results.MissedCut:     {0x6a, 0x1b, 0x9a, 0xff}, // purple: the bench's, like infra grey, yet apart from it
	results.InfraError:    {0x75, 0x75, 0x75, 0xff},
}

// unknownColor marks an outcome OutcomeColors lacks (from a newer
// fudbench's file): black, never the colour of another outcome.
var unknownColor = color.RGBA{0x00, 0x00, 0x00, 0xff}

func outcomeColor(o results.Outcome) color.RGBA {
	if c, ok := OutcomeColors[o]; ok {
		return c
	}
	return unknownColor
}

// seriesColors tell boards apart on line plots (colour-blind safe).
var seriesColors = []color.RGBA{
	{0x00, 0x72, 0xb2, 0xff},
	{0xd5, 0x5e, 0x00, 0xff},
	{0x00, 0x9e, 0x73, 0xff},
	{0xcc, 0x79, 0xa7, 0xff},
	{0x56, 0xb4, 0xe9, 0xff},
	{0xe6, 0x9f, 0x00, 0xff},
	{0x00, 0x00, 0x00, 0xff},
}

func seriesColor(i int) color.RGBA { return seriesColors[i%len(seriesColors)] }

// hex renders a colour for CSS.
func hex(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

const plotWidth = 720 // points

// newPlot returns a plot in the report's style: sans-serif text, a grid.
func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	sans := func(s *draw.TextStyle) { s.Font.Variant = "Sans" }
	sans(&p.Title.TextStyle)
	sans(&p.X.Label.TextStyle)
	sans(&p.Y.Label.TextStyle)
	sans(&p.X.Tick.Label)
	sans(&p.Y.Tick.Label)
	sans(&p.Legend.TextStyle)
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, x, y
	p.Title.TextStyle.Font.Size = vg.Points(13)
	p.Title.Padding = vg.Points(6)
	return p
}

// svg draws p into an inline SVG element of w×h points. The XML prelude
// is dropped (it is not allowed inside HTML) and the element scales with
// the page.
func svg(p *plot.Plot, w, h vg.Length, label string) (template.HTML, error) {
	c := vgsvg.New(w, h)
	p.Draw(draw.New(c))
	var b bytes.Buffer
	if _, err := c.WriteTo(&b); err != nil {
		return "", fmt.Errorf("report: plot %q: %w", label, err)
	}
	s := b.String()
	i := strings.Index(s, "<svg")
	if i < 0 {
		return "", fmt.Errorf("report: plot %q: no svg element", label)
	}
	s = `<svg class="plot" role="img" aria-label="` + html.EscapeString(label) + `" ` + s[i+len("<svg "):]
	// gonum writes every number with full precision; two decimals of a
	// point are plenty and halve the size of large plots.
	return template.HTML(trimFloats(s)), nil
}

// trimFloats shortens decimal fractions longer than two digits inside
// tags (coordinates, paths, transforms), never in text content.
func trimFloats(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inTag := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		b.WriteByte(ch)
		switch ch {
		case '<':
			inTag = true
		case '>':
			inTag = false
		}
		if !inTag || ch != '.' || i == 0 || !isDigit(s[i-1]) {
			continue
		}
		j := i + 1
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		digits := s[i+1 : j]
		if len(digits) > 2 {
			digits = digits[:2]
		}
		b.WriteString(digits)
		i = j - 1
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// cells draws the outcome map's rows as coloured bands, merging
// neighbouring cells of one colour into one rectangle so that a sweep
// over thousands of blocks stays a few elements.
type cells struct {
	g Grid
}

func (cp cells) left(c Cell) float64 {
	if cp.g.Axis == AxisBlock {
		return c.X - 0.5
	}
	return c.X
}

func (cp cells) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	n := len(cp.g.Rows)
	for i, r := range cp.g.Rows {
		// The first row on top: NominalY counts from the bottom.
		y := float64(n - 1 - i)
		y0, y1 := trY(y-0.42), trY(y+0.42)
		for j := 0; j < len(r.Cells); {
			k := j
			for k+1 < len(r.Cells) && r.Cells[k+1].Worst == r.Cells[j].Worst &&
				cp.left(r.Cells[k+1]) <= cp.left(r.Cells[k])+r.Cells[k].Width*1.0001 {
				k++
			}
			x0 := trX(cp.left(r.Cells[j]))
			x1 := trX(cp.left(r.Cells[k]) + r.Cells[k].Width)
			pts := []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}
			c.FillPolygon(outcomeColor(r.Cells[j].Worst), c.ClipPolygonXY(pts))
			j = k + 1
		}
	}
}

func (cp cells) DataRange() (xmin, xmax, ymin, ymax float64) {
	xmin, xmax = cp.g.XMin, cp.g.XMax
	if cp.g.Axis == AxisBlock {
		xmin, xmax = xmin-0.5, xmax+0.5
	}
	return xmin, xmax, -0.5, float64(len(cp.g.Rows)) - 0.5
}

// plotGrid draws one outcome map.
func plotGrid(g Grid) (template.HTML, error) {
	x := "block being written when the power went off"
	title := "Outcome by cut point (block)"
	if g.Axis == AxisTime {
		x = "time into the transfer when the power went off (ms)"
		title = "Outcome by cut point (time)"
	}
	p := newPlot(title, x, "")
	p.Add(cells{g})
	names := make([]string, len(g.Rows))
	for i, r := range g.Rows {
		names[len(g.Rows)-1-i] = r.Label
	}
	p.NominalY(names...)
	if g.Axis == AxisBlock && g.XMax-g.XMin <= 40 {
		var ticks []plot.Tick
		step := 1.0
		if g.XMax-g.XMin > 20 {
			step = 2
		}
		for v := g.XMin; v <= g.XMax; v += step {
			ticks = append(ticks, plot.Tick{Value: v, Label: fmt.Sprint(v)})
		}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
	}
	h := vg.Points(90 + 30*float64(len(g.Rows)))
	return svg(p, plotWidth, h, title)
}

// plotBoxes draws one box per board of the values picked by get.
func plotBoxes(title string, boards []Board, get func(Board) []float64) (template.HTML, bool, error) {
	p := newPlot(title, "", "ms")
	var names []string
	any := false
	for i, b := range boards {
		names = append(names, b.Label)
		vs := get(b)
		if len(vs) == 0 {
			continue
		}
		bp, err := plotter.NewBoxPlot(vg.Points(36), float64(i), plotter.Values(vs))
		if err != nil {
			return "", false, fmt.Errorf("report: %s: %w", title, err)
		}
		bp.FillColor = color.RGBA{0xbb, 0xde, 0xfb, 0xff}
		p.Add(bp)
		any = true
	}
	if !any {
		return "", false, nil
	}
	p.NominalX(names...)
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	s, err := svg(p, plotWidth/2, 260, title)
	return s, true, err
}

// plotThroughput draws a bar per board and block size.
func plotThroughput(ts []Throughput) (template.HTML, error) {
	p := newPlot("Throughput per block size", "", "KiB/s")
	var vs plotter.Values
	var names []string
	for _, t := range ts {
		vs = append(vs, t.Bps/1024)
		names = append(names, fmt.Sprintf("%s · %d B", t.Board, t.BlockSize))
	}
	bc, err := plotter.NewBarChart(vs, vg.Points(28))
	if err != nil {
		return "", fmt.Errorf("report: throughput: %w", err)
	}
	bc.Color = seriesColor(0)
	bc.LineStyle.Width = 0
	p.Add(bc, plotter.NewGrid())
	p.NominalX(names...)
	return svg(p, plotWidth/2, 260, "Throughput per block size")
}

// plotRTT draws the round-trip lines, p50 solid and p95 dashed.
func plotRTT(ss []RTTSeries) (template.HTML, error) {
	p := newPlot("Block round-trip time over the transfer", "block", "ms")
	p.Add(plotter.NewGrid())
	for i, s := range ss {
		for _, q := range []struct {
			name string
			ys   []float64
			dash bool
		}{{"p50", s.P50, false}, {"p95", s.P95, true}} {
			xys := make(plotter.XYs, len(s.X))
			for j := range s.X {
				xys[j] = plotter.XY{X: s.X[j], Y: q.ys[j]}
			}
			l, err := plotter.NewLine(xys)
			if err != nil {
				return "", fmt.Errorf("report: round trips: %w", err)
			}
			l.Color = seriesColor(i)
			l.Width = vg.Points(1.2)
			if q.dash {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			}
			p.Add(l)
			p.Legend.Add(s.Board+" "+q.name, l)
		}
	}
	p.Legend.Top = true
	p.Y.Min = 0
	return svg(p, plotWidth, 260, "Block round-trip time over the transfer")
}

// plotResent draws the mean blocks re-sent per cut position.
func plotResent(ss []ResentSeries, axis string) (template.HTML, bool, error) {
	x := "block being written when the power went off"
	if axis == AxisTime {
		x = "time into the transfer when the power went off (ms)"
	}
	title := "Blocks re-sent after a cut"
	p := newPlot(title, x, "blocks (mean)")
	p.Add(plotter.NewGrid())
	any := false
	for i, s := range ss {
		if s.Axis != axis {
			continue
		}
		xys := make(plotter.XYs, len(s.Points))
		for j, pt := range s.Points {
			xys[j] = plotter.XY{X: pt.X, Y: pt.Mean}
		}
		l, sc, err := plotter.NewLinePoints(xys)
		if err != nil {
			return "", false, fmt.Errorf("report: re-sent blocks: %w", err)
		}
		l.Color, sc.Color = seriesColor(i), seriesColor(i)
		sc.Radius = vg.Points(2)
		p.Add(l, sc)
		p.Legend.Add(s.Board, l, sc)
		any = true
	}
	if !any {
		return "", false, nil
	}
	p.Legend.Top = true
	p.Y.Min = 0
	s, err := svg(p, plotWidth, 240, title)
	return s, true, err
}

// runTicks labels runs by their start time, at most about a dozen labels.
func runTicks(rs []RunStat) plot.ConstantTicks {
	step := max(1, (len(rs)+11)/12)
	var ts plot.ConstantTicks
	for i, r := range rs {
		l := ""
		if i%step == 0 || i == len(rs)-1 {
			l = r.Started.UTC().Format("01-02 15:04")
		}
		ts = append(ts, plot.Tick{Value: float64(i), Label: l})
	}
	return ts
}

// plotTrendRate draws each run's failure rate with its Wilson interval.
func plotTrendRate(rs []RunStat) (template.HTML, error) {
	title := "Failure rate per run (95 % Wilson interval)"
	p := newPlot(title, "run (start, UTC)", "% of cycles not updated")
	p.Add(plotter.NewGrid())
	pts := make(plotter.XYs, len(rs))
	errs := make(plotter.YErrors, len(rs))
	for i, r := range rs {
		pts[i] = plotter.XY{X: float64(i), Y: 100 * r.Rate}
		errs[i].Low, errs[i].High = 100*(r.Rate-r.Lo), 100*(r.Hi-r.Rate)
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYs
		plotter.YErrors
	}{pts, errs})
	if err != nil {
		return "", fmt.Errorf("report: trend: %w", err)
	}
	eb.Color = seriesColor(0)
	sc, err := plotter.NewScatter(pts)
	if err != nil {
		return "", fmt.Errorf("report: trend: %w", err)
	}
	sc.Color, sc.Radius, sc.Shape = seriesColor(0), vg.Points(2.5), draw.CircleGlyph{}
	p.Add(eb, sc)
	p.Y.Min, p.Y.Max = 0, 100
	p.X.Min, p.X.Max = -0.5, float64(len(rs))-0.5
	p.X.Tick.Marker = runTicks(rs)
	return svg(p, plotWidth, 260, title)
}

// plotTrendRecovery draws each run's median recovery time.
func plotTrendRecovery(rs []RunStat) (template.HTML, bool, error) {
	title := "Median recovery per run (power-on to new version running)"
	p := newPlot(title, "run (start, UTC)", "ms")
	p.Add(plotter.NewGrid())
	var pts plotter.XYs
	for i, r := range rs {
		if !math.IsNaN(r.RecoveryMs) {
			pts = append(pts, plotter.XY{X: float64(i), Y: r.RecoveryMs})
		}
	}
	if len(pts) == 0 {
		return "", false, nil
	}
	l, sc, err := plotter.NewLinePoints(pts)
	if err != nil {
		return "", false, fmt.Errorf("report: trend: %w", err)
	}
	l.Color, sc.Color, sc.Radius = seriesColor(1), seriesColor(1), vg.Points(2.5)
	p.Add(l, sc)
	p.Y.Min = 0
	p.X.Min, p.X.Max = -0.5, float64(len(rs))-0.5
	p.X.Tick.Marker = runTicks(rs)
	s, err := svg(p, plotWidth, 240, title)
	return s, true, err
}

// plotCycle draws one failed cycle's timeline: acknowledged blocks over
// time, power edges as vertical lines, console lines as ticks below.
func plotCycle(fc FailedCycle) (template.HTML, error) {
	title := fmt.Sprintf("%s cycle %d: %s", fc.Board, fc.Cycle.Cycle, fc.Plan)
	p := newPlot("", "ms since the cycle started", "block")
	p.X.Label.TextStyle.Font.Size = vg.Points(9)
	p.Y.Label.TextStyle.Font.Size = vg.Points(9)
	if len(fc.Events) == 0 {
		return "", nil
	}
	t0 := fc.Events[0].T
	ms := func(t time.Duration) float64 { return msOf(t - t0) }
	var acked, sent, console plotter.XYs
	maxBlock := 1.0
	var edges []struct {
		x  float64
		on bool
	}
	var cutX []float64
	for _, e := range fc.Events {
		switch e.Kind {
		case results.BlockAcked:
			acked = append(acked, plotter.XY{X: ms(e.T), Y: float64(e.Block)})
			maxBlock = max(maxBlock, float64(e.Block))
		case results.BlockSent:
			sent = append(sent, plotter.XY{X: ms(e.T), Y: float64(e.Block)})
			maxBlock = max(maxBlock, float64(e.Block))
		case results.ConsoleLine:
			console = append(console, plotter.XY{X: ms(e.T), Y: -1})
		case results.PowerOn, results.PowerOff:
			edges = append(edges, struct {
				x  float64
				on bool
			}{ms(e.T), e.Kind == results.PowerOn})
		case results.CutTrigger:
			cutX = append(cutX, ms(e.T))
		}
	}
	for i := range console {
		console[i].Y = -maxBlock * 0.08
	}
	add := func(xys plotter.XYs, c color.Color, shape draw.GlyphDrawer, r vg.Length, name string) error {
		if len(xys) == 0 {
			return nil
		}
		xys = thin(xys, 400)
		sc, err := plotter.NewScatter(xys)
		if err != nil {
			return fmt.Errorf("report: %s: %w", title, err)
		}
		sc.Color, sc.Shape, sc.Radius = c, shape, r
		p.Add(sc)
		p.Legend.Add(name, sc)
		return nil
	}
	if err := add(sent, color.RGBA{0x90, 0xa4, 0xae, 0xff}, draw.RingGlyph{}, vg.Points(2), "block sent"); err != nil {
		return "", err
	}
	if err := add(acked, seriesColor(0), draw.CircleGlyph{}, vg.Points(1.6), "block acknowledged"); err != nil {
		return "", err
	}
	if err := add(console, color.RGBA{0x54, 0x6e, 0x7a, 0xff}, draw.BoxGlyph{}, vg.Points(1.5), "console line"); err != nil {
		return "", err
	}
	vline := func(x float64, c color.Color, dash bool, name string, legend bool) error {
		l, err := plotter.NewLine(plotter.XYs{{X: x, Y: -maxBlock * 0.12}, {X: x, Y: maxBlock * 1.05}})
		if err != nil {
			return fmt.Errorf("report: %s: %w", title, err)
		}
		l.Color, l.Width = c, vg.Points(1.2)
		if dash {
			l.Dashes = []vg.Length{vg.Points(3), vg.Points(2)}
		}
		p.Add(l)
		if legend {
			p.Legend.Add(name, l)
		}
		return nil
	}
	seenOn, seenOff := false, false
	for _, e := range edges {
		var err error
		if e.on {
			err = vline(e.x, OutcomeColors[results.Updated], false, "power on", !seenOn)
			seenOn = true
		} else {
			err = vline(e.x, OutcomeColors[results.Bricked], false, "power off", !seenOff)
			seenOff = true
		}
		if err != nil {
			return "", err
		}
	}
	for i, x := range cutX {
		if err := vline(x, color.Black, true, "cut trigger", i == 0); err != nil {
			return "", err
		}
	}
	if fc.Outcome == results.MissedCut && fc.PlannedBlock >= 0 && len(fc.Events) > 0 {
		// Where the cut should have been, across the cycle: beside the
		// blocks and the trigger it shows how far off the cut was.
		y := float64(fc.PlannedBlock)
		maxBlock = max(maxBlock, y)
		l, err := plotter.NewLine(plotter.XYs{{X: 0, Y: y}, {X: ms(fc.Events[len(fc.Events)-1].T), Y: y}})
		if err != nil {
			return "", fmt.Errorf("report: %s: %w", title, err)
		}
		l.Color, l.Width = outcomeColor(results.MissedCut), vg.Points(1.2)
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(2)}
		p.Add(l)
		p.Legend.Add(fmt.Sprintf("planned cut (block %d)", fc.PlannedBlock), l)
	}
	p.Legend.Top = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Y.Min = -maxBlock * 0.12
	return svg(p, plotWidth, 200, title)
}

// thin keeps at most n points, evenly spaced through xys.
func thin(xys plotter.XYs, n int) plotter.XYs {
	if len(xys) <= n {
		return xys
	}
	out := make(plotter.XYs, 0, n)
	for i := range n {
		out = append(out, xys[i*len(xys)/n])
	}
	return out
}
