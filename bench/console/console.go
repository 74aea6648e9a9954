// Package console is a bench's serial console for one board: it reads the
// board's UART through go.bug.st/serial, cuts it into timestamped lines on
// the run's clock, records them as timeline events, and lets the bench wait
// for a line matching a pattern.
//
// A board's console disappears when the board loses power if the USB-serial
// adapter is powered by the board, and comes back under another name
// (/dev/ttyACM0 becomes /dev/ttyACM1). That is part of a power-cut test, not
// a failure of the run: the console notes a gap, keeps looking for the port
// — by a stable path such as a /dev/serial/by-id link, or by USB vendor,
// product and serial number through the enumerator — and reopens it when it
// is back.
//
// Lines: a line ends at '\n'; '\r' bytes are dropped; a partial line that
// has been pending for Options.PartialFlush (100 ms) since its first byte is
// emitted as a line, so a prompt without a newline can be matched; lines are
// cut at MaxLine bytes; each run of invalid UTF-8 becomes U+FFFD. A line's
// time is when its first byte was read; a line is emitted as a
// results.ConsoleLine event before waiters and subscribers get it.
//
// Ports: a configured path is resolved through its symlinks at every
// (re)open and the device itself is opened, so events name the real
// device (/dev/ttyACM1, /dev/pts/4). Any read error (EOF, EIO, the port
// closed) ends a connection; the console then looks for the port every
// Options.Reopen, never giving up until Close.
//
// Events (results.Event, Block -1): ConsoleLine for each line (Text);
// ConsoleGap when the port is lost, or is not there at Open (Text: why;
// Attrs "port": the device lost, if any); ConsoleReopen when it is open
// again (Dur: how long it was gone; Attrs "port": the device opened,
// "previous": the device lost, if any).
//
// Waiting: Mark returns a cursor, and ExpectFrom waits for the first line
// at or after a cursor that matches a pattern, so a line arriving between
// Mark and ExpectFrom — a recovery banner printed right after power-on — is
// never missed. Expect is ExpectFrom(Mark()).
package console

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"

	"github.com/fudbench/fudbench/results"
)

// Sentinel errors.
var (
	// ErrClosed is returned by waits on a closed Console.
	ErrClosed = errors.New("console closed")
	// ErrLinesLost means ExpectFrom was given a cursor older than the
	// lines the console keeps, and none of the kept ones matched: the line
	// may have been among those dropped. It is the bench's failure, not the
	// board's.
	ErrLinesLost = errors.New("lines after the cursor are no longer kept")
)

// Defaults for Config and Options.
const (
	DefaultBaud         = 115200
	DefaultReopen       = 20 * time.Millisecond
	DefaultPartialFlush = 100 * time.Millisecond
	DefaultKeepLines    = 200
	// SubscriberBuffer is how many lines a subscriber may fall behind
	// before it loses lines.
	SubscriberBuffer = 256
)

// Config says where a board's console is. Exactly one of Path and USB is
// set.
type Config struct {
	// Path is a device path or, better, a stable symlink to one
	// (/dev/serial/by-id/...): it is looked up again after every loss.
	Path string
	// USB finds the adapter through the enumerator instead.
	USB *USBMatch
	// Baud is the line speed; 0 means DefaultBaud.
	Baud int
}

// Options tune a Console. The zero value works.
type Options struct {
	// Board names the board in events, logs and errors.
	Board string
	// Clock is the run's clock; nil starts one at Open.
	Clock *results.Clock
	// Sink receives the console's events; nil discards them. It is called
	// from the console's reader goroutine.
	Sink results.Sink
	// Cycle returns the current cycle for events; nil means 0.
	Cycle func() int
	// Reopen is how often a lost port is looked for; 0 means DefaultReopen.
	Reopen time.Duration
	// PartialFlush is how long a line without a newline may stay pending;
	// 0 means DefaultPartialFlush.
	PartialFlush time.Duration
	// Lookup lists serial ports for Config.USB; nil means
	// enumerator.GetDetailedPortsList.
	Lookup func() ([]*enumerator.PortDetails, error)
	// Logger receives port lifecycle messages; nil means slog.Default().
	Logger *slog.Logger
	// KeepLines is how many recent lines are kept for Last and ExpectFrom;
	// 0 means DefaultKeepLines.
	KeepLines int
}

// Line is one console line.
type Line struct {
	Seq  uint64        // position in the console's stream, from 0
	T    time.Duration // on the run's clock, when its first byte was read
	Wall time.Time
	Text string
}

// Cursor is a position in a console's stream of lines.
type Cursor uint64

// Next is the cursor just after l, to wait for a line that follows it.
func (l Line) Next() Cursor { return Cursor(l.Seq + 1) }

// Stats describe a console's traffic and state.
type Stats struct {
	Lines           uint64 // lines received
	Gaps            uint64 // times the port was lost (or absent at Open)
	Reopens         uint64 // times it was found again
	SubscriberDrops uint64 // lines subscribers lost by not reading
	Port            string // the open port's path; "" while gone
	LastError       string // why the port is gone; "" while connected
}

// Console reads one board's serial console. Its methods are safe for
// concurrent use.
type Console struct {
	cfg          Config
	usb          USBMatch // normalized, when cfg.USB is set
	board        string
	clock        *results.Clock
	sink         results.Sink
	cycle        func() int
	reopen       time.Duration
	partialFlush time.Duration
	lookup       func() ([]*enumerator.PortDetails, error)
	log          *slog.Logger

	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
	closeOnce sync.Once
	connected atomic.Bool
	subDrops  atomic.Uint64

	mu      sync.Mutex
	closed  bool
	path    string // open port, "" while gone
	lastErr string
	gaps    uint64
	reopens uint64
	ring    []Line // line with Seq s is at ring[s % len(ring)]
	next    uint64 // Seq of the next line
	waiters map[*waiter]struct{}
	subs    map[*subscriber]struct{}
	connCh  chan struct{} // closed and replaced at each connection
}

type waiter struct {
	re   *regexp.Regexp
	from uint64
	ch   chan Line // buffered 1
}

type subscriber struct {
	ch     chan Line
	closed bool
}

// Open starts reading the console described by cfg. It makes one attempt
// to open the port before returning, so when the port is there, lines the
// board prints after Open returns are captured. When it is not — a board
// that powers its adapter is off at the start of a run — Open still
// succeeds: it records a ConsoleGap and the console keeps looking for the
// port every Options.Reopen until Close; WaitConnected waits for it. Only a
// bad cfg or a done ctx make Open fail; ctx bounds nothing after Open
// returns.
func Open(ctx context.Context, cfg Config, opts Options) (*Console, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("console %s: open: %w", opts.Board, err)
	}
	c := &Console{
		cfg:          cfg,
		board:        opts.Board,
		clock:        opts.Clock,
		sink:         opts.Sink,
		cycle:        opts.Cycle,
		reopen:       opts.Reopen,
		partialFlush: opts.PartialFlush,
		lookup:       opts.Lookup,
		log:          opts.Logger,
		done:         make(chan struct{}),
		waiters:      make(map[*waiter]struct{}),
		subs:         make(map[*subscriber]struct{}),
		connCh:       make(chan struct{}),
	}
	switch {
	case cfg.Path != "" && cfg.USB != nil:
		return nil, fmt.Errorf("console %s: set either a path or a USB match, not both", opts.Board)
	case cfg.Path == "" && cfg.USB == nil:
		return nil, fmt.Errorf("console %s: no path and no USB match", opts.Board)
	case cfg.USB != nil:
		m, err := cfg.USB.normalize()
		if err != nil {
			return nil, fmt.Errorf("console %s: %w", opts.Board, err)
		}
		c.usb = m
	}
	if cfg.Baud < 0 {
		return nil, fmt.Errorf("console %s: baud %d", opts.Board, cfg.Baud)
	}
	if c.cfg.Baud == 0 {
		c.cfg.Baud = DefaultBaud
	}
	if c.clock == nil {
		c.clock = results.NewClock()
	}
	if c.sink == nil {
		c.sink = results.Discard
	}
	if c.cycle == nil {
		c.cycle = func() int { return 0 }
	}
	if c.reopen <= 0 {
		c.reopen = DefaultReopen
	}
	if c.partialFlush <= 0 {
		c.partialFlush = DefaultPartialFlush
	}
	if c.lookup == nil {
		c.lookup = func() ([]*enumerator.PortDetails, error) { return enumerator.GetDetailedPortsList() }
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.log = c.log.With("component", "console", "board", c.board)
	keep := opts.KeepLines
	if keep <= 0 {
		keep = DefaultKeepLines
	}
	c.ring = make([]Line, keep)

	p, path, err := c.tryOpen()
	var gapStart time.Time
	if err != nil {
		gapStart = time.Now()
		c.log.Debug("console port not available yet; looking for it", "err", err)
		c.lost("", fmt.Errorf("not available at open: %w", err))
	} else {
		c.found(path, "", time.Time{})
	}
	c.wg.Add(1)
	go c.run(p, path, gapStart)
	return c, nil
}

// where describes the port for messages.
func (c *Console) where() string {
	if c.cfg.USB != nil {
		return "usb " + c.usb.String()
	}
	return c.cfg.Path
}

// resolve finds the port's current path.
func (c *Console) resolve() (string, error) {
	if c.cfg.USB == nil {
		// Following the link each time finds a by-id link's new target, and
		// a link left dangling by a vanished device counts as absent. The
		// device itself is opened so that the events name it.
		return filepath.EvalSymlinks(c.cfg.Path)
	}
	ports, err := c.lookup()
	if err != nil {
		return "", fmt.Errorf("usb %s: list ports: %w", c.usb, err)
	}
	return c.usb.pick(ports)
}

// tryOpen resolves and opens the port once.
func (c *Console) tryOpen() (serial.Port, string, error) {
	path, err := c.resolve()
	if err != nil {
		return nil, "", err
	}
	// No InitialStatusBits: ports without modem lines (ptys, some
	// adapters) would fail to open.
	p, err := serial.Open(path, &serial.Mode{BaudRate: c.cfg.Baud})
	if err != nil {
		return nil, path, fmt.Errorf("open %s: %w", path, err)
	}
	// The read timeout paces partial-line flushes and Close.
	if err := p.SetReadTimeout(c.tick()); err != nil {
		p.Close()
		return nil, path, fmt.Errorf("open %s: read timeout: %w", path, err)
	}
	return p, path, nil
}

func (c *Console) tick() time.Duration {
	return max(min(c.partialFlush/4, 25*time.Millisecond), time.Millisecond)
}

// run is the reader goroutine: it owns the port, and alone closes it.
func (c *Console) run(p serial.Port, path string, gapStart time.Time) {
	defer c.wg.Done()
	split := newSplitter(MaxLine)
	buf := make([]byte, 4096)
	for {
		if p == nil {
			prev := path
			p, path = c.search(gapStart)
			if p == nil {
				return // closed
			}
			c.found(path, prev, gapStart)
		}
		err := c.read(p, split, buf)
		c.connected.Store(false)
		if cerr := p.Close(); cerr != nil {
			c.log.Debug("console port close", "port", path, "err", cerr)
		}
		p = nil
		if err == nil {
			c.mu.Lock()
			c.path = ""
			c.mu.Unlock()
			return // closed
		}
		gapStart = time.Now()
		c.log.Debug("console port lost; looking for it again", "port", path, "err", err)
		c.lost(path, err)
	}
}

// read reads lines from p until a read fails (that error) or the console
// is closed (nil).
func (c *Console) read(p serial.Port, split *splitter, buf []byte) error {
	for {
		n, err := p.Read(buf)
		now := time.Now()
		if n > 0 {
			split.feed(buf[:n], now, c.addLine)
		}
		if err != nil {
			split.flush(c.addLine)
			return err
		}
		if split.due(now, c.partialFlush) {
			split.flush(c.addLine)
		}
		select {
		case <-c.done:
			split.flush(c.addLine)
			return nil
		default:
		}
	}
}

// search looks for the port every c.reopen until it opens (the port and
// its path) or the console is closed (nil).
func (c *Console) search(since time.Time) (serial.Port, string) {
	t := time.NewTimer(c.reopen)
	defer t.Stop()
	last := ""
	for {
		// Wait first: a device that just vanished often still has its node
		// for a moment, and opening it would only fail again.
		select {
		case <-c.done:
			return nil, ""
		case <-t.C:
		}
		p, path, err := c.tryOpen()
		if err == nil {
			return p, path
		}
		if msg := err.Error(); msg != last {
			last = msg
			c.log.Debug("console port still unavailable", "err", err, "gone", time.Since(since).Round(time.Millisecond))
			c.mu.Lock()
			c.lastErr = msg
			c.mu.Unlock()
		}
		t.Reset(c.reopen)
	}
}

// lost records that the port at path (empty if it never opened) is gone.
// Events are emitted before the state changes, here and in found, so a
// caller that sees the change finds the event on the timeline.
func (c *Console) lost(path string, err error) {
	e := c.event(results.ConsoleGap)
	e.Text = err.Error()
	if path != "" {
		e.Attrs = map[string]string{"port": path}
	}
	c.sink.Emit(e)
	c.mu.Lock()
	c.path = ""
	c.lastErr = err.Error()
	c.gaps++
	c.mu.Unlock()
}

// found records that the port at path is open. prev is the path lost
// before, and gapStart when it was lost; zero at the first open.
func (c *Console) found(path, prev string, gapStart time.Time) {
	if gapStart.IsZero() {
		c.log.Debug("console port open", "port", path, "where", c.where())
	} else {
		gap := time.Since(gapStart)
		c.log.Debug("console port open again", "port", path, "previous", prev, "gap", gap.Round(time.Millisecond))
		e := c.event(results.ConsoleReopen)
		e.Dur = gap
		e.Attrs = map[string]string{"port": path}
		if prev != "" {
			e.Attrs["previous"] = prev
		}
		c.sink.Emit(e)
	}
	c.mu.Lock()
	c.path = path
	c.lastErr = ""
	if !gapStart.IsZero() {
		c.reopens++
	}
	c.connected.Store(true)
	close(c.connCh)
	c.connCh = make(chan struct{})
	c.mu.Unlock()
}

func (c *Console) event(k results.Kind) results.Event {
	return c.clock.Stamp(c.board, c.cycle(), k)
}

// addLine records a line, then stores it and hands it to waiters and
// subscribers: a caller that got a line from Expect finds it on the
// timeline. It runs on the reader goroutine only, so lines keep their
// order.
func (c *Console) addLine(raw []byte, first time.Time) {
	l := Line{T: first.Sub(c.clock.Start()), Wall: first, Text: lineText(raw)}
	c.sink.Emit(results.Event{
		T: l.T, Wall: l.Wall, Board: c.board, Cycle: c.cycle(),
		Kind: results.ConsoleLine, Block: -1, Text: l.Text,
	})
	c.mu.Lock()
	l.Seq = c.next
	c.next++
	c.ring[l.Seq%uint64(len(c.ring))] = l
	for w := range c.waiters {
		if l.Seq >= w.from && w.re.MatchString(l.Text) {
			w.ch <- l // buffered and sent to once: removed just below
			delete(c.waiters, w)
		}
	}
	for s := range c.subs {
		select {
		case s.ch <- l:
		default:
			c.subDrops.Add(1)
		}
	}
	c.mu.Unlock()
}

// Mark returns the cursor of the next line to arrive.
func (c *Console) Mark() Cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Cursor(c.next)
}

// Expect waits for the first line matching re that completes after the
// call. To also catch a line that arrives before the call, take a Mark
// first and use ExpectFrom.
func (c *Console) Expect(ctx context.Context, re *regexp.Regexp) (Line, error) {
	return c.ExpectFrom(ctx, c.Mark(), re)
}

// ExpectFrom returns the first line at or after cur matching re (an
// unanchored match against the line's text), waiting for it until ctx is
// done. Lines already received count, as long as the console still keeps
// them (Options.KeepLines); if lines after cur have been dropped and none
// of the kept ones match, it fails at once with ErrLinesLost. A lost port
// does not end the wait: the console reopens it and the wait goes on.
func (c *Console) ExpectFrom(ctx context.Context, cur Cursor, re *regexp.Regexp) (Line, error) {
	from := uint64(cur)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return Line{}, fmt.Errorf("console %s: expect %q: %w", c.board, re, ErrClosed)
	}
	oldest := c.next - min(c.next, uint64(len(c.ring)))
	for s := max(from, oldest); s < c.next; s++ {
		if l := c.ring[s%uint64(len(c.ring))]; re.MatchString(l.Text) {
			c.mu.Unlock()
			return l, nil
		}
	}
	if from < oldest {
		c.mu.Unlock()
		return Line{}, fmt.Errorf("console %s: expect %q: %d lines after the cursor were dropped (KeepLines %d): %w",
			c.board, re, oldest-from, len(c.ring), ErrLinesLost)
	}
	w := &waiter{re: re, from: from, ch: make(chan Line, 1)}
	c.waiters[w] = struct{}{}
	c.mu.Unlock()

	var err error
	select {
	case l := <-w.ch:
		return l, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-c.done:
		err = ErrClosed
	}
	c.mu.Lock()
	delete(c.waiters, w)
	seen, port, why := c.next-from, c.path, c.lastErr
	c.mu.Unlock()
	select {
	case l := <-w.ch: // matched while giving up: a match is a match
		return l, nil
	default:
	}
	state := "port " + port
	if port == "" {
		state = "port gone: " + why
	}
	return Line{}, fmt.Errorf("console %s: no line matching %q (%d lines seen, %s): %w", c.board, re, seen, state, err)
}

// Subscribe returns a channel of the lines that arrive from now on, and a
// function that ends the subscription and closes the channel. A subscriber
// that falls SubscriberBuffer lines behind loses lines (counted in
// Stats.SubscriberDrops) rather than slowing the console. Close closes
// every subscription's channel.
func (c *Console) Subscribe() (<-chan Line, func()) {
	s := &subscriber{ch: make(chan Line, SubscriberBuffer)}
	c.mu.Lock()
	if c.closed {
		close(s.ch)
		s.closed = true
	} else {
		c.subs[s] = struct{}{}
	}
	c.mu.Unlock()
	return s.ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.subs, s)
		if !s.closed {
			s.closed = true
			close(s.ch)
		}
	}
}

// Last returns up to n of the most recent lines, oldest first.
func (c *Console) Last(n int) []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := min(uint64(max(n, 0)), c.next, uint64(len(c.ring)))
	out := make([]Line, 0, k)
	for s := c.next - k; s < c.next; s++ {
		out = append(out, c.ring[s%uint64(len(c.ring))])
	}
	return out
}

// Connected reports whether the port is open.
func (c *Console) Connected() bool { return c.connected.Load() }

// WaitConnected waits until the port is open, ctx is done or the console
// is closed.
func (c *Console) WaitConnected(ctx context.Context) error {
	for {
		c.mu.Lock()
		ch, closed := c.connCh, c.closed
		c.mu.Unlock()
		switch {
		case closed:
			return fmt.Errorf("console %s: wait for %s: %w", c.board, c.where(), ErrClosed)
		case c.connected.Load():
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			c.mu.Lock()
			why := c.lastErr
			c.mu.Unlock()
			return fmt.Errorf("console %s: wait for %s (%s): %w", c.board, c.where(), why, ctx.Err())
		case <-c.done:
		}
	}
}

// Stats returns the console's counters and state.
func (c *Console) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{
		Lines:           c.next,
		Gaps:            c.gaps,
		Reopens:         c.reopens,
		SubscriberDrops: c.subDrops.Load(),
		Port:            c.path,
		LastError:       c.lastErr,
	}
}

// Close stops reading, closes the port (a pending partial line is kept as
// a last line), ends waits and subscriptions. It is idempotent.
func (c *Console) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.done)
		c.wg.Wait()
		c.mu.Lock()
		for s := range c.subs {
			delete(c.subs, s)
			s.closed = true
			close(s.ch)
		}
		c.mu.Unlock()
		c.log.Debug("console closed")
	})
	return nil
}
