package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"go.bug.st/serial/enumerator"

	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim/simconsole"
)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

func newSim(t *testing.T, link string, reenumerate bool) *simconsole.Console {
	t.Helper()
	sc, err := simconsole.New(simconsole.Options{Link: link, Reenumerate: reenumerate, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc
}

func open(t *testing.T, cfg Config, opts Options) *Console {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet()
	}
	c, err := Open(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func expect(t *testing.T, c *Console, cur Cursor, pattern string) Line {
	t.Helper()
	l, err := c.ExpectFrom(ctxT(t, 5*time.Second), cur, regexp.MustCompile(pattern))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLinesAndEvents(t *testing.T) {
	link := filepath.Join(t.TempDir(), "by-id", "board")
	sc := newSim(t, link, false)
	mem := &results.Memory{}
	clock := results.NewClock()
	c := open(t, Config{Path: link}, Options{Board: "b1", Clock: clock, Sink: mem, Cycle: func() int { return 7 }})
	if !c.Connected() {
		t.Fatal("not connected after Open with the port present")
	}
	if st := c.Stats(); st.Port != sc.Path() || st.LastError != "" {
		t.Fatalf("stats = %+v, want port %s", st, sc.Path())
	}
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)

	mark := c.Mark()
	var got []Line
	cur := mark
	for i := range 5 {
		// One line at a time, so each is read after the previous one.
		sc.Printf("line %d", i)
		l := expect(t, c, cur, fmt.Sprintf("^line %d$", i))
		got = append(got, l)
		cur = l.Next()
	}
	for i, l := range got {
		if l.Seq != uint64(mark)+uint64(i) {
			t.Errorf("line %d: seq %d, want %d", i, l.Seq, uint64(mark)+uint64(i))
		}
		if l.Wall.Sub(clock.Start()) != l.T {
			t.Errorf("line %d: T %v does not match wall %v", i, l.T, l.Wall)
		}
		if i > 0 && l.T <= got[i-1].T {
			t.Errorf("line %d: T %v before the previous line's %v", i, l.T, got[i-1].T)
		}
	}
	if got[0].T <= 0 || got[4].T > clock.Since() {
		t.Errorf("times %v .. %v not within the run (now %v)", got[0].T, got[4].T, clock.Since())
	}

	lines := mem.OfKind(results.ConsoleLine)
	if len(lines) != 5 {
		t.Fatalf("%d line events, want 5: %+v", len(lines), lines)
	}
	for i, e := range lines {
		want := results.Event{T: got[i].T, Wall: got[i].Wall, Board: "b1", Cycle: 7, Kind: results.ConsoleLine, Block: -1, Text: got[i].Text}
		if e.T != want.T || !e.Wall.Equal(want.Wall) || e.Board != want.Board || e.Cycle != want.Cycle ||
			e.Kind != want.Kind || e.Block != want.Block || e.Text != want.Text {
			t.Errorf("event %d = %+v, want %+v", i, e, want)
		}
	}
	if n := len(mem.Events()); n != 5 {
		t.Errorf("%d events, want only the 5 lines: %+v", n, mem.Events())
	}
	if last := c.Last(2); len(last) != 2 || last[0].Text != "line 3" || last[1].Text != "line 4" {
		t.Errorf("Last(2) = %+v", last)
	}
	if st := c.Stats(); st.Lines != 5 || st.Gaps != 0 || st.Reopens != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// TestMarkCatchesEarlyLines is the recovery-banner case: the line arrives
// between Mark and ExpectFrom, which must still see it, while Expect (which
// only looks forward) must not.
func TestMarkCatchesEarlyLines(t *testing.T) {
	sc := newSim(t, "", false)
	c := open(t, Config{Path: sc.Path()}, Options{Board: "b1"})
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)

	mark := c.Mark()
	sc.Printf("recovery v2 ready")
	waitFor(t, "the banner", func() bool { return c.Stats().Lines == 1 })
	banner := regexp.MustCompile(`recovery v\d`)
	if _, err := c.Expect(ctxT(t, 50*time.Millisecond), banner); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Expect saw a line from before the call: %v", err)
	}
	l, err := c.ExpectFrom(ctxT(t, time.Second), mark, banner)
	if err != nil || l.Text != "recovery v2 ready" {
		t.Fatalf("ExpectFrom = %+v, %v", l, err)
	}
	// A cursor after the banner waits for the next one.
	sc.Printf("recovery v3 ready")
	if l, err := c.ExpectFrom(ctxT(t, 5*time.Second), l.Next(), banner); err != nil || l.Text != "recovery v3 ready" {
		t.Fatalf("ExpectFrom(next) = %+v, %v", l, err)
	}
}

func TestLinesLost(t *testing.T) {
	sc := newSim(t, "", false)
	c := open(t, Config{Path: sc.Path()}, Options{Board: "b1", KeepLines: 4})
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	mark := c.Mark()
	for i := range 10 {
		sc.Printf("x %d", i)
	}
	waitFor(t, "10 lines", func() bool { return c.Stats().Lines == 10 })
	if _, err := c.ExpectFrom(ctxT(t, time.Second), mark, regexp.MustCompile(`^x 0$`)); !errors.Is(err, ErrLinesLost) {
		t.Fatalf("ExpectFrom an evicted cursor = %v, want ErrLinesLost", err)
	}
	if l, err := c.ExpectFrom(ctxT(t, time.Second), mark, regexp.MustCompile(`^x 8$`)); err != nil || l.Seq != 8 {
		t.Fatalf("a kept line still matches: %+v, %v", l, err)
	}
	last := c.Last(100)
	if len(last) != 4 || last[0].Text != "x 6" || last[3].Text != "x 9" {
		t.Fatalf("Last(100) = %+v", last)
	}
	if len(c.Last(0)) != 0 || len(c.Last(-1)) != 0 {
		t.Fatal("Last of 0 or less returned lines")
	}
}

func TestExpectErrors(t *testing.T) {
	sc := newSim(t, "", false)
	missing := filepath.Join(t.TempDir(), "none")
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"connected", sc.Path(), []string{"console b1", `"^never$"`, "port " + sc.Path()}},
		{"gone", missing, []string{"console b1", `"^never$"`, "port gone", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, Config{Path: tt.path}, Options{Board: "b1"})
			start := time.Now()
			_, err := c.Expect(ctxT(t, 50*time.Millisecond), regexp.MustCompile(`^never$`))
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want a deadline", err)
			}
			if d := time.Since(start); d < 50*time.Millisecond || d > 2*time.Second {
				t.Errorf("gave up after %v", d)
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
}

// TestReenumerate is a board powering its adapter: the pty vanishes with
// the link, and comes back as a new pty behind the same link.
func TestReenumerate(t *testing.T) {
	link := filepath.Join(t.TempDir(), "by-id", "usb-board-if00")
	sc := newSim(t, link, true)
	mem := &results.Memory{}
	cycle := 1
	var cmu sync.Mutex
	c := open(t, Config{Path: link}, Options{Board: "b2", Sink: mem, Reopen: 5 * time.Millisecond,
		Cycle: func() int { cmu.Lock(); defer cmu.Unlock(); return cycle }})
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	sc.Printf("app v1")
	expect(t, c, 0, "^app v1$")

	old := sc.Path()
	sc.Printf("cut me off")
	sc.Detach()
	waitFor(t, "the gap", func() bool { return len(mem.OfKind(results.ConsoleGap)) == 1 })
	if c.Connected() {
		t.Fatal("connected with the port gone")
	}
	cmu.Lock()
	cycle = 2
	cmu.Unlock()
	off := 50 * time.Millisecond
	time.Sleep(off)
	if c.Stats().LastError == "" || c.Stats().Port != "" {
		t.Errorf("stats while gone = %+v", c.Stats())
	}
	mark := c.Mark()
	if err := sc.Attach(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if sc.Path() == old {
		t.Fatal("the simulated adapter kept its name")
	}
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	sc.Printf("recovery banner")
	l := expect(t, c, mark, "^recovery banner$")

	gap := mem.OfKind(results.ConsoleGap)[0]
	if gap.Board != "b2" || gap.Cycle != 1 || gap.Block != -1 || gap.Text == "" || gap.Attrs["port"] != old {
		t.Errorf("gap event = %+v", gap)
	}
	re := mem.OfKind(results.ConsoleReopen)
	if len(re) != 1 {
		t.Fatalf("%d reopen events, want 1", len(re))
	}
	if re[0].Attrs["port"] != sc.Path() || re[0].Attrs["previous"] != old || re[0].Cycle != 2 || re[0].Block != -1 {
		t.Errorf("reopen event = %+v, want port %s previous %s", re[0], sc.Path(), old)
	}
	if re[0].Dur < off || re[0].T-gap.T < re[0].Dur-time.Millisecond || re[0].T < gap.T {
		t.Errorf("reopen Dur %v after a gap at %v, reopen at %v (off for %v)", re[0].Dur, gap.T, re[0].T, off)
	}
	if l.T < re[0].T {
		t.Errorf("line at %v before the reopen at %v", l.T, re[0].T)
	}
	if st := c.Stats(); st.Gaps != 1 || st.Reopens != 1 || st.Port != sc.Path() || st.LastError != "" {
		t.Errorf("stats = %+v", st)
	}
	t.Logf("gap %v (board off %v), reopen to line %v", re[0].Dur, off, l.T-re[0].T)
}

// TestPortAppearsLater is a board that is off when the run starts.
func TestPortAppearsLater(t *testing.T) {
	link := filepath.Join(t.TempDir(), "by-id", "late")
	mem := &results.Memory{}
	c := open(t, Config{Path: link}, Options{Board: "b3", Sink: mem, Reopen: 5 * time.Millisecond})
	if c.Connected() {
		t.Fatal("connected to a missing port")
	}
	gaps := mem.OfKind(results.ConsoleGap)
	if len(gaps) != 1 || !strings.Contains(gaps[0].Text, "not available at open") || !strings.Contains(gaps[0].Text, "no such file") {
		t.Fatalf("gap events = %+v", gaps)
	}
	err := c.WaitConnected(ctxT(t, 30*time.Millisecond))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), link) {
		t.Fatalf("WaitConnected = %v, want a deadline naming %s", err, link)
	}

	sc := newSim(t, link, true)
	if err := c.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	sc.Printf("hello")
	expect(t, c, 0, "^hello$")
	re := mem.OfKind(results.ConsoleReopen)
	if len(re) != 1 || re[0].Attrs["port"] != sc.Path() || re[0].Dur < 30*time.Millisecond {
		t.Fatalf("reopen events = %+v", re)
	}
	if _, ok := re[0].Attrs["previous"]; ok {
		t.Errorf("reopen names a previous port it never had: %+v", re[0])
	}
}

// rawPty is a pty the test writes arbitrary bytes into.
func rawPty(t *testing.T) (master *os.File, path string) {
	t.Helper()
	m, s, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	// The test keeps the slave open too, so the pty never hangs up between
	// readers.
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s.Name()
}

func TestRawBytes(t *testing.T) {
	long := strings.Repeat("x", 2*MaxLine+100)
	wide := strings.Repeat("é€", 1000) // 5000 bytes, runes straddle MaxLine
	tests := []struct {
		name  string
		write []string
		want  []string
	}{
		{"garbage", []string{"\xff\xfea\x00\xc3\r\n"}, []string{"\uFFFDa\x00\uFFFD"}},
		{"long line", []string{long + "\r\n"}, []string{long[:MaxLine], long[MaxLine : 2*MaxLine], long[2*MaxLine:]}},
		{"wide runes", []string{wide + "\n"}, []string{wide[:MaxLine-1], wide[MaxLine-1:]}},
		{"line in pieces", []string{"abc", "def\r", "\n"}, []string{"abcdef"}},
		{"blank lines", []string{"\r\n\r\nend\r\n"}, []string{"", "", "end"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, path := rawPty(t)
			// A long PartialFlush: the pieces must make one line even on
			// a loaded machine.
			c := open(t, Config{Path: path, Baud: 9600}, Options{Board: "b4", PartialFlush: 2 * time.Second})
			ch, cancel := c.Subscribe()
			defer cancel()
			for _, w := range tt.write {
				if _, err := m.WriteString(w); err != nil {
					t.Fatal(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			for i, want := range tt.want {
				select {
				case l := <-ch:
					if l.Text != want {
						t.Fatalf("line %d = %q (%d bytes), want %q (%d bytes)", i, l.Text, len(l.Text), want, len(want))
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("line %d never came", i)
				}
			}
			select {
			case l := <-ch:
				t.Fatalf("extra line %q", l.Text)
			case <-time.After(150 * time.Millisecond):
			}
		})
	}
}

func TestPartialLineFlush(t *testing.T) {
	m, path := rawPty(t)
	c := open(t, Config{Path: path}, Options{Board: "b5"})
	mark := c.Mark()
	start := time.Now()
	if _, err := m.WriteString("login: "); err != nil {
		t.Fatal(err)
	}
	l := expect(t, c, mark, "^login: $")
	took := time.Since(start)
	if took < DefaultPartialFlush || took > DefaultPartialFlush+500*time.Millisecond {
		t.Errorf("prompt flushed after %v, want about %v", took, DefaultPartialFlush)
	}
	t.Logf("prompt without newline seen after %v", took)
	// The rest of the line, typed later, is a line of its own, and its
	// late newline makes no empty line.
	if _, err := m.WriteString("root\r\nok\r\n"); err != nil {
		t.Fatal(err)
	}
	expect(t, c, l.Next(), "^ok$")
	if last := c.Last(3); len(last) != 3 || last[0].Text != "login: " || last[1].Text != "root" || last[2].Text != "ok" {
		t.Fatalf("lines = %+v", last)
	}

	// A pending partial line is kept when the console closes.
	if _, err := m.WriteString("bye"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if last := c.Last(1); len(last) != 1 || last[0].Text != "bye" {
		t.Errorf("after Close, Last(1) = %+v", last)
	}
}

// fakeUSB is a replaceable port list.
type fakeUSB struct {
	mu    sync.Mutex
	ports []*enumerator.PortDetails
	err   error
	calls int
}

func (f *fakeUSB) set(err error, ports ...*enumerator.PortDetails) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ports, f.err = ports, err
}

func (f *fakeUSB) lookup() ([]*enumerator.PortDetails, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	var out []*enumerator.PortDetails
	for _, p := range f.ports {
		cp := *p // a real enumerator returns fresh values
		out = append(out, &cp)
	}
	return out, f.err
}

func usbPort(path, vid, pid, serial string) *enumerator.PortDetails {
	return &enumerator.PortDetails{Name: path, IsUSB: true, VID: vid, PID: pid, SerialNumber: serial}
}

func TestUSBFollowsAdapter(t *testing.T) {
	other := newSim(t, "", false)
	sc := newSim(t, "", true)
	f := &fakeUSB{}
	f.set(nil,
		&enumerator.PortDetails{Name: "/dev/ttyS0"},
		usbPort(other.Path(), "0483", "374B", "AAA"),
		usbPort(sc.Path(), "0483", "374b", "BBB"),
		usbPort("/dev/ttyUSB7", "10c4", "ea60", "BBB"),
	)
	mem := &results.Memory{}
	c := open(t, Config{USB: &USBMatch{VID: "0x483", PID: "374B", Serial: "BBB"}},
		Options{Board: "b6", Sink: mem, Lookup: f.lookup, Reopen: 5 * time.Millisecond})
	if st := c.Stats(); st.Port != sc.Path() {
		t.Fatalf("opened %q, want %s", st.Port, sc.Path())
	}
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	if other.ReaderOpen() {
		t.Fatal("the other adapter was opened too")
	}
	sc.Printf("on BBB")
	expect(t, c, 0, "^on BBB$")

	// Power cycle: the adapter comes back under another name, and
	// meanwhile an identical adapter shows up with the same serial number.
	old := sc.Path()
	sc.Detach()
	waitFor(t, "the gap", func() bool { return len(mem.OfKind(results.ConsoleGap)) == 1 })
	f.set(nil, usbPort(other.Path(), "0483", "374b", "AAA"))
	waitFor(t, "a lookup without a match", func() bool { return strings.Contains(c.Stats().LastError, "no port matches") })
	if err := sc.Attach(); err != nil {
		t.Fatal(err)
	}
	f.set(nil, usbPort(other.Path(), "0483", "374b", "AAA"), usbPort(sc.Path(), "0483", "374b", "BBB"))
	if err := c.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	re := mem.OfKind(results.ConsoleReopen)
	if len(re) != 1 || re[0].Attrs["port"] != sc.Path() || re[0].Attrs["previous"] != old || sc.Path() == old {
		t.Fatalf("reopen events = %+v (old %s, new %s)", re, old, sc.Path())
	}
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	mark := c.Mark()
	sc.Printf("back on BBB")
	expect(t, c, mark, "^back on BBB$")
}

func TestUSBNoMatch(t *testing.T) {
	sc := newSim(t, "", false)
	tests := []struct {
		name    string
		match   USBMatch
		err     error
		ports   []*enumerator.PortDetails
		wantErr []string
	}{
		{"no match", USBMatch{VID: "0483", PID: "374b", Serial: "CCC"}, nil,
			[]*enumerator.PortDetails{usbPort("/dev/ttyACM3", "0483", "374b", "AAA")},
			[]string{"usb 0483:374b serial CCC", "no port matches", "/dev/ttyACM3 0483:374b serial AAA"}},
		{"ambiguous", USBMatch{VID: "0483", PID: "374b"}, nil,
			[]*enumerator.PortDetails{usbPort("/dev/ttyACM3", "0483", "374b", "AAA"), usbPort("/dev/ttyACM4", "0483", "374b", "BBB")},
			[]string{"several ports match", "set the adapter's serial number"}},
		{"lookup fails", USBMatch{VID: "0483", PID: "374b"}, errors.New("sysfs unreadable"), nil,
			[]string{"list ports", "sysfs unreadable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeUSB{}
			f.set(tt.err, tt.ports...)
			mem := &results.Memory{}
			m := tt.match
			c := open(t, Config{USB: &m}, Options{Board: "b7", Sink: mem, Lookup: f.lookup, Reopen: 2 * time.Millisecond})
			gaps := mem.OfKind(results.ConsoleGap)
			if len(gaps) != 1 || c.Connected() {
				t.Fatalf("gap events = %+v, connected %v", gaps, c.Connected())
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(gaps[0].Text, s) {
					t.Errorf("gap text %q lacks %q", gaps[0].Text, s)
				}
			}
			waitFor(t, "more lookups", func() bool { f.mu.Lock(); defer f.mu.Unlock(); return f.calls >= 3 })
			if c.Connected() || len(mem.OfKind(results.ConsoleGap)) != 1 {
				t.Fatal("polling changed the state or repeated the gap event")
			}
			// The adapter shows up: polling finds it.
			f.set(nil, append(tt.ports, usbPort(sc.Path(), "0483", "374b", "CCC"))...)
			if tt.match.Serial == "" {
				f.set(nil, usbPort(sc.Path(), "0483", "374b", "CCC"))
			}
			if err := c.WaitConnected(ctxT(t, 5*time.Second)); err != nil {
				t.Fatal(err)
			}
			if c.Stats().Port != sc.Path() {
				t.Fatalf("opened %q", c.Stats().Port)
			}
			c.Close()
			waitFor(t, "the port to be released", func() bool { return !sc.ReaderOpen() })
		})
	}
}

func TestSubscribe(t *testing.T) {
	sc := newSim(t, "", false)
	c := open(t, Config{Path: sc.Path()}, Options{Board: "b8"})
	waitFor(t, "the board to notice the reader", sc.ReaderOpen)
	reader, cancelReader := c.Subscribe()
	idle, cancelIdle := c.Subscribe()
	defer cancelIdle()

	batch := func(from, to int) {
		for i := from; i < to; i++ {
			sc.Printf("n %d", i)
		}
		waitFor(t, "the lines", func() bool { return c.Stats().Lines == uint64(to) })
	}
	drain := func(from, to int) {
		for i := from; i < to; i++ {
			if l := <-reader; l.Text != fmt.Sprintf("n %d", i) {
				t.Fatalf("subscriber got %q, want n %d", l.Text, i)
			}
		}
	}
	batch(0, 200)
	drain(0, 200)
	batch(200, 300)
	drain(200, 300)
	if d := c.Stats().SubscriberDrops; d != 300-SubscriberBuffer {
		t.Errorf("drops = %d, want %d (the idle subscriber's)", d, 300-SubscriberBuffer)
	}
	cancelReader()
	cancelReader()
	if _, ok := <-reader; ok {
		t.Error("channel open after cancel")
	}
	c.Close()
	n := 0
	for range idle {
		n++
	}
	if n != SubscriberBuffer {
		t.Errorf("idle subscriber kept %d lines, want %d", n, SubscriberBuffer)
	}
	late, cancelLate := c.Subscribe()
	if _, ok := <-late; ok {
		t.Error("subscription after Close is open")
	}
	cancelLate()
}

func TestClose(t *testing.T) {
	sc := newSim(t, "", false)
	tests := []struct {
		name string
		path string
	}{
		{"connected", sc.Path()},
		{"gone", filepath.Join(t.TempDir(), "none")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, Config{Path: tt.path}, Options{Board: "b9"})
			errc := make(chan error, 1)
			go func() {
				_, err := c.Expect(context.Background(), regexp.MustCompile("never"))
				errc <- err
			}()
			time.Sleep(10 * time.Millisecond)
			start := time.Now()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Close took %v", d)
			}
			if err := <-errc; !errors.Is(err, ErrClosed) {
				t.Errorf("pending Expect = %v, want ErrClosed", err)
			}
			if err := c.Close(); err != nil {
				t.Errorf("second Close = %v", err)
			}
			if _, err := c.Expect(context.Background(), regexp.MustCompile("x")); !errors.Is(err, ErrClosed) {
				t.Errorf("Expect after Close = %v", err)
			}
			if err := c.WaitConnected(context.Background()); !errors.Is(err, ErrClosed) {
				t.Errorf("WaitConnected after Close = %v", err)
			}
			if c.Connected() || c.Stats().Port != "" {
				t.Errorf("after Close: connected %v, stats %+v", c.Connected(), c.Stats())
			}
		})
	}
	waitFor(t, "the port to be released", func() bool { return !sc.ReaderOpen() })
}

func TestOpenErrors(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		cfg  Config
		want string
	}{
		{"nothing", context.Background(), Config{}, "no path and no USB match"},
		{"both", context.Background(), Config{Path: "/dev/null", USB: &USBMatch{VID: "1", PID: "2"}}, "not both"},
		{"bad vid", context.Background(), Config{USB: &USBMatch{VID: "0x12345", PID: "2"}}, `usb vid "0x12345"`},
		{"bad pid", context.Background(), Config{USB: &USBMatch{VID: "1", PID: "g"}}, `usb pid "g"`},
		{"baud", context.Background(), Config{Path: "/dev/null", Baud: -1}, "baud -1"},
		{"ctx", done, Config{Path: "/dev/null"}, "context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Open(tt.ctx, tt.cfg, Options{Board: "b10", Logger: quiet()})
			if err == nil {
				c.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "b10") {
				t.Errorf("error %q lacks %q or the board", err, tt.want)
			}
		})
	}
}
