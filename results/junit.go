package results

import (
	"cmp"
	"encoding/xml"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// JUnit XML, in the shape Jenkins, GitLab and GitHub test reporters read:
// one <testsuite> per board, one <testcase> per cycle.

// JUnitSuites is the root element of a JUnit file.
type JUnitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Time     string       `xml:"time,attr"`
	Suites   []JUnitSuite `xml:"testsuite"`
}

// JUnitSuite is one board's cycles.
type JUnitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Hostname   string          `xml:"hostname,attr,omitempty"`
	Properties []JUnitProperty `xml:"properties>property,omitempty"`
	Cases      []JUnitCase     `xml:"testcase"`
}

// JUnitProperty is a name/value pair of a suite.
type JUnitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

// JUnitCase is one cycle.
type JUnitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *JUnitProblem `xml:"failure,omitempty"`
	Error     *JUnitProblem `xml:"error,omitempty"`
	SystemOut *JUnitOutput  `xml:"system-out,omitempty"`
}

// JUnitOutput is a <system-out>.
type JUnitOutput struct {
	Text string `xml:",cdata"`
}

// JUnitProblem is a <failure> or an <error>.
type JUnitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",cdata"` // CDATA keeps newlines readable in the raw file
}

// BuildJUnit makes the JUnit document of a run: s gives the boards and
// their order, cycles the test cases. An outcome the job does not accept
// is a <failure>; a bench failure (an infra error, a missed cut) an
// <error>, since the test itself did not run as planned. Both hold the
// reason and the cycle's last console lines.
func BuildJUnit(s Summary, cycles []Cycle) JUnitSuites {
	boards := boardOrder(s.Boards, cycles)
	doc := JUnitSuites{Name: "fudbench " + s.Job}
	var total time.Duration
	for _, b := range boards {
		var bc []Cycle
		for _, c := range cycles {
			if c.Board == b {
				bc = append(bc, c)
			}
		}
		slices.SortStableFunc(bc, func(x, y Cycle) int { return cmp.Compare(x.Cycle, y.Cycle) })
		suite := JUnitSuite{Name: xmlSafe(b), Tests: len(bc), Hostname: s.Host,
			Properties: []JUnitProperty{{"run", s.RunID}, {"job", s.Job}, {"job_hash", s.JobHash}}}
		if !s.Started.IsZero() {
			suite.Timestamp = s.Started.UTC().Format("2006-01-02T15:04:05")
		}
		var st time.Duration
		for _, c := range bc {
			d := max(c.End-c.Start, 0)
			st += d
			tc := JUnitCase{
				Name:      xmlSafe(fmt.Sprintf("cycle %d: %s", c.Cycle, c.Plan)),
				Classname: xmlSafe("fudbench." + b),
				Time:      seconds(d),
			}
			if out := caseOutput(c); out != "" {
				tc.SystemOut = &JUnitOutput{xmlSafe(out)}
			}
			if failed(c) {
				p := &JUnitProblem{Message: xmlSafe(problemMessage(c)), Type: string(c.Outcome), Text: xmlSafe(problemText(c))}
				if len(c.Findings) > 0 {
					// A security finding is the device's failure, whatever
					// else happened in the cycle.
					p.Type = c.Findings[0].Kind
					tc.Failure = p
					suite.Failures++
				} else if c.Outcome.BenchFailure() {
					tc.Error = p
					suite.Errors++
				} else {
					tc.Failure = p
					suite.Failures++
				}
			}
			suite.Cases = append(suite.Cases, tc)
		}
		suite.Time = seconds(st)
		total += st
		doc.Tests += suite.Tests
		doc.Failures += suite.Failures
		doc.Errors += suite.Errors
		doc.Suites = append(doc.Suites, suite)
	}
	doc.Time = seconds(total)
	return doc
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func problemMessage(c Cycle) string {
	if len(c.Findings) > 0 {
		return c.Findings[0].Kind + ": " + c.Findings[0].Detail
	}
	why := failureWhy(c.Missed, c.Reason)
	if why == "" {
		return string(c.Outcome)
	}
	return string(c.Outcome) + ": " + why
}

func problemText(c Cycle) string {
	var b strings.Builder
	fmt.Fprintf(&b, "outcome: %s", c.Outcome)
	if c.Reflashed {
		b.WriteString(" (reflashed)")
	}
	b.WriteString("\n")
	if c.Reason != "" {
		fmt.Fprintf(&b, "reason: %s\n", c.Reason)
	}
	if c.Missed != "" {
		fmt.Fprintf(&b, "missed cut: %s\n", c.Missed)
	}
	for _, f := range c.Findings {
		fmt.Fprintf(&b, "security: %s: %s\n", f.Kind, f.Detail)
	}
	if c.Attempts > 1 {
		fmt.Fprintf(&b, "attempts: %d\n", c.Attempts)
	}
	if c.Outcome == MissedCut || (c.Cut != nil && c.Cut.Device != nil) {
		// Planned beside actual: what the reader needs to judge the aim.
		fmt.Fprintf(&b, "planned: %s", c.Plan)
		if c.PlannedBlock >= 0 {
			fmt.Fprintf(&b, " (block %d)", c.PlannedBlock)
		}
		b.WriteString("\n")
	}
	if c.Cut != nil {
		fmt.Fprintf(&b, "cut: %s, last acked block %d, in flight %d\n", c.Cut.Trigger, c.Cut.LastAcked, c.Cut.InFlight)
		if d := c.Cut.Device; d != nil {
			fmt.Fprintf(&b, "device's record: writing block %d, last acked %d", d.Writing, d.LastAcked)
			if d.Flash != "" {
				fmt.Fprintf(&b, ", flash %s", d.Flash)
			}
			b.WriteString("\n")
		}
	} else if c.Outcome == MissedCut {
		b.WriteString("cut: never fired\n")
	}
	if len(c.LastConsole) > 0 {
		b.WriteString("last console lines:\n")
		for _, l := range c.LastConsole {
			b.WriteString("  ")
			b.WriteString(l)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// caseOutput notes an accepted outcome other than updated (a bricked and
// reflashed board the job allows), and a cycle run again after a missed
// cut, so they are visible in a green report.
func caseOutput(c Cycle) string {
	if failed(c) {
		return ""
	}
	var s string
	if c.Outcome != Updated {
		s = "outcome: " + string(c.Outcome)
		if c.Reflashed {
			s += " (reflashed)"
		}
		s += "\n"
		if c.Reason != "" {
			s += "reason: " + c.Reason + "\n"
		}
	}
	if c.Attempts > 1 {
		s += fmt.Sprintf("attempts: %d (an earlier run missed its planned cut)\n", c.Attempts)
	}
	return s
}

// ansiCSI matches terminal control sequences (colours, cursor moves) that
// firmware consoles print.
var ansiCSI = regexp.MustCompile("\x1b\\[[0-9;?]*[ -/]*[@-~]")

// xmlSafe drops terminal control sequences and replaces characters XML
// 1.0 cannot hold (other control codes, invalid UTF-8) with U+FFFD: a
// console line is outside bytes, and CDATA sections are written verbatim.
func xmlSafe(s string) string {
	s = ansiCSI.ReplaceAllString(s, "")
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r >= 0xD800 && r <= 0xDFFF:
			return '\uFFFD'
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// MarshalJUnit encodes doc as an indented XML document with its header.
func MarshalJUnit(doc JUnitSuites) ([]byte, error) {
	b, err := xml.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("results: junit: %w", err)
	}
	return append(append([]byte(xml.Header), b...), '\n'), nil
}

// WriteJUnit writes the JUnit file of a run to path atomically.
func WriteJUnit(path string, s Summary, cycles []Cycle) error {
	b, err := MarshalJUnit(BuildJUnit(s, cycles))
	if err != nil {
		return fmt.Errorf("results: junit %s: %w", path, err)
	}
	return writeFileAtomic(path, b)
}
