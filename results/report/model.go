package report

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/fudbench/fudbench/results"
)

// Limits that keep a report of a long soak run small: the plots and lists
// aggregate, and only the first MaxFailedShown failed cycles get their own
// timeline.
const (
	MaxFailedShown   = 50
	MaxTimelineItems = 80  // rows of one failed cycle's event list
	MaxRTTPoints     = 400 // points per line of the round-trip plot
	MaxTimeColumns   = 60  // columns of the outcome map of time cuts
	MaxTrendRuns     = 60  // runs on the trend plots
	// MaxCutRows is the most cut points listed one by one: a run with
	// more planned cuts lists only those that missed or ran again.
	MaxCutRows = 200
	rttSample  = 1000
)

// Input is what a report is drawn from: one run, its cycles and events,
// and the history of the same job for the trend.
type Input struct {
	Run     results.RunRecord
	Summary results.Summary
	Cycles  []results.Cycle
	Events  []results.Event
	// History is every run of the same job, oldest first, this one
	// included; empty when the source holds only this run.
	History []RunStat
	// Source names the file or directory the data came from.
	Source string
	// Firmware lists the image versions when the caller knows them
	// ("baseline 1.0.0", "update 2.0.0"); otherwise the report names the
	// versions the devices reported.
	Firmware []string
}

// RunStat is one run's point on the trend.
type RunStat struct {
	ID      string
	Started time.Time
	// Cycles counts the cycles that ran; Infra those that ended in an
	// infra error; Missed those whose planned cut did not land; Failed
	// the others that did not end updated.
	Cycles, Failed, Infra, Missed int
	// Rate is Failed over Cycles−Infra−Missed (the cycles that tested
	// the device as planned), with its 95 % Wilson interval.
	Rate, Lo, Hi float64
	// RecoveryMs is the median power-on to new version running; NaN
	// when no cycle reached it.
	RecoveryMs float64
}

// NewRunStat derives a run's trend point from its summary.
func NewRunStat(s results.Summary) RunStat {
	r := RunStat{ID: s.RunID, Started: s.Started, Cycles: s.Cycles, Infra: s.InfraErrors, Missed: s.MissedCuts, RecoveryMs: math.NaN()}
	// A bench failure tested nothing: it counts neither way.
	r.Failed = s.Cycles - s.Outcomes[results.Updated] - s.InfraErrors - s.MissedCuts
	r.Failed = max(r.Failed, 0)
	n := max(s.Cycles-s.InfraErrors-s.MissedCuts, 0)
	if n > 0 {
		r.Rate = float64(r.Failed) / float64(n)
	}
	r.Lo, r.Hi = Wilson(r.Failed, n, Z95)
	if s.RecoveryVersion.N > 0 {
		r.RecoveryMs = s.RecoveryVersion.P50Ms
	}
	return r
}

// cycleFailed is the report's notion of a failed cycle: the update did
// not land (any outcome but updated), or the job did not accept the
// outcome. A bricked cycle of a board whose job accepts bricks is still
// listed: the job expects it, the reader wants to see it.
func cycleFailed(c results.Cycle) bool {
	return c.Outcome != results.Updated || !c.Accepted
}

// severityOrder ranks outcomes, mildest first, for colouring a cell that
// holds several cycles: the worst one shows. Bench failures rank below
// every device failure, as in the verdict; a missed cut above an infra
// error, since it says this very point went untested. It lists every
// outcome of results.Outcomes (a test checks).
var severityOrder = []results.Outcome{
	results.Updated, results.InfraError, results.MissedCut,
	results.RolledBack, results.StuckRecovery, results.Bricked,
}

// severity ranks o by severityOrder; an outcome it does not know (from a
// newer fudbench's file) ranks worst, so it is never hidden.
func severity(o results.Outcome) int {
	if i := slices.Index(severityOrder, o); i >= 0 {
		return i
	}
	return len(severityOrder)
}

// CutTally counts one board's planned cuts by how they went.
type CutTally struct {
	Board string
	// Planned counts the cycles that planned a cut (a plan other than
	// "none"); Landed those whose cut fired at its planned point; Missed
	// those whose cut did not (outcome missed-cut). The rest never got
	// to their cut (an infra error before it).
	Planned, Landed, Missed int
	// Rerun counts the cycles run more than once (after a missed cut);
	// DeviceRecords the cuts the device recorded itself.
	Rerun, DeviceRecords int
}

// plannedCut reports whether a cycle's plan asks for a cut.
func plannedCut(c results.Cycle) bool { return c.Plan != "" && c.Plan != "none" }

// buildCuts tallies each board's planned cuts and lists their points,
// planned beside actual, in board and cycle order: every one when there
// are at most MaxCutRows, else only those that missed or ran again (the
// first MaxCutRows of them; more counts the rest).
func buildCuts(boards []string, cycles []results.Cycle) (tallies []CutTally, rows []results.CutPoint, all bool, more int) {
	rank := map[string]int{}
	order := slices.Clone(boards)
	for i, b := range boards {
		rank[b] = i
	}
	byBoard := map[string]*CutTally{}
	var planned []results.Cycle
	for _, c := range cycles {
		if !plannedCut(c) && c.Outcome != results.MissedCut {
			continue
		}
		if _, ok := rank[c.Board]; !ok {
			// A board the run does not list: after the others, never
			// hidden.
			rank[c.Board] = len(order)
			order = append(order, c.Board)
		}
		planned = append(planned, c)
		t := byBoard[c.Board]
		if t == nil {
			t = &CutTally{Board: c.Board}
			byBoard[c.Board] = t
		}
		cp := c.CutPoint()
		t.Planned++
		if cp.Landed {
			t.Landed++
		}
		if c.Outcome == results.MissedCut {
			t.Missed++
		}
		if c.Attempts > 1 {
			t.Rerun++
		}
		if cp.Device != nil {
			t.DeviceRecords++
		}
	}
	for _, b := range order {
		if t := byBoard[b]; t != nil {
			tallies = append(tallies, *t)
		}
	}
	slices.SortStableFunc(planned, func(a, b results.Cycle) int {
		return cmp.Or(cmp.Compare(rank[a.Board], rank[b.Board]), cmp.Compare(a.Cycle, b.Cycle))
	})
	all = len(planned) <= MaxCutRows
	for _, c := range planned {
		if !all && c.Outcome != results.MissedCut && c.Attempts <= 1 {
			continue
		}
		if len(rows) == MaxCutRows {
			more++
			continue
		}
		rows = append(rows, c.CutPoint())
	}
	return tallies, rows, all, more
}

// Board holds one board's recovery samples (milliseconds).
type Board struct {
	Name, Label       string
	Answer, Version   []float64
	AnswerS, VersionS Stats
}

// buildRecovery collects each board's recovery times.
func buildRecovery(boards []string, labels map[string]string, cycles []results.Cycle) []Board {
	var out []Board
	for _, b := range boards {
		bd := Board{Name: b, Label: cmp.Or(labels[b], b)}
		for _, c := range cycles {
			if c.Board != b {
				continue
			}
			if c.RecoveryAnswer > 0 {
				bd.Answer = append(bd.Answer, msOf(c.RecoveryAnswer))
			}
			if c.RecoveryVersion > 0 {
				bd.Version = append(bd.Version, msOf(c.RecoveryVersion))
			}
		}
		bd.AnswerS, bd.VersionS = StatsOf(bd.Answer), StatsOf(bd.Version)
		out = append(out, bd)
	}
	return out
}

// Throughput is the median transfer rate of one board at one block size.
type Throughput struct {
	Board     string
	BlockSize int
	N         int
	Bps       float64 // bytes per second
}

// buildThroughput uses the definition of summary.json: bytes sent
// (blocks sent × block size) per second of transfer, median over cycles.
func buildThroughput(boards []string, cycles []results.Cycle) []Throughput {
	var out []Throughput
	for _, b := range boards {
		by := map[int][]float64{}
		for _, c := range cycles {
			if c.Board != b || c.Transfer <= 0 || c.BlockSize <= 0 {
				continue // from an output directory alone the block size may be unknown
			}
			bytes := float64(c.BlocksSent) * float64(c.BlockSize)
			if bytes == 0 {
				bytes = float64(c.ImageSize)
			}
			by[c.BlockSize] = append(by[c.BlockSize], bytes/c.Transfer.Seconds())
		}
		for _, bs := range sortedKeys(by) {
			out = append(out, Throughput{Board: b, BlockSize: bs, N: len(by[bs]), Bps: Percentile(by[bs], 50)})
		}
	}
	return out
}

// RTTSeries is one board's block round-trip times over the transfer: for
// each point, the blocks [From, From+Width) pooled.
type RTTSeries struct {
	Board   string
	X       []float64 // first block of each point
	P50     []float64 // ms
	P95     []float64 // ms
	Samples int       // round trips seen
}

// buildRTT pools block.acked round trips per board and block; with more
// blocks than MaxRTTPoints neighbouring blocks share a point. Each point
// keeps a fixed-seed reservoir sample of at most rttSample round trips,
// so memory stays bounded on long runs and the figures are repeatable.
func buildRTT(boards []string, evs []results.Event) []RTTSeries {
	maxBlock := map[string]int64{}
	for _, e := range evs {
		if e.Kind == results.BlockAcked && e.Block >= 0 {
			maxBlock[e.Board] = max(maxBlock[e.Board], e.Block)
		}
	}
	var out []RTTSeries
	for _, b := range boards {
		mb, ok := maxBlock[b]
		if !ok {
			continue
		}
		width := (mb + MaxRTTPoints) / MaxRTTPoints
		type res struct {
			seen int
			vals []float64
		}
		rng := rand.New(rand.NewPCG(1, uint64(len(b))))
		bins := make([]res, mb/width+1)
		s := RTTSeries{Board: b}
		for _, e := range evs {
			if e.Kind != results.BlockAcked || e.Board != b || e.Block < 0 || e.Dur <= 0 {
				continue
			}
			s.Samples++
			r := &bins[e.Block/width]
			r.seen++
			v := msOf(e.Dur)
			if len(r.vals) < rttSample {
				r.vals = append(r.vals, v)
			} else if j := rng.IntN(r.seen); j < rttSample {
				r.vals[j] = v
			}
		}
		for i, r := range bins {
			if len(r.vals) == 0 {
				continue
			}
			s.X = append(s.X, float64(int64(i)*width))
			s.P50 = append(s.P50, Percentile(r.vals, 50))
			s.P95 = append(s.P95, Percentile(r.vals, 95))
		}
		out = append(out, s)
	}
	return out
}

// ResentPoint is the mean number of blocks sent again after cuts at one
// position.
type ResentPoint struct {
	X    float64
	Mean float64
	Max  int
	N    int
}

// ResentSeries is one board's re-sent blocks over cut positions.
type ResentSeries struct {
	Board  string
	Axis   string
	Points []ResentPoint
}

func buildResent(boards []string, cycles []results.Cycle, tl timeline) []ResentSeries {
	var out []ResentSeries
	for _, b := range boards {
		for _, axis := range []string{AxisBlock, AxisTime} {
			type acc struct{ sum, max, n int }
			by := map[float64]*acc{}
			for _, c := range cycles {
				if c.Board != b || c.Cut == nil {
					continue
				}
				p := cutPosition(c, tl[cycleKey{c.Board, c.Cycle}])
				if p.axis != axis {
					continue
				}
				a := by[p.x]
				if a == nil {
					a = &acc{}
					by[p.x] = a
				}
				a.sum += c.BlocksResent
				a.max = max(a.max, c.BlocksResent)
				a.n++
			}
			if len(by) == 0 {
				continue
			}
			s := ResentSeries{Board: b, Axis: axis}
			for x, a := range by {
				s.Points = append(s.Points, ResentPoint{X: x, Mean: float64(a.sum) / float64(a.n), Max: a.max, N: a.n})
			}
			slices.SortFunc(s.Points, func(p, q ResentPoint) int { return cmp.Compare(p.X, q.X) })
			out = append(out, s)
		}
	}
	return out
}

// TimelineItem is one line of a failed cycle's event list.
type TimelineItem struct {
	TMs   float64 // since the cycle's first event
	Kind  string
	Text  string
	Class string // for styling: power-on, power-off, cut, block, console, recovery, outcome, other
}

// FailedCycle is one failed cycle with its timeline.
type FailedCycle struct {
	results.Cycle
	Events    []results.Event // this cycle's events, in time order
	Items     []TimelineItem
	Truncated int // items left out of Items
}

// buildItems turns a cycle's events into a readable list: runs of block
// events collapse into one line, console lines and power edges stay.
func buildItems(evs []results.Event) ([]TimelineItem, int) {
	if len(evs) == 0 {
		return nil, 0
	}
	t0 := evs[0].T
	var items []TimelineItem
	for i := 0; i < len(evs); i++ {
		e := evs[i]
		it := TimelineItem{TMs: msOf(e.T - t0), Kind: string(e.Kind), Text: e.Text}
		switch e.Kind {
		case results.BlockSent, results.BlockAcked, results.BlockRetry:
			j, sent, acked, retries := i, 0, 0, 0
			first, last := e.Block, e.Block
			var rtts []float64
			for ; j < len(evs); j++ {
				k := evs[j].Kind
				if k != results.BlockSent && k != results.BlockAcked && k != results.BlockRetry {
					break
				}
				switch k {
				case results.BlockSent:
					sent++
				case results.BlockAcked:
					acked++
					rtts = append(rtts, msOf(evs[j].Dur))
				default:
					retries++
				}
				first, last = min(first, evs[j].Block), max(last, evs[j].Block)
			}
			it.Kind, it.Class = "blocks", "block"
			it.Text = fmt.Sprintf("blocks %d–%d: %d sent, %d acknowledged", first, last, sent, acked)
			if retries > 0 {
				it.Text += fmt.Sprintf(", %d retransmitted", retries)
			}
			if len(rtts) > 0 {
				it.Text += ", round trip p50 " + fmtMs(Percentile(rtts, 50))
			}
			i = j - 1
		case results.PowerOn:
			it.Class = "power-on"
		case results.PowerOff, results.PowerError:
			it.Class = "power-off"
		case results.CutTrigger:
			it.Class = "cut"
			inFlight := e.Attrs["in_flight"]
			if inFlight == "" || strings.HasPrefix(inFlight, "-") {
				inFlight = "none"
			}
			acked := "none"
			if e.Block >= 0 {
				acked = fmt.Sprint(e.Block)
			}
			it.Text = fmt.Sprintf("%s (last acknowledged %s, in flight %s, latency %s)", e.Text, acked, inFlight, fmtMs(msOf(e.Dur)))
		case results.ConsoleLine:
			it.Class = "console"
		case results.Recovery:
			it.Class = "recovery"
			it.Text = fmt.Sprintf("%s after %s", e.Text, fmtMs(msOf(e.Dur)))
		case results.CycleOutcome:
			it.Class = "outcome"
			if r := e.Attrs["reason"]; r != "" {
				it.Text += ": " + r
			}
		default:
			it.Class = "other"
			if e.Block >= 0 {
				it.Text = strings.TrimSpace(fmt.Sprintf("%s (block %d)", e.Text, e.Block))
			}
			if e.Dur > 0 {
				it.Text = strings.TrimSpace(it.Text + " " + fmtMs(msOf(e.Dur)))
			}
		}
		items = append(items, it)
	}
	if len(items) > MaxTimelineItems {
		// Keep the start and the end: the cut and what followed it are
		// usually at the end.
		head := MaxTimelineItems / 4
		tail := MaxTimelineItems - head
		cut := len(items) - MaxTimelineItems
		return append(items[:head:head], items[len(items)-tail:]...), cut
	}
	return items, 0
}

// profiles reads each board's update profile from its update.start
// events.
func profiles(evs []results.Event) map[string]string {
	p := map[string]string{}
	for _, e := range evs {
		if e.Kind == results.UpdateStart && e.Text != "" && p[e.Board] == "" {
			p[e.Board] = e.Text
		}
	}
	return p
}

// deviceVersions lists the versions devices reported before their
// update ("running 1.0.0" notes), per board.
func deviceVersions(evs []results.Event) map[string][]string {
	out := map[string][]string{}
	for _, e := range evs {
		if e.Kind != results.Note {
			continue
		}
		v, ok := strings.CutPrefix(e.Text, "running ")
		if ok && v != "" && !slices.Contains(out[e.Board], v) {
			out[e.Board] = append(out[e.Board], v)
		}
	}
	return out
}
