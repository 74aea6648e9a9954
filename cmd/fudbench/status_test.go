package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"

	"github.com/fudbench/fudbench/results"
)

// ev is a synthetic event at t seconds into the run.
func ev(t float64, board string, cycle int, k results.Kind, text string, attrs ...string) results.Event {
	e := results.Event{T: time.Duration(t * float64(time.Second)), Board: board, Cycle: cycle, Kind: k, Text: text, Block: -1}
	for i := 0; i+1 < len(attrs); i += 2 {
		if e.Attrs == nil {
			e.Attrs = map[string]string{}
		}
		e.Attrs[attrs[i]] = attrs[i+1]
	}
	return e
}

func block(t float64, board string, cycle int, n int64) results.Event {
	e := ev(t, board, cycle, results.BlockSent, "")
	e.Block = n
	return e
}

// TestStatusPlain feeds runs to the status as a CI log sees it: one line
// per finished cycle with the count, elapsed and ETA, nothing else.
func TestStatusPlain(t *testing.T) {
	acceptAllOnB := func(board, outcome string) bool { return board == "b" || outcome == "updated" }
	for _, tc := range []struct {
		name     string
		boards   []string
		planned  map[string]int
		done     map[string]int
		accepted func(board, outcome string) bool
		events   []results.Event
		want     string
	}{{
		name:    "two boards side by side",
		boards:  []string{"a", "b"},
		planned: map[string]int{"a": 2, "b": 2}, accepted: acceptAllOnB,
		events: []results.Event{
			ev(0, "a", 1, results.CycleStart, "after_block 3"),
			ev(0, "b", 1, results.CycleStart, "during_block 11 +1ms"),
			ev(0.1, "a", 1, results.Phase, results.PhaseBaseline),
			ev(1, "a", 1, results.UpdateStart, "", "blocks", "24"),
			block(1.1, "a", 1, 0),
			ev(2, "a", 1, results.ConsoleLine, "APP 2.0.0 ready"),
			ev(10, "a", 1, results.CycleOutcome, "updated"),
			ev(10, "a", 2, results.CycleStart, "after_block 7"),
			ev(11, "c", 1, results.CycleOutcome, "bricked"), // not a board of the status
			ev(12, "b", 1, results.CycleOutcome, "bricked", "reflashed", "true"),
			ev(12, "b", 2, results.CycleStart, "after_block 1"),
			ev(21, "a", 2, results.CycleOutcome, "rolled-back", "reason", "slot B: bad digest\x1b[2J\nAPP"),
			ev(24.5, "b", 2, results.CycleOutcome, "missed-cut"),
		},
		// ETA: a's mean is 10s, b has none yet (the mean of all, 10s)
		// and is 10s into its cycle; then b's 12s, a 2s into its cycle;
		// then b 9s into a 12s cycle.
		want: "[1/4] a cycle 1 (after_block 3): updated  10.0s elapsed, ETA 10s\n" +
			"[2/4] b cycle 1 (during_block 11 +1ms): bricked — reflashed  12.0s elapsed, ETA 12s\n" +
			"[3/4] a cycle 2 (after_block 7): rolled-back: slot B: bad digest [2J APP — FAIL  21.0s elapsed, ETA 3s\n" +
			"[4/4] b cycle 2 (after_block 1): missed-cut — FAIL  24.5s elapsed\n",
	}, {
		name:    "resumed, then out of the run",
		boards:  []string{"a"},
		planned: map[string]int{"a": 3}, done: map[string]int{"a": 1},
		events: []results.Event{
			ev(0, "a", 2, results.CycleStart, "after_block 2"),
			ev(0.5, "a", 2, results.Phase, results.PhaseOff),
			ev(5, "a", 2, results.CycleOutcome, "infra-error", "reason", "power switch failed"),
			ev(5, "a", 3, results.CycleOutcome, "infra-error", "reason", "not run: board a out of the run since cycle 2"),
		},
		want: "[2/3] a cycle 2 (after_block 2): infra-error: power switch failed — FAIL  5.0s elapsed, ETA 5s\n" +
			"[3/3] a cycle 3: infra-error: not run: board a out of the run since cycle 2 — FAIL  5.0s elapsed\n",
	}, {
		name:    "boards one after the other, plan unknown",
		boards:  []string{"a", "b"},
		planned: map[string]int{"a": 2, "b": 1},
		events: []results.Event{
			ev(0, "a", 1, results.CycleStart, "none"),
			ev(4, "a", 1, results.CycleOutcome, "updated"),
			ev(4, "a", 2, results.CycleStart, "none"),
			ev(7, "a", 2, results.CycleOutcome, "updated"),
			ev(7, "b", 1, results.CycleStart, "none"),
			ev(8.25, "b", 1, results.CycleOutcome, "updated"),
		},
		// b has not started: its cycle comes after a's.
		want: "[1/3] a cycle 1 (none): updated  4.0s elapsed, ETA 8s\n" +
			"[2/3] a cycle 2 (none): updated  7.0s elapsed, ETA 4s\n" +
			"[3/3] b cycle 1 (none): updated  8.2s elapsed\n",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			s := newStatus(&out, false, tc.boards, tc.planned, tc.done, tc.accepted)
			for _, e := range tc.events {
				s.Emit(e)
			}
			s.Close()
			s.Emit(ev(30, tc.boards[0], 9, results.CycleOutcome, "updated"))
			s.Close()
			if got := out.String(); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestStatusWrite gives the status log lines: printed whole, in order
// with the cycles' lines; what has no newline yet waits for one or for
// Close; after Close they go straight out.
func TestStatusWrite(t *testing.T) {
	var out bytes.Buffer
	s := newStatus(&out, false, []string{"a"}, map[string]int{"a": 1}, nil, nil)
	fmt.Fprint(s, "log one\nlog t")
	fmt.Fprint(s, "wo\n")
	s.Emit(ev(0, "a", 1, results.CycleStart, "none"))
	s.Emit(ev(1, "a", 1, results.CycleOutcome, "updated"))
	fmt.Fprint(s, "no newline")
	s.Close()
	fmt.Fprint(s, "after\n")
	want := "log one\nlog two\n[1/1] a cycle 1 (none): updated  1.0s elapsed\nno newline\nafter\n"
	if got := out.String(); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatusHeaderFits(t *testing.T) {
	s := newStatus(&bytes.Buffer{}, false, []string{"a"}, map[string]int{"a": 40}, map[string]int{"a": 12}, nil)
	defer s.Close()
	s.Emit(ev(0, "a", 13, results.CycleStart, "after_block 1"))
	s.Emit(ev(2, "a", 13, results.CycleOutcome, "bricked"))
	for _, tc := range []struct {
		width int
		want  string
	}{
		{100, "13/40 cycles [=======>----------------]  1 failed  12.3s elapsed  ETA 54s"},
		{60, "13/40 cycles [===>-------]  1 failed  12.3s elapsed  ETA 54s"},
		{50, "13/40 cycles  1 failed  12.3s elapsed  ETA 54s"},
	} {
		if got := s.headerLine(12300*time.Millisecond, tc.width); got != tc.want {
			t.Errorf("width %d:\n got %q\nwant %q", tc.width, got, tc.want)
		}
	}
}

// TestStatusTerminal runs the status on a real pseudo-terminal and reads
// the screen a terminal would show: the failure lines kept above the
// live area, the header counts, each board's phase, and the cursor on a
// fresh line after Close.
func TestStatusTerminal(t *testing.T) {
	ptm, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptm.Close()
	defer tty.Close()
	const cols = 100
	if err := pty.Setsize(tty, &pty.Winsize{Rows: 30, Cols: cols}); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		raw []byte
	)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ptm.Read(buf)
			mu.Lock()
			raw = append(raw, buf[:n]...)
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()

	boards := []string{"sim-safe", "sim-naive", "third"}
	planned := map[string]int{"sim-safe": 3, "sim-naive": 3, "third": 3}
	s := newStatus(tty, true, boards, planned, nil, func(board, outcome string) bool {
		return outcome == "updated" || board == "sim-naive" && outcome == "bricked"
	})
	clock := results.NewClock()
	emit := func(board string, cycle int, k results.Kind, text string, attrs ...string) {
		e := clock.Stamp(board, cycle, k)
		e.Text = text
		if len(attrs) == 2 {
			e.Attrs = map[string]string{attrs[0]: attrs[1]}
		}
		s.Emit(e)
		time.Sleep(20 * time.Millisecond) // a few redraws along the way
	}
	for c := 1; c <= 3; c++ {
		emit("third", c, results.CycleStart, "after_block "+strconv.Itoa(c))
		emit("third", c, results.Phase, results.PhaseVerify)
		if c == 2 {
			emit("third", c, results.CycleOutcome, "rolled-back", "reason", "bad digest")
		} else {
			emit("third", c, results.CycleOutcome, "updated")
		}
	}
	fmt.Fprintln(s, `level=WARN msg="power switch slow" board=sim-safe`)
	emit("sim-safe", 1, results.CycleStart, "after_block 3")
	emit("sim-safe", 1, results.CycleOutcome, "updated")
	emit("sim-safe", 2, results.CycleStart, "during_block 11 +1ms")
	emit("sim-safe", 2, results.UpdateStart, "", "blocks", "24")
	emit("sim-safe", 2, results.Phase, results.PhaseTransfer)
	for n := range int64(8) {
		e := clock.Stamp("sim-safe", 2, results.BlockSent)
		e.Block = n
		s.Emit(e)
	}
	emit("sim-naive", 1, results.CycleStart, "after_block 2")
	emit("sim-naive", 1, results.Phase, results.PhaseReflash)
	emit("sim-naive", 1, results.CycleOutcome, "bricked", "reflashed", "true")
	emit("sim-naive", 2, results.CycleStart, "after_block 5")
	emit("sim-naive", 2, results.Phase, results.PhaseReflash)
	time.Sleep(3 * statusRefresh)
	s.Close()
	fmt.Fprintln(tty, "END")

	// The terminal's output up to END; the reader goes on until the
	// pseudo-terminal closes.
	var out []byte
	for deadline := time.Now().Add(5 * time.Second); ; {
		mu.Lock()
		out = append(out[:0], raw...)
		mu.Unlock()
		if bytes.Contains(out, []byte("END\r\n")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no END from the terminal; read %q", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := bytes.Count(out, []byte("\x1b[")); n < 5 {
		t.Errorf("%d escape sequences: the status was not redrawn in place", n)
	}
	scr := emulate(t, out, cols)
	t.Logf("screen:\n%s", strings.Join(scr, "\n"))
	want := []*regexp.Regexp{
		regexp.MustCompile(`^third cycle 2 \(after_block 2\): rolled-back: bad digest — FAIL$`),
		regexp.MustCompile(`^level=WARN msg="power switch slow" board=sim-safe$`),
		regexp.MustCompile(`^sim-naive cycle 1 \(after_block 2\): bricked — reflashed$`),
		regexp.MustCompile(`^5/9 cycles \[=+>-+\]  1 failed  \d+\.\ds elapsed  ETA \S+$`),
		regexp.MustCompile(`^  sim-safe   cycle 2/3  during_block 11 \+1ms  transferring block 7/24$`),
		regexp.MustCompile(`^  sim-naive  cycle 2/3  after_block 5 +reflashing$`),
		regexp.MustCompile(`^  third      cycle 3/3 +done$`),
		regexp.MustCompile(`^END$`),
	}
	if len(scr) != len(want) {
		t.Fatalf("screen has %d lines, want %d", len(scr), len(want))
	}
	for i, re := range want {
		if !re.MatchString(scr[i]) {
			t.Errorf("line %d: %q does not match %s", i+1, scr[i], re)
		}
	}
}

// emulate plays a terminal's output onto a screen as wide as cols and as
// high as needed, and returns its lines. It knows what the status may
// send: text, CR, LF, cursor up (CSI n A) and erase (CSI J, CSI K).
func emulate(t *testing.T, out []byte, cols int) []string {
	t.Helper()
	csi := regexp.MustCompile(`^\[(\??)(\d*)([A-Za-z])`)
	var lines [][]rune
	row, col := 0, 0
	at := func(r int) {
		for len(lines) <= r {
			lines = append(lines, nil)
		}
	}
	for i := 0; i < len(out); {
		c, size := utf8.DecodeRune(out[i:])
		i += size
		switch {
		case c == '\r':
			col = 0
		case c == '\n':
			row++
		case c == 0x1b:
			m := csi.FindSubmatch(out[i:])
			if m == nil {
				t.Fatalf("unknown escape at %d: %q", i, out[i:min(i+8, len(out))])
			}
			i += len(m[0])
			n, _ := strconv.Atoi(string(m[2]))
			switch {
			case len(m[1]) > 0 && (m[3][0] == 'l' || m[3][0] == 'h'): // cursor shown or hidden
			case m[3][0] == 'A':
				row = max(row-max(n, 1), 0)
			case m[3][0] == 'J' && n == 0:
				at(row)
				lines[row] = lines[row][:min(col, len(lines[row]))]
				lines = lines[:row+1]
			case m[3][0] == 'K' && n == 0:
				at(row)
				lines[row] = lines[row][:min(col, len(lines[row]))]
			default:
				t.Fatalf("escape %q not emulated", m[0])
			}
		case c < 0x20:
			t.Fatalf("control character %#x in the output", c)
		default:
			if col == cols {
				row, col = row+1, 0
			}
			at(row)
			for len(lines[row]) <= col {
				lines[row] = append(lines[row], ' ')
			}
			lines[row][col] = c
			col++
		}
	}
	var scr []string
	for _, l := range lines {
		scr = append(scr, strings.TrimRight(string(l), " "))
	}
	for len(scr) > 0 && scr[len(scr)-1] == "" && len(scr)-1 > row {
		scr = scr[:len(scr)-1]
	}
	// The cursor's line is where the next output goes: empty after Close.
	if row < len(scr) && scr[row] != "" {
		t.Errorf("cursor left on line %d: %q", row+1, scr[row])
	}
	return scr[:min(row, len(scr))]
}

// TestStatusConcurrentEmit has 8 boards emit 10k events each at once, in
// both modes: run it with -race.
func TestStatusConcurrentEmit(t *testing.T) {
	const boards, events, perCycle = 8, 10_000, 50
	for _, tty := range []bool{false, true} {
		t.Run(fmt.Sprintf("tty=%v", tty), func(t *testing.T) {
			var names []string
			planned := map[string]int{}
			for i := range boards {
				n := fmt.Sprintf("b%d", i)
				names = append(names, n)
				planned[n] = events / perCycle
			}
			var out bytes.Buffer
			s := newStatus(&out, tty, names, planned, nil, nil)
			clock := results.NewClock()
			var wg sync.WaitGroup
			for _, n := range names {
				wg.Go(func() {
					for i := range events {
						cycle := i/perCycle + 1
						var e results.Event
						switch i % perCycle {
						case 0:
							e = clock.Stamp(n, cycle, results.CycleStart)
							e.Text = "after_block 3"
						case 1:
							e = clock.Stamp(n, cycle, results.UpdateStart)
							e.Attrs = map[string]string{"blocks": "40"}
						case 2, 30:
							e = clock.Stamp(n, cycle, results.Phase)
							e.Text = results.PhaseTransfer
						case perCycle - 1:
							e = clock.Stamp(n, cycle, results.CycleOutcome)
							e.Text = "updated"
							if cycle%7 == 0 {
								e.Text = "bricked"
							}
						default:
							e = clock.Stamp(n, cycle, results.BlockSent)
							e.Block = int64(i % perCycle)
						}
						s.Emit(e)
					}
				})
			}
			wg.Wait()
			s.Close()
			total := boards * events / perCycle
			if s.done != total || s.failed != boards*(events/perCycle/7) {
				t.Errorf("%d cycles done, %d failed; want %d, %d", s.done, s.failed, total, boards*(events/perCycle/7))
			}
			text := out.String()
			if tty {
				if !strings.Contains(text, fmt.Sprintf("%d/%d cycles [", total, total)) {
					t.Errorf("the last screen lacks the count %d/%d: %q", total, total, text[max(len(text)-600, 0):])
				}
			} else if n := strings.Count(text, "\n"); n != total || !strings.Contains(text, fmt.Sprintf("[%d/%d] ", total, total)) {
				t.Errorf("%d lines, want %d", n, total)
			}
		})
	}
}

// BenchmarkStatusEmit is the cost of a block.sent event, the most
// frequent on the hot path, with a redrawing status.
func BenchmarkStatusEmit(b *testing.B) {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	s := newStatus(devNull, true, []string{"a"}, map[string]int{"a": 1}, nil, nil)
	defer s.Close()
	s.Emit(ev(0, "a", 1, results.CycleStart, "after_block 3"))
	e := block(1, "a", 1, 7)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s.Emit(e)
		}
	})
}

// TestStatusDemo shows the live status on a terminal with a made-up run:
// FUDBENCH_STATUS_DEMO=1 go test -run StatusDemo (from a terminal).
func TestStatusDemo(t *testing.T) {
	if os.Getenv("FUDBENCH_STATUS_DEMO") == "" {
		t.Skip("set FUDBENCH_STATUS_DEMO=1 to see the live status")
	}
	boardNames := []string{"sim-safe", "sim-naive", "nucleo-f429"}
	const cycles = 6
	planned := map[string]int{}
	for _, b := range boardNames {
		planned[b] = cycles
	}
	st := newStatus(os.Stdout, isTerminal(os.Stdout), boardNames, planned, nil, func(board, outcome string) bool {
		return outcome == "updated" || board == "sim-naive" && outcome == "bricked"
	})
	clock := results.NewClock()
	var wg sync.WaitGroup
	for bi, b := range boardNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(bi), 7))
			ev := func(n int, k results.Kind, text string, block int64, attrs map[string]string) {
				e := clock.Stamp(b, n, k)
				e.Text, e.Block, e.Attrs = text, block, attrs
				st.Emit(e)
			}
			sleep := func(ms int) { time.Sleep(time.Duration(ms+r.IntN(ms/2+1)) * time.Millisecond) }
			for n := 1; n <= cycles; n++ {
				cut := r.IntN(20) + 2
				ev(n, results.CycleStart, fmt.Sprintf("after_block %d", cut), -1, nil)
				ev(n, results.Phase, results.PhaseBaseline, -1, nil)
				sleep(300)
				ev(n, results.UpdateStart, "", -1, map[string]string{"blocks": "24"})
				ev(n, results.Phase, results.PhaseTransfer, -1, nil)
				for k := 0; k <= cut; k++ {
					ev(n, results.BlockSent, "", int64(k), nil)
					sleep(40)
				}
				ev(n, results.Phase, results.PhaseOff, -1, nil)
				sleep(200)
				ev(n, results.Phase, results.PhaseRecovery, -1, nil)
				sleep(300)
				outcome, attrs := "updated", map[string]string(nil)
				switch {
				case b == "sim-naive" && n%2 == 1:
					outcome = "bricked"
					ev(n, results.Phase, results.PhaseClassify, -1, nil)
					sleep(100)
					ev(n, results.Phase, results.PhaseReflash, -1, nil)
					sleep(800)
					attrs = map[string]string{"reflashed": "true"}
				case b == "nucleo-f429" && n == 4:
					outcome = "rolled-back"
					attrs = map[string]string{"reason": "slot B failed its digest check"}
					ev(n, results.Phase, results.PhaseClassify, -1, nil)
					sleep(100)
				default:
					ev(n, results.Phase, results.PhaseTransfer, -1, nil)
					for k := cut + 1; k < 24; k++ {
						ev(n, results.BlockSent, "", int64(k), nil)
						sleep(40)
					}
					ev(n, results.Phase, results.PhaseVerify, -1, nil)
					sleep(200)
					ev(n, results.Phase, results.PhaseClassify, -1, nil)
					sleep(100)
				}
				ev(n, results.CycleOutcome, outcome, -1, attrs)
			}
		}()
	}
	wg.Wait()
	st.Close()
	fmt.Println("(the run's table would follow here)")
}
