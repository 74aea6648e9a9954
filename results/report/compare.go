package report

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fudbench/fudbench/results"
)

// ResolveRun reads one run of a comparison, named by arg:
//
//   - a run's output directory: its run, as Load reads it;
//   - a results database file: its newest run;
//   - PATH#RUNID: run RUNID of the database file or output directory PATH;
//   - anything else is a run ID, looked up in the database db.
//
// A path that exists wins over a run ID of the same name. Errors for a
// bad input match ErrInput and name arg.
func ResolveRun(arg, db string) (*Input, error) {
	if arg == "" {
		return nil, inputErr("report input: an empty run name")
	}
	if _, err := os.Stat(arg); err == nil {
		return load(arg, "", false)
	}
	if i := strings.LastIndexByte(arg, '#'); i >= 0 {
		path, id := arg[:i], arg[i+1:]
		if path == "" || id == "" {
			return nil, inputErr("report input %s: want PATH#RUNID", arg)
		}
		return load(path, id, false)
	}
	if strings.ContainsRune(arg, filepath.Separator) || strings.ContainsRune(arg, '/') || filepath.Ext(arg) == ".db" {
		// Meant as a path: say that it is missing.
		return load(arg, "", false)
	}
	if db == "" {
		return nil, inputErr("report input %s: no such file or directory (give a database to look it up as a run ID)", arg)
	}
	if _, err := os.Stat(db); err != nil {
		return nil, inputErr("report input %s: no such file or directory, nor a run ID: no database %s to look it up in", arg, db)
	}
	return load(db, arg, false)
}

// ComparedRun is one run of a comparison page.
type ComparedRun struct {
	RunID, Job, Source string
	Started            time.Time
	Cycles             int
	Verdict            results.Verdict
	// Strategies lists the run's strategy columns.
	Strategies []string
}

// Comparison is a shaped comparison page: runs side by side in the form
// of a report's Strategies section.
type Comparison struct {
	Title      string
	Generated  time.Time
	Runs       []ComparedRun
	Strategies *StrategyView
}

// BuildComparison shapes the comparison of ins, one column per run and
// strategy, and draws its plots.
func BuildComparison(ins []Input) (*Comparison, error) {
	c := &Comparison{Generated: time.Now().UTC()}
	var ids []string
	for _, in := range ins {
		r := ComparedRun{RunID: in.Summary.RunID, Job: in.Summary.Job, Source: in.Source, Started: in.Summary.Started,
			Cycles: in.Summary.Cycles, Verdict: in.Summary.Verdict}
		for _, col := range Strategies(in) {
			r.Strategies = append(r.Strategies, col.Strategy)
		}
		c.Runs = append(c.Runs, r)
		ids = append(ids, r.RunID)
	}
	c.Title = "fudbench comparison: " + strings.Join(ids, ", ")
	var err error
	if c.Strategies, err = buildStrategyView(CompareStrategies(ins), true); err != nil {
		return nil, err
	}
	return c, nil
}

// RenderComparison writes c as one HTML page.
func RenderComparison(w io.Writer, c *Comparison) error {
	if err := pages().ExecuteTemplate(w, "compare", c); err != nil {
		return fmt.Errorf("report: render: %w", err)
	}
	return nil
}

// WriteComparison builds the comparison of ins and writes it to path as
// WriteFile does.
func WriteComparison(path string, ins []Input) error {
	c, err := BuildComparison(ins)
	if err != nil {
		return err
	}
	var b bytes.Buffer
	if err := RenderComparison(&b, c); err != nil {
		return err
	}
	return writePage(path, b.Bytes())
}
