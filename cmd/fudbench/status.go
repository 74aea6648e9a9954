package main

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/fudbench/fudbench/results"
)

// Outcome names the status reads from cycle.outcome events. missed-cut
// is a bench failure, like infra-error: the planned cut did not happen.
const (
	outcomeUpdated   = string(results.Updated)
	outcomeMissedCut = string(results.MissedCut)
)

// statusRefresh is how often the terminal status is redrawn.
const statusRefresh = 100 * time.Millisecond

// status is the live status of a campaign, fed with every event of the
// run. On a terminal it redraws in place (github.com/vbauerster/mpb): a
// header with the cycles done, the failures, the elapsed time and an
// estimate of the time left, then one line per board with its cycle, its
// planned cut and its phase; a finished cycle that did not end updated
// is printed above that area for good. Elsewhere (CI logs) it prints one
// plain line per finished cycle and nothing else.
//
// Emit only updates the state under a mutex: the redraws are mpb's
// (every statusRefresh) and the lines are written by a goroutine of the
// status, so a slow terminal or log never holds up the bench.
type status struct {
	tty      bool
	accepted func(board, outcome string) bool

	mu      sync.Mutex
	boards  []*boardStatus
	byName  map[string]*boardStatus
	total   int           // cycles planned, all boards
	done    int           // cycles done, earlier runs' included
	failed  int           // in this run
	origin  time.Time     // the run's start: when the status was made, then the run clock's
	sawWall bool          // origin is the run clock's, from an event
	ended   time.Duration // elapsed when closed; 0 while running
	sumDur  time.Duration // of the cycles timed in this run
	timed   int
	planW   int      // widest planned cut so far, to keep columns still
	pending []string // lines to print, oldest first
	partial []byte   // of a line given to Write, until its newline
	closed  bool

	wake     chan struct{} // lines pending
	stop     chan struct{}
	loopDone chan struct{}
	close    sync.Once

	out  io.Writer     // plain lines
	p    *mpb.Progress // terminal only
	bars []*mpb.Bar
}

var _ results.Sink = (*status)(nil)

// boardStatus is one board's part of the status.
type boardStatus struct {
	name    string
	planned int
	done    int // cycles done, earlier runs' included

	cycle   int    // the current cycle, or the last one
	plan    string // its planned cut
	running bool   // between cycle.start and cycle.outcome
	timing  bool   // the cycle's start was seen: its duration counts
	started time.Duration
	phase   string // a results.Phase… name
	block   int64  // the last block sent in this transfer; -1 none yet
	blocks  int    // blocks of the image; 0 unknown
	last    string // the last cycle's outcome
	ever    bool   // a cycle of this run started on this board

	sumDur time.Duration
	timed  int
}

// newStatus returns a status writing to w, redrawn in place if tty.
// boards are shown in their order; planned is each board's cycles in the
// job and done each board's cycles already done (a resumed run; nil for
// a new one). accepted says whether the job accepts an outcome on a
// board (nil: only updated); an outcome it does not accept, and a bench
// failure (missed-cut, infra-error) whatever the job says, is a failure.
// Events of boards not listed are ignored. Close it when the run ends.
func newStatus(w io.Writer, tty bool, boards []string, planned, done map[string]int, accepted func(board, outcome string) bool) *status {
	s := &status{
		tty: tty, accepted: accepted, origin: time.Now(),
		byName:   map[string]*boardStatus{},
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		loopDone: make(chan struct{}),
		out:      w,
	}
	for _, n := range boards {
		if s.byName[n] != nil {
			continue
		}
		b := &boardStatus{name: n, planned: planned[n], done: done[n], block: -1}
		s.boards = append(s.boards, b)
		s.byName[n] = b
		s.total += b.planned
		s.done += b.done
	}
	if tty {
		// The caller says w is a terminal (it may wrap one). ForceTTY's
		// doc says it implies WithAutoRefresh; in v8.16.2 it does not.
		s.p = mpb.New(mpb.WithOutput(w), mpb.ForceTTY(), mpb.WithAutoRefresh(), mpb.WithRefreshRate(statusRefresh))
		s.bars = append(s.bars, s.line(s.headerLine))
		width := 0
		for _, b := range s.boards {
			width = max(width, len([]rune(b.name)))
		}
		for _, b := range s.boards {
			s.bars = append(s.bars, s.line(func(time.Duration, int) string { return s.boardLine(b, width) }))
		}
	}
	go s.loop()
	return s
}

// line adds a line of text to the live area: an mpb bar with no bar,
// only a decorator, given the terminal's width; mpb cuts what is wider.
func (s *status) line(text func(now time.Duration, width int) string) *mpb.Bar {
	return s.p.New(0, mpb.NopStyle(), mpb.BarFillerTrim(), mpb.PrependDecorators(decor.Any(func(st decor.Statistics) string {
		s.mu.Lock()
		defer s.mu.Unlock()
		return text(s.now(), st.AvailableWidth)
	})))
}

// Emit updates the state; the status is redrawn by mpb, lines are
// written by loop.
func (s *status) Emit(e results.Event) {
	switch e.Kind {
	case results.CycleStart, results.Phase, results.UpdateStart, results.BlockSent, results.CycleOutcome:
	default:
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.byName[e.Board]
	if b == nil || s.closed {
		return
	}
	if !s.sawWall && !e.Wall.IsZero() {
		// The run's clock: elapsed agrees with the events' T.
		s.origin, s.sawWall = e.Wall.Add(-e.T), true
	}
	if e.Kind != results.CycleStart && e.Kind != results.CycleOutcome && (!b.running || b.cycle != e.Cycle) {
		// A cycle whose start was not seen: shown, not timed.
		b.begin(e, false)
	}
	switch e.Kind {
	case results.CycleStart:
		b.begin(e, true)
		s.planW = max(s.planW, len([]rune(b.plan)))
	case results.Phase:
		b.phase = e.Text
		if e.Text == results.PhaseTransfer {
			b.block = -1
		}
	case results.UpdateStart:
		b.blocks, _ = strconv.Atoi(e.Attrs["blocks"])
	case results.BlockSent:
		b.block = e.Block
	case results.CycleOutcome:
		s.finish(b, e)
	}
}

// begin starts cycle e.Cycle on b.
func (b *boardStatus) begin(e results.Event, timing bool) {
	b.cycle, b.running, b.timing, b.started, b.ever = e.Cycle, true, timing, e.T, true
	b.phase, b.block, b.blocks = "", -1, 0
	b.plan = ""
	if timing {
		b.plan = clean(e.Text)
	}
}

// finish counts a cycle done and queues its line.
func (s *status) finish(b *boardStatus, e results.Event) {
	if b.running && b.cycle == e.Cycle && b.timing {
		d := e.T - b.started
		b.sumDur += d
		b.timed++
		s.sumDur += d
		s.timed++
	}
	if b.cycle != e.Cycle {
		// Never started (a board taken out of the run): no planned cut.
		b.plan = ""
	}
	b.cycle, b.running, b.last = e.Cycle, false, e.Text
	b.done++
	s.done++
	failed := s.isFailure(b.name, e.Text)
	if failed {
		s.failed++
	}
	what := s.describe(b, e, failed)
	switch {
	case !s.tty:
		line := fmt.Sprintf("%s %s  %s elapsed", s.count(), what, fmtElapsed(e.T))
		if eta, ok := s.eta(e.T); ok {
			line += ", ETA " + fmtETA(eta)
		}
		s.pending = append(s.pending, line)
	case e.Text != outcomeUpdated:
		s.pending = append(s.pending, what)
	default:
		return
	}
	s.signal()
}

// signal wakes loop; s.mu is held.
func (s *status) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Write prints complete lines above the live area on a terminal, or
// among the cycles' lines elsewhere, in order: give it the run's log so
// that log lines do not tear the status. It never waits for the output.
// After Close it writes to the output directly.
func (s *status) Write(p []byte) (int, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.out.Write(p)
	}
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	if i := bytes.LastIndexByte(s.partial, '\n'); i >= 0 {
		s.pending = append(s.pending, string(s.partial[:i]))
		s.partial = append(s.partial[:0], s.partial[i+1:]...)
		s.signal()
	}
	return len(p), nil
}

func (s *status) isFailure(board, outcome string) bool {
	switch outcome {
	case outcomeUpdated:
		return false
	case outcomeMissedCut, string(results.InfraError):
		return true
	}
	return s.accepted == nil || !s.accepted(board, outcome)
}

// describe says how a cycle ended:
// "sim-naive cycle 3 (after_block 2): bricked — reflashed".
func (s *status) describe(b *boardStatus, e results.Event, failed bool) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s cycle %d", b.name, e.Cycle)
	if b.plan != "" {
		fmt.Fprintf(&sb, " (%s)", b.plan)
	}
	sb.WriteString(": " + clean(e.Text))
	// The reason of an accepted outcome (a brick the job expects) is in
	// the records; the line stays short.
	if r := e.Attrs["reason"]; r != "" && failed {
		sb.WriteString(": " + clean(r))
	}
	if e.Attrs["reflashed"] == "true" {
		sb.WriteString(" — reflashed")
	}
	if failed {
		sb.WriteString(" — FAIL")
	}
	return sb.String()
}

// count is "[12/40]", or "[12]" when the plan is not known.
func (s *status) count() string {
	if s.total <= 0 {
		return fmt.Sprintf("[%d]", s.done)
	}
	return fmt.Sprintf("[%d/%d]", s.done, s.total)
}

// now is the time since the run started, frozen once closed.
func (s *status) now() time.Duration {
	if s.ended > 0 {
		return s.ended
	}
	return time.Since(s.origin)
}

// eta estimates the time left at now from the mean cycle time so far,
// each board's own once it has one. Boards that have started run side
// by side: the longest of them counts. Boards that have not started yet
// are taken to run after them (a job that runs boards one at a time).
func (s *status) eta(now time.Duration) (time.Duration, bool) {
	if s.timed == 0 {
		return 0, false
	}
	mean := s.sumDur / time.Duration(s.timed)
	var side, after time.Duration
	for _, b := range s.boards {
		left := b.planned - b.done
		if left <= 0 {
			continue
		}
		m := mean
		if b.timed > 0 {
			m = b.sumDur / time.Duration(b.timed)
		}
		t := time.Duration(left) * m
		if b.running && b.timing {
			// The current cycle is partly done.
			t -= min(now-b.started, m)
		}
		if b.ever {
			side = max(side, t)
		} else {
			after += t
		}
	}
	return side + after, s.done < s.total
}

// headerLine is "12/40 cycles [=====>------]  2 failed  12.3s elapsed  ETA 28s",
// the bar narrowed or left out to fit width.
func (s *status) headerLine(now time.Duration, width int) string {
	count := fmt.Sprintf("%d cycles", s.done)
	if s.total > 0 {
		count = fmt.Sprintf("%d/%d cycles", s.done, s.total)
	}
	rest := fmt.Sprintf("  %d failed  %s elapsed", s.failed, fmtElapsed(now))
	if eta, ok := s.eta(now); ok {
		rest += "  ETA " + fmtETA(eta)
	}
	if w := min(24, width-len(count)-len(rest)-3); s.total > 0 && w >= 8 {
		fill := min(s.done*w/s.total, w)
		bar := strings.Repeat("=", fill)
		if fill < w {
			bar += ">" + strings.Repeat("-", w-fill-1)
		}
		count += " [" + bar + "]"
	}
	return count + rest
}

// boardLine is "  sim-safe   cycle 12/20  during_block 11 +1ms  transferring block 7/24".
func (s *status) boardLine(b *boardStatus, nameW int) string {
	digits := len(strconv.Itoa(b.planned))
	cycle := fmt.Sprintf("cycle %*s/%d", digits, "-", b.planned)
	if b.cycle > 0 {
		cycle = fmt.Sprintf("cycle %*d/%d", digits, b.cycle, b.planned)
	}
	plan := b.plan // between cycles: the last one's, with its outcome
	if !b.running && b.planned > 0 && b.done >= b.planned {
		plan = ""
	}
	return fmt.Sprintf("  %-*s  %s  %-*s  %s", nameW, b.name, cycle, s.planW, plan, b.phaseText())
}

// phaseText is what a board is doing, in a word or three.
func (b *boardStatus) phaseText() string {
	switch {
	case !b.running && b.planned > 0 && b.done >= b.planned:
		return "done"
	case !b.running && b.last != "":
		return clean(b.last)
	case !b.running:
		return "waiting"
	}
	switch b.phase {
	case "":
		return "starting"
	case results.PhaseBaseline:
		return "baseline"
	case results.PhaseTransfer:
		switch {
		case b.block < 0:
			return "transferring"
		case b.blocks > 0:
			return fmt.Sprintf("transferring block %d/%d", b.block, b.blocks)
		}
		return fmt.Sprintf("transferring block %d", b.block)
	case results.PhaseOff:
		return "off"
	case results.PhaseRecovery:
		return "recovering"
	case results.PhaseVerify:
		return "verifying"
	case results.PhaseReflash:
		return "reflashing"
	case results.PhaseClassify:
		return "classifying"
	}
	return clean(b.phase)
}

// loop writes the pending lines: above the live area on a terminal, as
// they are elsewhere.
func (s *status) loop() {
	defer close(s.loopDone)
	for {
		select {
		case <-s.wake:
			s.flush()
		case <-s.stop:
			s.flush()
			return
		}
	}
}

func (s *status) flush() {
	s.mu.Lock()
	lines := s.pending
	s.pending = nil
	s.mu.Unlock()
	if len(lines) == 0 {
		return
	}
	text := []byte(strings.Join(lines, "\n") + "\n")
	// Best effort: a status that cannot be written does not stop a run.
	if s.p != nil {
		s.p.Write(text)
	} else {
		s.out.Write(text)
	}
}

// Close writes what is pending and, on a terminal, draws the status a
// last time and leaves the cursor on the line below it. Events after
// Close are ignored.
func (s *status) Close() {
	s.close.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.ended = max(time.Since(s.origin), time.Nanosecond)
		if len(s.partial) > 0 {
			s.pending = append(s.pending, string(s.partial))
			s.partial = nil
		}
		s.mu.Unlock()
		close(s.stop)
		<-s.loopDone
		if s.p != nil {
			for _, b := range s.bars {
				b.SetTotal(-1, true)
			}
			s.p.Wait()
		}
	})
}

// clean keeps control characters (a device's text in a reason) away
// from the terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
}

// fmtElapsed is 12.3s, 2m05s or 1h02m03s.
func fmtElapsed(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dh%02dm%02ds", d/time.Hour, d%time.Hour/time.Minute, d%time.Minute/time.Second)
}

// fmtETA is an estimate in whole units: <1s, 28s, 2m05s, 1h02m.
func fmtETA(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d <= 0:
		// Some cycles are left: they take more than nothing.
		return "<1s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", d/time.Minute, d%time.Minute/time.Second)
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%dh%02dm", d/time.Hour, d%time.Hour/time.Minute)
}
