package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/fudbench/fudbench/results"
)

// reportJob is a shorter demo: both built-in sim boards, an 8-block image,
// a cut after every block and two random cuts during blocks. sim-naive
// (plain Block1 upload, no resume) bricks at most cuts and is reflashed.
const reportJob = `name: report-demo
boards: [sim-safe, sim-naive]
baseline:
  build: {version: 1.0.0, seq: 1, size: 8KiB, seed: 1}
image:
  build: {version: 2.0.0, seq: 2, size: 8KiB, seed: 2}
profile: resumable
profiles: {sim-naive: block1}
block_size: 1024
cuts:
  - after_block: {from: 0, to: last}
  - random: {count: 2, kind: during_block, window: {from: 0, to: last}, delay: 1ms}
off_time: 20ms
recovery_timeout: 1s
accept:
  sim-safe: [updated]
  sim-naive: [updated, bricked]
`

// chromiumPath finds the browser, skipping the test without one except
// under CI, where it must be installed.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (CI installs it: .ci/run)")
	}
	t.Skip("chromium is not installed")
	return ""
}

// pageView is what the browser saw of a report.
type pageView struct {
	Data     reportDOM
	Requests []string // every URL the page requested
	Failed   []string // requests that failed
	Console  []string // console errors, exceptions and error log entries
}

// reportDOM is read from the rendered page by script.
type reportDOM struct {
	Sections    []string                  `json:"sections"`
	Title       string                    `json:"title"`
	RunID       string                    `json:"runID"`
	Verdict     string                    `json:"verdict"`
	Cycles      string                    `json:"cycles"`
	Total       map[string]string         `json:"total"`
	Boards      map[string]map[string]int `json:"boards"`
	Plots       int                       `json:"plots"`
	FailedTotal string                    `json:"failedTotal"`
	FailedShown int                       `json:"failedShown"`
	Consoles    []string                  `json:"consoles"`
	Scripts     int                       `json:"scripts"`
	MapRows     []string                  `json:"mapRows"`
	Fragile     []string                  `json:"fragile"`
	// The Strategies section: its column headings, its rows' keys, the
	// cells of each row by key, its plots and those drawn at a visible
	// size.
	StrategyCols     []string            `json:"strategyCols"`
	StrategyRows     []string            `json:"strategyRows"`
	StrategyCells    map[string][]string `json:"strategyCells"`
	StrategyPlots    int                 `json:"strategyPlots"`
	StrategyPlotsLit int                 `json:"strategyPlotsLit"`
	ComparedRuns     []string            `json:"comparedRuns"`
}

const domScript = `(() => {
  const q = (s) => document.querySelector(s);
  const text = (s) => (q(s) || {}).textContent || "";
  const total = {};
  document.querySelectorAll("#outcome-counts tr.total [data-outcome]").forEach(td => total[td.dataset.outcome] = td.textContent.trim());
  const boards = {};
  document.querySelectorAll("#outcome-counts tbody tr[data-board]").forEach(tr => {
    if (!tr.dataset.board) return;
    const m = {};
    tr.querySelectorAll("[data-outcome]").forEach(td => m[td.dataset.outcome] = parseInt(td.textContent, 10));
    boards[tr.dataset.board] = m;
  });
  return {
    sections: Array.from(document.querySelectorAll("section[id]")).map(s => s.id),
    title: document.title,
    runID: text("#run-id"),
    verdict: text("#verdict"),
    cycles: text("#cycles"),
    total: total,
    boards: boards,
    plots: document.querySelectorAll("svg.plot").length,
    failedTotal: (q("[data-failed-total]") || {dataset: {}}).dataset.failedTotal || "",
    failedShown: document.querySelectorAll("details.cycle").length,
    consoles: Array.from(document.querySelectorAll("details.cycle pre.console")).map(p => p.textContent),
    scripts: document.scripts.length,
    mapRows: Array.from(document.querySelectorAll("#outcome-map h3")).map(h => h.textContent),
    fragile: Array.from(document.querySelectorAll("#outcome-map ul.fragile li")).map(li => li.textContent),
    strategyCols: Array.from(document.querySelectorAll("#strategies th")).map(th => th.textContent.trim()),
    strategyRows: Array.from(document.querySelectorAll("#strategies tr[data-row]")).map(tr => tr.dataset.row),
    strategyCells: Object.fromEntries(Array.from(document.querySelectorAll("#strategies tr[data-row]")).map(tr =>
      [tr.dataset.row, Array.from(tr.querySelectorAll("td.num")).map(td => td.textContent.trim())])),
    strategyPlots: document.querySelectorAll("#strategies svg").length,
    strategyPlotsLit: Array.from(document.querySelectorAll("#strategies svg")).filter(s => {
      const r = s.getBoundingClientRect();
      return r.width > 300 && r.height > 100 && s.querySelectorAll("path, rect, polygon").length > 4;
    }).length,
    comparedRuns: Array.from(document.querySelectorAll("#runs tr[data-run]")).map(tr => tr.dataset.run),
  };
})()`

// browse opens path in headless Chromium and returns what the page
// showed, requested and logged. screenshot, when not empty, receives a
// PNG of the whole page.
func browse(t *testing.T, browser, path, screenshot string) pageView {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	pageURL := (&url.URL{Scheme: "file", Path: abs}).String()
	userDir := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // root in a container
		chromedp.DisableGPU,
		chromedp.UserDataDir(userDir),
		chromedp.WindowSize(1100, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()

	var (
		mu sync.Mutex
		pv pageView
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			pv.Requests = append(pv.Requests, e.Request.URL)
		case *network.EventLoadingFailed:
			pv.Failed = append(pv.Failed, fmt.Sprintf("%s: %s", e.RequestID, e.ErrorText))
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				pv.Console = append(pv.Console, fmt.Sprintf("console.%s", e.Type))
			}
		case *runtime.EventExceptionThrown:
			pv.Console = append(pv.Console, "exception: "+e.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError {
				pv.Console = append(pv.Console, fmt.Sprintf("log %s: %s %s", e.Entry.Source, e.Entry.Text, e.Entry.URL))
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	defer cancelT()
	if err := chromedp.Do(tctx, chromedp.Navigate(pageURL), chromedp.WaitReady("body")); err != nil {
		t.Fatalf("open %s in chromium: %v", pageURL, err)
	}
	raw, err := chromedp.Run(tctx, chromedp.Evaluate[[]byte](domScript))
	if err != nil {
		t.Fatalf("read the page: %v", err)
	}
	if screenshot != "" {
		png, err := chromedp.Run(tctx, chromedp.FullScreenshot(90))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Let late events (a slow failed load) arrive before reading them.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if err := json.Unmarshal(raw, &pv.Data); err != nil {
		t.Fatalf("page data %s: %v", raw, err)
	}
	out := pv
	out.Requests = append([]string(nil), pv.Requests...)
	for i, u := range out.Requests {
		if u == pageURL {
			out.Requests[i] = "(the report)"
		}
	}
	return out
}

// TestReportDemoInBrowser runs a short demo through the executor on both
// sim boards with --report, then opens the report in headless Chromium:
// every section is there, the counts match summary.json, the failed
// cycles of sim-naive are listed with their console lines, and the page
// made no request but its own file and logged no error.
func TestReportDemoInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	dir := t.TempDir()
	job := runWrite(t, filepath.Join(dir, "job.yaml"), reportJob)
	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "out", "results.db")
	start := time.Now()
	stdout, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"), "--report")
	t.Logf("run took %v", time.Since(start).Round(time.Millisecond))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	reportPath := filepath.Join(out, "report.html")
	if !strings.Contains(stdout, "report: "+reportPath) {
		t.Errorf("run does not name its report:\n%s", stdout)
	}
	s := runReadOutputs(t, out).summary
	naive := runBoardSummary(t, s, "sim-naive")
	if naive.Outcomes[results.Bricked] == 0 {
		t.Fatalf("sim-naive never bricked (outcomes %v): the report would show no failed cycle", naive.Outcomes)
	}

	// The same run reported from the database and from the directory
	// gives the same counts.
	fromDB := filepath.Join(dir, "from-db.html")
	if o, e, code := runCLI(t, dir, "report", dbPath, "--run", s.RunID, "-o", fromDB); code != 0 {
		t.Fatalf("report from db: exit %d\n%s%s", code, o, e)
	}

	for _, page := range []string{reportPath, fromDB} {
		t.Run(filepath.Base(page), func(t *testing.T) {
			fi, err := os.Stat(page)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d bytes", page, fi.Size())
			shot := ""
			if d := os.Getenv("FUDBENCH_REPORT_SCREENSHOT_DIR"); d != "" {
				shot = filepath.Join(d, filepath.Base(page)+".png")
			}
			pv := browse(t, browser, page, shot)
			d := pv.Data
			for _, id := range []string{"summary", "outcome-map", "recovery", "transfer", "trend", "failures"} {
				if !contains(strings.Join(d.Sections, " "), id) {
					t.Errorf("section #%s missing (sections %v)", id, d.Sections)
				}
			}
			if d.RunID != s.RunID || d.Verdict != string(s.Verdict) || d.Cycles != fmt.Sprint(s.Cycles) {
				t.Errorf("header: run %q verdict %q cycles %q; summary.json: %s %s %d", d.RunID, d.Verdict, d.Cycles, s.RunID, s.Verdict, s.Cycles)
			}
			for _, o := range results.Outcomes {
				if d.Total[string(o)] != fmt.Sprint(s.Outcomes[o]) {
					t.Errorf("total %s: page shows %q, summary.json %d", o, d.Total[string(o)], s.Outcomes[o])
				}
			}
			for _, b := range s.PerBoard {
				for _, o := range results.Outcomes {
					if got := d.Boards[b.Board][string(o)]; got != b.Outcomes[o] {
						t.Errorf("%s %s: page shows %d, summary.json %d", b.Board, o, got, b.Outcomes[o])
					}
				}
			}
			notUpdated := reportFailed(s)
			if d.FailedTotal != fmt.Sprint(notUpdated) || d.FailedShown != min(notUpdated, 50) {
				t.Errorf("failed cycles: page counts %q and lists %d; summary.json has %d cycles not updated or not accepted", d.FailedTotal, d.FailedShown, notUpdated)
			}
			if len(d.Consoles) == 0 || !strings.Contains(strings.Join(d.Consoles, "\n"), "sim-naive") {
				t.Errorf("failed cycles show no console lines of sim-naive: %q", d.Consoles)
			}
			if len(d.MapRows) != 2 || !strings.Contains(strings.Join(d.Fragile, "\n"), "bricked at block") {
				t.Errorf("outcome map rows %q, fragile %q; want both boards and sim-naive's bricks", d.MapRows, d.Fragile)
			}
			// Each board runs its own strategy: two columns, and the
			// outcome and recovery plots.
			if len(d.StrategyCols) != 2 || d.StrategyPlotsLit < 2 {
				t.Errorf("strategies: columns %q, %d plots drawn; want 2 columns and at least 2 plots", d.StrategyCols, d.StrategyPlotsLit)
			}
			// Outcome map, two recovery box plots, throughput, round
			// trips, re-sent blocks, trend (two), one per failed cycle.
			if want := 8 + d.FailedShown; d.Plots < want {
				t.Errorf("%d plots, want at least %d", d.Plots, want)
			}
			if d.Scripts != 0 {
				t.Errorf("the page has %d scripts, want none", d.Scripts)
			}
			if len(pv.Requests) != 1 || pv.Requests[0] != "(the report)" {
				t.Errorf("the page made requests besides its own file: %q", pv.Requests)
			}
			if len(pv.Failed) != 0 || len(pv.Console) != 0 {
				t.Errorf("failed loads %q, console errors %q", pv.Failed, pv.Console)
			}
		})
	}
}

// reportFailed counts what the report lists as failed from summary.json:
// the cycles not updated, and the updated cycles the job did not accept.
func reportFailed(s results.Summary) int {
	n := s.Cycles - s.Outcomes[results.Updated]
	for _, f := range s.Failures {
		if f.Outcome == results.Updated {
			n++
		}
	}
	return n
}

// TestReportBrowserCheckCatchesRequests proves the checks of the test
// above can fail: a page that loads an image over the network and throws
// is caught.
func TestReportBrowserCheckCatchesRequests(t *testing.T) {
	browser := chromiumPath(t)
	page := runWrite(t, filepath.Join(t.TempDir(), "bad.html"), `<!DOCTYPE html><html><head><title>bad</title></head><body>
<section id="summary"></section><img src="http://127.0.0.1:9/missing.png"><script>null.boom</script></body></html>`)
	pv := browse(t, browser, page, "")
	if len(pv.Requests) < 2 {
		t.Errorf("the network request was not seen: %q", pv.Requests)
	}
	if len(pv.Console) == 0 {
		t.Errorf("the exception was not seen")
	}
}

// TestReportBadInput: a missing file, a file that is not a database, an
// empty database, an unknown run and an empty directory exit 2 with an
// error naming the file.
func TestReportBadInput(t *testing.T) {
	dir := t.TempDir()
	notDB := runWrite(t, filepath.Join(dir, "notes.txt"), "not a database\n")
	empty := filepath.Join(dir, "empty.db")
	db, err := results.OpenDB(empty)
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	one := filepath.Join(dir, "one.db")
	db, err = results.OpenDB(one)
	if err != nil {
		t.Fatal(err)
	}
	run := results.RunInfo{ID: "run-1", Job: "j", Started: time.Now(), Boards: []string{"b"}, Planned: map[string]int{"b": 1}}
	if err := db.BeginRun(run); err != nil {
		t.Fatal(err)
	}
	c := results.Cycle{Run: "run-1", Board: "b", Cycle: 1, Plan: "none", PlannedBlock: -1, Outcome: results.Updated, Accepted: true}
	if err := db.RecordCycle(c); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishRun("run-1", string(results.VerdictPass), results.Summarize(run, []results.Cycle{c})); err != nil {
		t.Fatal(err)
	}
	db.Close()
	emptyDir := filepath.Join(dir, "nothing")
	os.Mkdir(emptyDir, 0o755)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing", []string{"report", filepath.Join(dir, "nope.db")}, "nope.db"},
		{"not a database", []string{"report", notDB}, "notes.txt: not a results database"},
		{"no run", []string{"report", empty}, "empty.db: the database holds no run"},
		{"unknown run", []string{"report", one, "--run", "run-2"}, `one.db: no run "run-2"`},
		{"empty dir", []string{"report", emptyDir}, "nothing: a directory with neither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outFile := filepath.Join(dir, "r.html")
			_, stderr, code := cli(t, append(tc.args, "-o", outFile)...)
			if code != ExitUsage || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 naming %q", code, stderr, tc.want)
			}
			if _, err := os.Stat(outFile); err == nil {
				t.Errorf("a report was written for a bad input")
			}
		})
	}
	// The good run of the same database reports, to stdout with -o -.
	stdout, stderr, code := cli(t, "report", one, "-o", "-")
	if code != 0 || !strings.HasPrefix(stdout, "<!DOCTYPE html>") || !strings.Contains(stdout, "run-1") {
		t.Errorf("report of run-1: exit %d, stderr %q, %d bytes", code, stderr, len(stdout))
	}
	if st, _ := os.Stat(notDB); st == nil || st.Size() != int64(len("not a database\n")) {
		t.Errorf("the report touched a file that is not a database")
	}
}

// strategyRun is a run of several update strategies, written with the
// results package as the bench records one: a device event at each
// board's first cycle, cut and uncut cycles, update.verified and
// flash.cost events. strategies maps a board to its strategy ("" for a
// board that reports none); bricks to the cut points that brick it.
type strategyRun struct {
	id      string
	started time.Time
	boards  []string
	strat   map[string]string
	bricks  map[string]int // the cut points (after blocks 0..n-1) that brick the board
	cuts    int
}

func (r strategyRun) write(t *testing.T, dbPath string) {
	t.Helper()
	db, err := results.OpenDB(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run := results.RunInfo{ID: r.id, Job: "strategies", JobFile: "strategies.yaml", Started: r.started,
		Boards: r.boards, Host: "bench", Version: "test", Planned: map[string]int{}}
	if err := db.BeginRun(run); err != nil {
		t.Fatal(err)
	}
	sink := db.Events(r.id)
	var cycles []results.Cycle
	tm := time.Duration(0)
	emit := func(board string, cycle int, k results.Kind, text string, dur time.Duration, attrs map[string]string) {
		tm += time.Millisecond
		sink.Emit(results.Event{T: tm, Wall: r.started.Add(tm), Board: board, Cycle: cycle, Kind: k, Block: -1, Text: text, Dur: dur, Attrs: attrs})
	}
	for _, b := range r.boards {
		run.Planned[b] = r.cuts + 1
		if st := r.strat[b]; st != "" {
			emit(b, 1, results.DeviceInfo, st, 0, map[string]string{"strategy": st, "space": "266240", "cache": "8192"})
		}
		// An uncut update first, measured.
		c := results.Cycle{Run: r.id, Board: b, Cycle: 1, Plan: "none", PlannedBlock: -1, Outcome: results.Updated, Accepted: true}
		emit(b, 1, results.UpdateVerified, "", 1500*time.Millisecond, nil)
		emit(b, 1, results.FlashCost, "", 0, map[string]string{"programmed": "131072", "erased": "135168", "max_erases": "2", "boot_ops": "40"})
		cycles = append(cycles, c)
		for i := 0; i < r.cuts; i++ {
			plan := fmt.Sprintf("after_block %d", i)
			c := results.Cycle{Run: r.id, Board: b, Cycle: i + 2, Plan: plan, PlannedBlock: int64(i), Outcome: results.Updated, Accepted: true,
				Cut: &results.CutInfo{Trigger: plan, LastAcked: int64(i), InFlight: -1}}
			if i < r.bricks[b] {
				c.Outcome, c.Accepted = results.Bricked, false
			} else {
				c.RecoveryVersion = time.Duration(20+i) * time.Millisecond
			}
			cycles = append(cycles, c)
		}
	}
	for _, c := range cycles {
		if err := db.RecordCycle(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	sum := results.Summarize(run, cycles)
	if err := db.FinishRun(r.id, string(sum.Verdict), sum); err != nil {
		t.Fatal(err)
	}
}

// strategyRuns writes two runs of several strategies into one database:
// run-a of five strategies (naive-inplace bricks at its first six cut
// points) and a board that reports none; run-b of two.
func strategyRuns(t *testing.T, dbPath string) (a, b strategyRun) {
	t.Helper()
	start := time.Date(2026, 11, 25, 21, 40, 0, 0, time.UTC)
	a = strategyRun{id: "run-a", started: start, cuts: 8,
		boards: []string{"b-inplace", "b-naive", "b-abo", "b-swap", "b-direct", "lonely"},
		strat: map[string]string{"b-inplace": "inplace-recovery", "b-naive": "naive-inplace", "b-abo": "ab-overwrite",
			"b-swap": "ab-swap", "b-direct": "ab-direct"},
		bricks: map[string]int{"b-naive": 6}}
	b = strategyRun{id: "run-b", started: start.Add(time.Hour), cuts: 4, boards: []string{"x1", "x2"},
		strat: map[string]string{"x1": "ab-swap", "x2": "inplace-recovery"}}
	a.write(t, dbPath)
	b.write(t, dbPath)
	return a, b
}

// TestReportCompare runs report --compare through the CLI: runs named by
// run ID in --db, as DB#RUNID, as a database (its newest run); at least
// two runs; a bad input exits 2 naming it; an unwritable output exits 3.
func TestReportCompare(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "lab", "results.db")
	os.MkdirAll(filepath.Dir(dbPath), 0o755)
	strategyRuns(t, dbPath)
	out := filepath.Join(dir, "cmp.html")

	for _, args := range [][]string{
		{"run-a", "run-b", "--db", dbPath},
		{dbPath + "#run-a", dbPath},
	} {
		os.Remove(out)
		stdout, stderr, code := cli(t, append([]string{"report", "--compare", "-o", out}, args...)...)
		if code != 0 || !strings.Contains(stdout, "report: "+out+" (runs run-a, run-b)") {
			t.Fatalf("%v: exit %d\n%s%s", args, code, stdout, stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		page := string(b)
		for _, want := range []string{`id="strategies"`, "run-a · naive-inplace", `data-run="run-b"`, "run-b · ab-swap", "after_block 0: bricked (1 of 1)"} {
			if !strings.Contains(page, want) {
				t.Errorf("%v: the page lacks %q", args, want)
			}
		}
	}
	// The default output is compare.html; runs of the default database.
	work := filepath.Join(dir, "work")
	os.MkdirAll(filepath.Join(work, "fudbench-out"), 0o755)
	b, _ := os.ReadFile(dbPath)
	os.WriteFile(filepath.Join(work, "fudbench-out", "results.db"), b, 0o644)
	if stdout, stderr, code := runCLI(t, work, "report", "--compare", "run-b", "run-a"); code != 0 || !strings.Contains(stdout, "report: compare.html") {
		t.Errorf("default output: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(filepath.Join(work, "compare.html")); err != nil {
		t.Errorf("no compare.html: %v", err)
	}

	notDB := runWrite(t, filepath.Join(dir, "notes.txt"), "not a database\n")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"one run", []string{"run-a", "--db", dbPath}, ExitUsage, "at least two runs"},
		{"no run", []string{}, ExitUsage, "at least two runs"},
		{"unknown run", []string{"run-a", "run-zz", "--db", dbPath}, ExitUsage, `no run "run-zz"`},
		{"unknown run in a file", []string{"run-a", dbPath + "#run-zz", "--db", dbPath}, ExitUsage, `no run "run-zz"`},
		{"not a database", []string{"run-a", notDB, "--db", dbPath}, ExitUsage, "notes.txt: not a results database"},
		{"missing file", []string{"run-a", filepath.Join(dir, "gone.db"), "--db", dbPath}, ExitUsage, "gone.db"},
		{"no database for a run ID", []string{"run-a", "run-b", "--db", filepath.Join(dir, "none.db")}, ExitUsage, "run-a: no such file or directory, nor a run ID"},
		{"the same run twice", []string{"run-a", dbPath + "#run-a", "--db", dbPath}, ExitUsage, "the same run run-a"},
		{"with --run", []string{"run-a", "run-b", "--db", dbPath, "--run", "run-a"}, ExitUsage, "not with --run"},
		{"cannot write", []string{"run-a", "run-b", "--db", dbPath, "-o", filepath.Join(notDB, "x.html")}, ExitInfra, "x.html"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(out)
			args := append([]string{"report", "--compare"}, tc.args...)
			if !slices.Contains(tc.args, "-o") {
				args = append(args, "-o", out)
			}
			_, stderr, code := cli(t, args...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d naming %q", code, stderr, tc.code, tc.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("a page was written")
			}
		})
	}
}

// TestReportStrategiesInBrowser opens the report of a run of five
// strategies and the comparison of two runs in headless Chromium: the
// Strategies table has a column per strategy (per run and strategy on the
// comparison), its plots are drawn, and the pages load nothing.
func TestReportStrategiesInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "results.db")
	strategyRuns(t, dbPath)
	reportPath, comparePath := filepath.Join(dir, "report.html"), filepath.Join(dir, "compare.html")
	if o, e, code := cli(t, "report", dbPath, "--run", "run-a", "-o", reportPath); code != 0 {
		t.Fatalf("report: exit %d\n%s%s", code, o, e)
	}
	if o, e, code := cli(t, "report", "--compare", "--db", dbPath, "run-a", "run-b", "-o", comparePath); code != 0 {
		t.Fatalf("report --compare: exit %d\n%s%s", code, o, e)
	}
	for _, tc := range []struct {
		page     string
		cols     []string
		bricked  []string // the share-bricked row
		compared []string
	}{
		{reportPath, []string{"inplace-recovery", "naive-inplace", "ab-overwrite", "ab-swap", "ab-direct", "lonely"},
			[]string{"0/8 · 0.0 % (0.0–32.4 %)", "6/8 · 75.0 % (40.9–92.9 %)", "0/8 · 0.0 % (0.0–32.4 %)", "0/8 · 0.0 % (0.0–32.4 %)", "0/8 · 0.0 % (0.0–32.4 %)", "0/8 · 0.0 % (0.0–32.4 %)"}, nil},
		{comparePath, []string{"run-a · inplace-recovery", "run-a · naive-inplace", "run-a · ab-overwrite", "run-a · ab-swap", "run-a · ab-direct", "run-a · lonely", "run-b · ab-swap", "run-b · inplace-recovery"},
			nil, []string{"run-a", "run-b"}},
	} {
		t.Run(filepath.Base(tc.page), func(t *testing.T) {
			shot := ""
			if d := os.Getenv("FUDBENCH_REPORT_SCREENSHOT_DIR"); d != "" {
				shot = filepath.Join(d, filepath.Base(tc.page)+".png")
			}
			pv := browse(t, browser, tc.page, shot)
			d := pv.Data
			if !slices.Equal(d.StrategyCols, tc.cols) {
				t.Errorf("strategy columns %q, want %q", d.StrategyCols, tc.cols)
			}
			for _, row := range []string{"cuts", "share-updated", "share-bricked", "worst-cut", "time-no-cut", "recovery-p50", "recovery-p95", "space", "programmed", "erased", "max-erases", "boot-ops", "cache"} {
				if cells := d.StrategyCells[row]; len(cells) != len(tc.cols) {
					t.Errorf("row %s: %q, want %d cells", row, cells, len(tc.cols))
				}
			}
			if tc.bricked != nil && !slices.Equal(d.StrategyCells["share-bricked"], tc.bricked) {
				t.Errorf("bricked: %q, want %q", d.StrategyCells["share-bricked"], tc.bricked)
			}
			if got := d.StrategyCells["worst-cut"]; len(got) < 2 || got[1] != "after_block 0: bricked (1 of 1); 6 cut points bricked" || got[0] != "none found" {
				t.Errorf("worst cut points %q", got)
			}
			// The board that reports nothing shows "—", never 0.
			if got := d.StrategyCells["space"]; len(got) < 6 || got[5] != "—" || got[0] != "260 KiB" {
				t.Errorf("space %q", got)
			}
			// Outcome shares, recovery after a cut, time to the new
			// version, flash written.
			if d.StrategyPlots != 4 || d.StrategyPlotsLit != 4 {
				t.Errorf("%d plots in #strategies, %d drawn; want 4", d.StrategyPlots, d.StrategyPlotsLit)
			}
			if !slices.Equal(d.ComparedRuns, tc.compared) {
				t.Errorf("compared runs %q, want %q", d.ComparedRuns, tc.compared)
			}
			if d.Scripts != 0 || len(pv.Requests) != 1 || pv.Requests[0] != "(the report)" {
				t.Errorf("scripts %d, requests %q", d.Scripts, pv.Requests)
			}
			if len(pv.Failed) != 0 || len(pv.Console) != 0 {
				t.Errorf("failed loads %q, console errors %q", pv.Failed, pv.Console)
			}
		})
	}
}
