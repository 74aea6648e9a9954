package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/results"
)

// The seed's case end to end on the built-in boards: an OSCORE transfer
// resumed after every cut with everything cached — no handshake, an Echo
// challenge, no nonce used twice, an old request refused — and the
// classic bug (a recovery bootloader that restores its cached sequence
// number) caught as nonce reuse, failing its cycles and the run with
// exit 1, in the table, summary.json, JUnit, the database and the report.
func TestRunOSCORECampaign(t *testing.T) {
	dir := t.TempDir()
	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "results.db")
	job, err := filepath.Abs("../../examples/oscore.yaml")
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the buggy board fails)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, re := range []string{`(?m)^sim-oscore\s+16\s+16\s.*\spass$`, `(?m)^sim-oscore-nossn\s+16\s+16\s.*\sfail$`,
		`SECURITY nonce-reuse: the device used the oscore nonce of sender ID "", partial IV \d+ again`,
		`security findings: \d+ \(nonce reuse \d+, replay accepted 0\)`} {
		if !regexp.MustCompile(re).MatchString(stdout) {
			t.Errorf("stdout does not match %s:\n%s", re, stdout)
		}
	}
	if !strings.Contains(stderr, "security finding(s)") {
		t.Errorf("stderr does not name the findings:\n%s", stderr)
	}
	o := runReadOutputs(t, out)
	s := o.summary
	if s.Verdict != results.VerdictFail || s.Findings[results.FindingNonceReuse] == 0 || s.Findings[results.FindingReplayAccepted] != 0 {
		t.Fatalf("summary: verdict %s findings %v", s.Verdict, s.Findings)
	}
	safe, buggy := runBoardSummary(t, s, "sim-oscore"), runBoardSummary(t, s, "sim-oscore-nossn")
	if safe.Verdict != results.VerdictPass || safe.Outcomes[results.Updated] != 16 || safe.Findings[results.FindingNonceReuse] != 0 {
		t.Errorf("sim-oscore: %+v", safe)
	}
	// Every cut before the last block leaves the buggy board in recovery,
	// which uses its cached sequence number again.
	if buggy.Verdict != results.VerdictFail || buggy.Findings[results.FindingNonceReuse] < 15 || buggy.Failures < 15 {
		t.Errorf("sim-oscore-nossn: %+v", buggy)
	}

	db := runOpenDB(t, dbPath)
	cycles, err := db.Cycles(s.RunID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cycles {
		if c.Board != "sim-oscore" {
			continue
		}
		sr := c.Secure
		switch {
		case len(c.Findings) > 0:
			t.Errorf("sim-oscore cycle %d: findings %v", c.Cycle, c.Findings)
		case c.Cycle == 16:
			// Cut after the last block: no block is sent after the cut.
		case sr == nil:
			t.Errorf("sim-oscore cycle %d: no secured recovery recorded", c.Cycle)
		case sr.Profile != "oscore" || len(sr.Handshakes) != 0 || sr.Echo < 1 || sr.FirstBlock <= 0 || sr.Bytes <= 0:
			t.Errorf("sim-oscore cycle %d: secured recovery %+v", c.Cycle, sr)
		case sr.Replay != "rejected" && sr.Replay != "challenged" && c.Cycle < 15:
			// (After the cut of cycle 15 the one block left is the last:
			// the device reboots into the new image once it has it, so
			// the old request finds no one to answer it.)
			t.Errorf("sim-oscore cycle %d: a request from before the cut sent again was %q", c.Cycle, sr.Replay)
		}
	}
	if ns, err := db.Nonces(s.RunID); err != nil || len(ns) < 100 {
		t.Errorf("the database keeps %d device nonces (%v)", len(ns), err)
	}
	nonceFails := 0
	for _, su := range o.junit.Suites {
		for _, tc := range su.Cases {
			if tc.Failure != nil && tc.Failure.Type == results.FindingNonceReuse {
				nonceFails++
				if su.Name != "sim-oscore-nossn" {
					t.Errorf("JUnit: %s %s failed with nonce-reuse", su.Name, tc.Name)
				}
			}
		}
	}
	if nonceFails < 15 {
		t.Errorf("JUnit: %d nonce-reuse failures, want at least 15", nonceFails)
	}

	html := filepath.Join(dir, "report.html")
	if o, e, code := runCLI(t, dir, "report", dbPath, "--run", s.RunID, "-o", html); code != 0 {
		t.Fatalf("report: exit %d\n%s\n%s", code, o, e)
	}
	page, err := os.ReadFile(html)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`id="secure"`, `id="security-findings"`, `data-finding="nonce-reuse"`, "the device used the oscore nonce"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestRunDTLSStateCampaign: the built-in board that restores its DTLS
// record layer after a cut goes on with no handshake after every cut,
// and refuses (ignores) a record from before the cut.
func TestRunDTLSStateCampaign(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	job := runWrite(t, filepath.Join(dir, "dtls.yaml"), `name: dtls-state
boards: [sim-dtls]
baseline: {build: {version: 1.0.0, seq: 1, size: 16KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 16KiB, seed: 2}}
block_size: 1024
cuts:
  - after_block: {from: 0, to: 14, step: 2}
off_time: 20ms
recovery_timeout: 500ms
accept: {sim-dtls: [updated]}
`)
	dbPath := filepath.Join(dir, "results.db")
	stdout, stderr, code := runCLI(t, dir, "run", job, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks"))
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	o := runReadOutputs(t, out)
	if o.summary.Cycles != 8 || o.summary.Outcomes[results.Updated] != 8 {
		t.Fatalf("summary %+v", o.summary.Outcomes)
	}
	kinds := map[string]int{}
	for _, e := range o.events {
		if e.Kind == results.DTLSHandshake && e.Cycle > 0 {
			kinds[e.Text]++
		}
	}
	// A full handshake once per cycle at most (before the update, after
	// the baseline was flashed over the probe), and the session goes on
	// with none after each cut.
	if kinds["none"] < 8 || kinds["abbreviated"] != 0 {
		t.Errorf("handshakes %v: want a continued session after every cut", kinds)
	}
	cycles, err := runOpenDB(t, dbPath).Cycles(o.summary.RunID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cycles {
		sr := c.Secure
		if sr == nil || sr.Profile != "dtls/state" || len(sr.Handshakes) == 0 || sr.FirstBlock <= 0 || sr.Replay != "ignored" || len(c.Findings) > 0 {
			t.Errorf("cycle %d: secured recovery %+v, findings %v", c.Cycle, sr, c.Findings)
			continue
		}
		for _, h := range sr.Handshakes {
			if h.Kind != "none" {
				t.Errorf("cycle %d: a %s handshake after the cut", c.Cycle, h.Kind)
			}
		}
	}
}
