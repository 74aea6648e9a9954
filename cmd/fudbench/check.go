package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/bench/console"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
)

// checkResult is one check of one board, as `fudbench check --json`
// prints it.
type checkResult struct {
	Board   string `json:"board"`
	Check   string `json:"check"`
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped"`
	Ms      int64  `json:"ms"`
	Detail  string `json:"detail"`
}

// checkOptions configure checkBoards.
type checkOptions struct {
	Timeout time.Duration // per wait (console line, probe, CoAP answer)
	Log     *slog.Logger
	// Report is called with each result as it is known (nil: none).
	Report func(checkResult)
}

// The checks, in the order they run.
const (
	checkPower = "power off/on"
	checkProbe = "probe"
	checkCoAP  = "coap"
)

// consoleQuiet is how long a console must stay silent after power off to
// count as quiet.
const consoleQuiet = 300 * time.Millisecond

// reenumerateGrace is how long a console that enumerated again after power
// on is given to print a line before its coming back counts on its own.
const reenumerateGrace = 250 * time.Millisecond

func newCheckCmd(g *globals) *cobra.Command {
	var (
		benchFile string
		timeout   time.Duration
		jsonOut   bool
	)
	cmd := &cobra.Command{
		Use:   "check [BOARD...] [--bench FILE] [--timeout D] [--json]",
		Short: "Check each board's wiring: power, probe and CoAP endpoint",
		Long: `Check each board's wiring (all of the bench's boards when none is named):

  power off/on  switch off and on; a console must go quiet after off and
                print a line within --timeout after on; a driver that
                reads its state back must say off, then on
  probe         open the probe and read something of the target
  coap          reach the CoAP endpoint and read the running version

A part a board lacks is skipped ("not wired"), not failed. The boards are
left powered on (the safe state when interrupted).

Exit codes: 0 every check passed; 2 a bad bench file or an unknown board;
3 a check failed (the last line names the boards); 130 interrupted.`,
		RunE: func(c *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usageErr(fmt.Errorf("--timeout %v: want a positive duration", timeout))
			}
			inv, err := loadBench(benchFile)
			if err != nil {
				return err
			}
			var bds []*boards.Board
			if len(args) == 0 {
				for i := range inv.Boards {
					bds = append(bds, &inv.Boards[i])
				}
			}
			for _, name := range args {
				bd, err := inv.Board(name)
				if err != nil {
					return usageErr(err)
				}
				bds = append(bds, bd)
			}
			opt := checkOptions{Timeout: timeout, Log: g.log}
			if !jsonOut {
				opt.Report = checkPrinter(c.OutOrStdout(), bds)
			}
			rs, err := checkBoards(c.Context(), bds, opt)
			if jsonOut && rs != nil {
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				if eerr := enc.Encode(rs); eerr != nil && err == nil {
					err = eerr
				}
			}
			if err != nil {
				return err
			}
			if ferr := checkFailures(rs); ferr != nil {
				if !jsonOut {
					fmt.Fprintln(c.OutOrStdout(), ferr)
				}
				return infraErr(ferr)
			}
			if !jsonOut {
				fmt.Fprintf(c.OutOrStdout(), "check: %d checks passed\n", len(rs))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long each check waits (a console line, the probe, a CoAP answer)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the results as a JSON array of {board, check, ok, skipped, ms, detail}")
	return cmd
}

// checkPrinter prints each result as one aligned line.
func checkPrinter(w io.Writer, bds []*boards.Board) func(checkResult) {
	width := 0
	for _, bd := range bds {
		width = max(width, len(bd.Name))
	}
	return func(r checkResult) {
		res, took := "ok", fmtMs(r.Ms)
		switch {
		case r.Skipped:
			res, took = "–", ""
		case !r.OK:
			res = "FAIL"
		}
		fmt.Fprintf(w, "%-*s  %-12s  %-4s  %6s  %s\n", width, r.Board, r.Check, res, took, r.Detail)
	}
}

func fmtMs(ms int64) string {
	if ms < 1000 {
		return fmt.Sprintf("%dms", ms)
	}
	return fmt.Sprintf("%.1fs", float64(ms)/1000)
}

// checkFailures says which checks failed, by board, or nil.
func checkFailures(rs []checkResult) error {
	var order []string
	failed := map[string][]string{}
	n := 0
	for _, r := range rs {
		if r.OK || r.Skipped {
			continue
		}
		n++
		if failed[r.Board] == nil {
			order = append(order, r.Board)
		}
		failed[r.Board] = append(failed[r.Board], strings.Fields(r.Check)[0])
	}
	if n == 0 {
		return nil
	}
	parts := make([]string, len(order))
	for i, b := range order {
		parts[i] = fmt.Sprintf("%s (%s)", b, strings.Join(failed[b], ", "))
	}
	return fmt.Errorf("check: %d of %d checks failed: %s", n, len(rs), strings.Join(parts, ", "))
}

// checkBoards runs the wiring checks on each board in turn. The error is
// for what ends the checks (a wiring mistake in the bench file, an
// interrupt); a failed check is a result.
func checkBoards(ctx context.Context, bds []*boards.Board, opt checkOptions) ([]checkResult, error) {
	var all []checkResult
	for _, bd := range bds {
		rs, err := checkBoard(ctx, bd, opt)
		all = append(all, rs...)
		if err != nil {
			return all, err
		}
	}
	return all, nil
}

func checkBoard(ctx context.Context, bd *boards.Board, opt checkOptions) (rs []checkResult, err error) {
	report := func(r checkResult) {
		rs = append(rs, r)
		if opt.Report != nil {
			opt.Report(r)
		}
	}
	log := opt.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	hub := bench.NewHub(results.NewClock(), nil)
	b, err := bench.Bind(ctx, bd, hub, bench.BindOptions{Console: true, Probe: true, Log: log})
	if err != nil {
		if errors.Is(err, config.ErrConfig) {
			return nil, usageErr(err)
		}
		// The wiring cannot be opened: every check fails with it.
		for _, name := range []string{checkPower, checkProbe, checkCoAP} {
			report(checkResult{Board: bd.Name, Check: name, Detail: err.Error()})
		}
		return rs, nil
	}
	defer func() {
		if ctx.Err() != nil {
			if serr := b.Safe(); serr != nil {
				log.Error("safe state", "board", b.Name, "err", serr)
			}
			err = ctx.Err()
		}
		b.Close()
	}()
	for _, ck := range []struct {
		name string
		run  func(context.Context, *bench.Board, time.Duration) (string, bool, error)
	}{{checkPower, checkPowerCycle}, {checkProbe, checkProbeTalks}, {checkCoAP, checkCoAPAnswers}} {
		if ctx.Err() != nil {
			return rs, ctx.Err()
		}
		start := time.Now()
		detail, skipped, cerr := ck.run(ctx, b, opt.Timeout)
		r := checkResult{Board: b.Name, Check: ck.name, OK: cerr == nil && !skipped, Skipped: skipped,
			Ms: time.Since(start).Milliseconds(), Detail: detail}
		if cerr != nil {
			r.Detail = cerr.Error()
		}
		report(r)
	}
	return rs, nil
}

var anyLine = regexp.MustCompile(`.`)

// checkPowerCycle switches the board off, then on: its console (when it
// has one) must go quiet after off and print a line after on; a switch
// that reads its state back must say off, then on.
func checkPowerCycle(ctx context.Context, b *bench.Board, timeout time.Duration) (string, bool, error) {
	if b.Power == nil {
		return "not wired", true, nil
	}
	var lines <-chan console.Line
	if b.Console != nil {
		ch, stop := b.Console.Subscribe()
		defer stop()
		lines = ch
	}
	if _, err := b.PowerOff(ctx); err != nil {
		return "", false, err
	}
	on := false
	defer func() {
		// Leave the board on, as it was, whatever failed after off.
		if !on && ctx.Err() == nil {
			_ = b.PowerOn(ctx)
		}
	}()
	var notes []string
	if st, known, err := b.PowerState(ctx, timeout); err != nil {
		return "", false, err
	} else if known {
		if st {
			return "", false, fmt.Errorf("power switch %s reads on after switching off", b.Power)
		}
		notes = append(notes, "read back off")
	}
	if lines != nil {
		if err := waitQuiet(ctx, lines, timeout); err != nil {
			return "", false, fmt.Errorf("console %s: %w", consolePort(b), err)
		}
	}
	mark := consoleMark(b)
	var reopens uint64
	if b.Console != nil {
		reopens = b.Console.Stats().Reopens
	}
	on = true
	if err := b.PowerOn(ctx); err != nil {
		return "", false, err
	}
	if st, known, err := b.PowerState(ctx, timeout); err != nil {
		return "", false, err
	} else if known {
		if !st {
			return "", false, fmt.Errorf("power switch %s reads off after switching on", b.Power)
		}
		notes = append(notes, "then on")
	}
	if b.Console == nil {
		return "switched off and on (" + stateNote(notes) + ")", false, nil
	}
	// A line, or (for a console that re-enumerates) the port back and a
	// moment more for a line, whichever comes first.
	deadline := time.Now().Add(timeout)
	var l console.Line
	var err error
	backFor := 0
	for {
		wctx, cancel := context.WithTimeout(ctx, min(reenumerateGrace, time.Until(deadline)))
		l, err = b.Console.ExpectFrom(wctx, mark, anyLine)
		cancel()
		if err == nil || ctx.Err() != nil || !time.Now().Before(deadline) {
			break
		}
		if st := b.Console.Stats(); st.Reopens > reopens && st.Port != "" {
			if backFor++; backFor > 1 {
				break
			}
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", false, ctx.Err()
		}
		st := b.Console.Stats()
		if st.Reopens > reopens && st.Port != "" {
			// A console that is the board's own USB device goes away with
			// its power and enumerates again after it boots: the lines it
			// printed before the host found it again are lost, the port
			// coming back is the evidence.
			return fmt.Sprintf("console went away and came back (re-enumerated as %s; no line since); %s", st.Port, stateNote(notes)), false, nil
		}
		why := "port open, silent"
		if st.Port == "" {
			why = "port gone: " + st.LastError
		}
		return "", false, fmt.Errorf("console %s: no line within %v of power on (%s)", consolePort(b), timeout, why)
	}
	return fmt.Sprintf("console went quiet, came back: %q; %s", l.Text, stateNote(notes)), false, nil
}

func stateNote(notes []string) string {
	if len(notes) == 0 {
		return "the switch cannot read its state back"
	}
	return "state " + strings.Join(notes, ", ")
}

// consoleMark is the cursor of the console's next line (0 without one).
func consoleMark(b *bench.Board) (cur console.Cursor) {
	if b.Console != nil {
		cur = b.Console.Mark()
	}
	return cur
}

// consolePort names a board's console as the bench file does.
func consolePort(b *bench.Board) string {
	if b.Entry != nil && b.Entry.Console != nil {
		c := b.Entry.Console
		if c.USB != nil {
			return fmt.Sprintf("usb %s:%s %s", c.USB.VID, c.USB.PID, c.USB.Serial)
		}
		return c.Port
	}
	return "?"
}

// waitQuiet waits until no console line arrives for consoleQuiet, at most
// timeout.
func waitQuiet(ctx context.Context, lines <-chan console.Line, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	quiet := time.NewTimer(consoleQuiet)
	defer quiet.Stop()
	last := ""
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				return errors.New("closed")
			}
			last = l.Text
			quiet.Reset(consoleQuiet)
		case <-quiet.C:
			return nil
		case <-deadline.C:
			return fmt.Errorf("still talking %v after power off (last line %q)", timeout, last)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkProbeTalks proves the probe reaches the target: what an
// Identifier reads of it, or 4 bytes at the board's flash base read back.
func checkProbeTalks(ctx context.Context, b *bench.Board, timeout time.Duration) (string, bool, error) {
	if b.Probe == nil {
		return "not wired", true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if id, ok := b.Probe.(probes.Identifier); ok {
		s, err := id.Identify(ctx)
		if err != nil {
			return "", false, fmt.Errorf("%s: %w", b.Probe, err)
		}
		return b.Probe.String() + ": " + s, false, nil
	}
	r, ok := b.Probe.(probes.Reader)
	if !ok || b.Flash == nil {
		return b.Probe.String() + ": opened (cannot read the target)", false, nil
	}
	addr := b.Flash.Base
	if addr == 0 {
		addr = b.Flash.AppAddr
	}
	var word [4]byte
	if err := r.Read(ctx, addr, word[:]); err != nil {
		return "", false, fmt.Errorf("%s: %w", b.Probe, err)
	}
	return fmt.Sprintf("%s: %#08x: % x", b.Probe, addr, word[:]), false, nil
}

// checkCoAPAnswers reaches the board's CoAP endpoint and reads the
// running version (/fw/version), or the recovery state (/fw/state); any
// CoAP answer proves the endpoint reachable. It asks again until timeout:
// a board just powered on may still be booting.
func checkCoAPAnswers(ctx context.Context, b *bench.Board, timeout time.Duration) (string, bool, error) {
	if b.Endpoint.Addr == "" {
		return "not wired", true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	where := "coap://" + b.Endpoint.DeviceAddr()
	b.Endpoint.Tx = coap.Transmission{AckTimeout: min(max(timeout/8, 100*time.Millisecond), 2*time.Second), MaxRetransmit: 1}
	var last error
	for {
		detail, err := coapOnce(ctx, b)
		if err == nil {
			return where + ": " + detail, false, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return "", false, fmt.Errorf("%s: no answer within %v: %w", where, timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func coapOnce(ctx context.Context, b *bench.Board) (string, error) {
	c, err := b.Dial(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if b.VersionCheck != nil {
		return b.DescribeRunning(ctx, c)
	}
	v, err := c.Version(ctx)
	if err == nil {
		return fmt.Sprintf("running %s (seq %d, %s)", v.Version, v.Seq, v.Mode), nil
	}
	var se *coap.StatusError
	if !errors.As(err, &se) {
		return "", err
	}
	st, serr := c.State(ctx)
	if serr == nil {
		return fmt.Sprintf("%s mode, transfer %s (next block %d)", st.Mode, st.State, st.Next), nil
	}
	var se2 *coap.StatusError
	if errors.As(serr, &se2) {
		return fmt.Sprintf("reachable: GET /fw/version answered %v, GET /fw/state %v", se.Code, se2.Code), nil
	}
	return "", serr
}
