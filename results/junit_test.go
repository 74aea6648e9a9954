package results

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteJUnit(t *testing.T) {
	run := testRun("r1")
	cycles := testCycles(run.ID)
	s := Summarize(run, cycles)
	path := filepath.Join(t.TempDir(), "out", "junit.xml")
	if err := WriteJUnit(path, s, cycles); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Well-formed all the way through (a strict token walk, not just the
	// fields Unmarshal looks at).
	dec := xml.NewDecoder(bytes.NewReader(raw))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("junit.xml is not well-formed: %v\n%s", err, raw)
		}
	}
	var doc JUnitSuites
	if err := xml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 8 || doc.Failures != 1 || doc.Errors != 2 {
		t.Errorf("testsuites counts tests=%d failures=%d errors=%d, want 8 1 2", doc.Tests, doc.Failures, doc.Errors)
	}
	if len(doc.Suites) != 2 || doc.Suites[0].Name != "sim-safe" || doc.Suites[1].Name != "sim-naive" {
		t.Fatalf("suites %+v", doc.Suites)
	}
	for _, su := range doc.Suites {
		// Attribute counts must match the elements.
		var f, e int
		for _, c := range su.Cases {
			if c.Failure != nil {
				f++
			}
			if c.Error != nil {
				e++
			}
			if c.Classname != "fudbench."+su.Name {
				t.Errorf("classname %q in suite %s", c.Classname, su.Name)
			}
		}
		if su.Tests != len(su.Cases) || su.Failures != f || su.Errors != e {
			t.Errorf("suite %s: tests=%d failures=%d errors=%d, elements %d %d %d",
				su.Name, su.Tests, su.Failures, su.Errors, len(su.Cases), f, e)
		}
	}
	safe := doc.Suites[0]
	if safe.Cases[0].Name != "cycle 1: after_block 0" || safe.Cases[0].Time != "2.500" || safe.Cases[0].Failure != nil {
		t.Errorf("first case %+v", safe.Cases[0])
	}
	naive := doc.Suites[1].Cases
	if naive[0].Failure != nil || naive[0].SystemOut == nil || !strings.Contains(naive[0].SystemOut.Text, "bricked (reflashed)") {
		t.Errorf("accepted brick: %+v", naive[0])
	}
	f := naive[1].Failure
	if f == nil || f.Message != `rolled-back: version 1.0.0 still runs, want "1.1.0"` || f.Type != "rolled-back" {
		t.Fatalf("rolled-back case failure %+v", f)
	}
	if !strings.Contains(f.Text, "app 1.0.0 up") || !strings.Contains(f.Text, "& <tag>") || !strings.Contains(f.Text, "reason: version") {
		t.Errorf("failure text lacks the reason or console lines:\n%s", f.Text)
	}
	if strings.ContainsAny(f.Text, "\x00\x1b\a") || !strings.Contains(f.Text, "  red & <tag> \uFFFD bell\uFFFD\n") {
		t.Errorf("console line not cleaned of control codes: %q", f.Text)
	}
	if e := naive[2].Error; e == nil || naive[2].Failure != nil || !strings.HasPrefix(e.Message, "infra-error: power:") {
		t.Errorf("infra error case %+v", naive[2])
	}
	// A missed cut is the bench's error, though the cycle says accepted.
	mc := naive[3]
	if mc.Failure != nil || mc.SystemOut != nil || mc.Error == nil || mc.Error.Type != "missed-cut" ||
		mc.Error.Message != "missed-cut: fired after block 44 was acknowledged, planned after block 40" {
		t.Fatalf("missed cut case %+v (error %+v)", mc, mc.Error)
	}
	for _, frag := range []string{"missed cut: fired after block 44", "attempts: 2\n", "planned: after_block 40 (block 40)\n",
		"cut: after_block 40, last acked block 44, in flight -1\n", "device's record: writing block 45, last acked 44, flash erase\n",
		"flash: erase sector 11"} {
		if !strings.Contains(mc.Error.Text, frag) {
			t.Errorf("missed cut text lacks %q:\n%s", frag, mc.Error.Text)
		}
	}
	// A cycle that landed on its second run says so in a green report.
	if out := safe.Cases[1].SystemOut; out == nil || out.Text != "attempts: 2 (an earlier run missed its planned cut)\n" {
		t.Errorf("re-run cycle output %+v", out)
	}
	if safe.Cases[0].SystemOut != nil {
		t.Errorf("a plain updated cycle has output %q", safe.Cases[0].SystemOut.Text)
	}
}

func TestXMLSafe(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain <a> & b", "plain <a> & b"},
		{"tab\tnl\ncr\r", "tab\tnl\ncr\r"},
		{"\x1b[1;31mred\x1b[0m \x1b[2K", "red "},
		{"nul\x00 bell\a esc\x1b alone", "nul\uFFFD bell\uFFFD esc\uFFFD alone"},
		{"bad utf8 \xff\xfe end", "bad utf8 \uFFFD end"},
		{"\uFFFF and \uFFFE", "\uFFFD and \uFFFD"},
		{"keeps é and 🔌", "keeps é and 🔌"},
	}
	for _, tt := range tests {
		if got := xmlSafe(tt.in); got != tt.want {
			t.Errorf("xmlSafe(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzJUnitConsole feeds arbitrary console bytes and reasons (outside
// bytes) through the JUnit writer: the result must always parse.
func FuzzJUnitConsole(f *testing.F) {
	f.Add("version 1.0.0 still runs", "boot ok", "cut after_block 3")
	f.Add("]]>", "\x1b[31m]]>\x00", "<plan & \"q\">")
	f.Add("\xff\xfe", "\uFFFF\r\n", "\t")
	f.Fuzz(func(t *testing.T, reason, console, plan string) {
		cs := []Cycle{{Board: "b<&>", Cycle: 1, Plan: plan, Outcome: Bricked, Reason: reason, LastConsole: []string{console}},
			{Board: "b<&>", Cycle: 2, Plan: plan, Outcome: InfraError, Reason: reason},
			{Board: "b<&>", Cycle: 3, Plan: plan, Outcome: MissedCut, Missed: reason, Attempts: 2,
				Cut: &CutInfo{Trigger: plan, Device: &DeviceCut{Writing: 4, LastAcked: 3, Flash: console}}}}
		s := Summarize(RunInfo{ID: "r", Job: plan}, cs)
		b, err := MarshalJUnit(BuildJUnit(s, cs))
		if err != nil {
			t.Fatal(err)
		}
		dec := xml.NewDecoder(bytes.NewReader(b))
		for {
			_, err := dec.Token()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("invalid XML: %v\n%s", err, b)
			}
		}
		var doc JUnitSuites
		if err := xml.Unmarshal(b, &doc); err != nil || doc.Failures != 1 || doc.Errors != 2 {
			t.Fatalf("parsed %+v, %v", doc, err)
		}
	})
}

func TestJUnitEmptyRun(t *testing.T) {
	s := Summarize(RunInfo{ID: "r", Job: "j", Boards: []string{"b"}}, nil)
	b, err := MarshalJUnit(BuildJUnit(s, nil))
	if err != nil {
		t.Fatal(err)
	}
	var doc JUnitSuites
	if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Tests != 0 || len(doc.Suites) != 1 || doc.Suites[0].Tests != 0 {
		t.Errorf("empty run: %+v", doc)
	}
}
