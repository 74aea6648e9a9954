package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/coap/oscore"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// secureSims starts boards whose bench talks to them over their secured
// endpoint (OSCORE, or DTLS with a cache).
func secureSims(t *testing.T, cfgs ...sim.Config) (*sim.Sim, string) {
	t.Helper()
	simbench.DevSecrets()
	for i := range cfgs {
		c := &cfgs[i]
		c.Pins, c.UDPAddrs, c.StateDir = true, []string{"127.0.0.1:0"}, t.TempDir()
		if c.DTLSCache == "" {
			c.DTLSAddr = "-"
		}
	}
	return serveSims(t, cfgs)
}

func devOSCORE() *oscore.Params { p := sim.DevOSCORE(); return &p }

// ownSender is the development context with the bench's sender ID id.
func ownSender(id byte) *oscore.Params {
	p := sim.DevOSCORE()
	p.RecipientID = []byte{id}
	return &p
}

const secureJob = `
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 8KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 8KiB, seed: 2}}
block_size: 1024
cuts:
  - after_block: {from: 1, to: 5, step: 2}
off_time: 5ms
recovery_timeout: 5s
`

// Each bug of a recovery bootloader that caches its security context is
// caught, at every cut, by the check that names it; a board without the
// bug in the same run passes.
func TestSecureFindings(t *testing.T) {
	name := func(s string) string { return fmt.Sprintf("s%d-%s", simSeq.Add(1), s) }
	cases := []struct {
		cfg  sim.Config
		want string // the finding every cut must raise; "" none
		hs   string // the DTLS set-up after a cut
	}{
		{sim.Config{Name: name("oscore"), OSCORE: devOSCORE()}, "", ""},
		{sim.Config{Name: name("oscore-ssn"), OSCORE: devOSCORE(), SSNPersist: sim.SSNNone}, results.FindingNonceReuse, ""},
		// Its own bench sender ID, so its own sequence of Partial IVs: the
		// requests to the other OSCORE boards of the run do not widen the
		// gap its replay window sees.
		{sim.Config{Name: name("oscore-replay"), OSCORE: ownSender(0x02), ReplayAfterBoot: sim.ReplayAccept}, results.FindingReplayAccepted, ""},
		{sim.Config{Name: name("dtls-state"), DTLSCache: sim.DTLSCacheState}, "", "none"},
		{sim.Config{Name: name("dtls-state-ssn"), DTLSCache: sim.DTLSCacheState, SSNPersist: sim.SSNNone}, results.FindingNonceReuse, "none"},
		{sim.Config{Name: name("dtls-state-replay"), DTLSCache: sim.DTLSCacheState, ReplayAfterBoot: sim.ReplayAccept}, results.FindingReplayAccepted, "none"},
		{sim.Config{Name: name("dtls-session"), DTLSCache: sim.DTLSCacheSession}, "", "abbreviated"},
	}
	var cfgs []sim.Config
	var names []string
	for _, c := range cases {
		cfgs = append(cfgs, c.cfg)
		names = append(names, c.cfg.Name)
	}
	_, text := secureSims(t, cfgs...)
	base, upd := faultBase(t)
	fr := runFaultJob(t, fmt.Sprintf(secureJob, strings.Join(names, ", ")), parseInventory(t, text), base, upd, func(o *jobs.RunOptions) {
		o.Tx = coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 4}
	})
	checkRecords(t, fr)
	for _, c := range cases {
		cs := byBoard(fr.rep, c.cfg.Name)
		if len(cs) != 3 {
			t.Fatalf("%s: %d cycles", c.cfg.Name, len(cs))
		}
		// The OSCORE device that takes its empty replay window as valid
		// still refuses a request older than the window (32 Partial IVs):
		// when the bench's polls after power-on used more (on a loaded
		// machine), the old request is refused anyway. Most cuts catch it.
		lenient := c.cfg.OSCORE != nil && c.want == results.FindingReplayAccepted
		caught := 0
		for _, cy := range cs {
			for _, f := range cy.Findings {
				if f.Kind == c.want {
					caught++
					break
				}
			}
		}
		if lenient && caught < 2 {
			t.Errorf("%s: %d of 3 cuts caught", c.cfg.Name, caught)
		}
		for _, cy := range cs {
			if cy.Outcome != results.Updated {
				t.Errorf("%s cycle %d: %s (%s)", c.cfg.Name, cy.Cycle, cy.Outcome, cy.Reason)
			}
			kinds := map[string]bool{}
			for _, f := range cy.Findings {
				kinds[f.Kind] = true
			}
			switch {
			case c.want == "" && len(cy.Findings) > 0:
				t.Errorf("%s cycle %d: findings %v", c.cfg.Name, cy.Cycle, cy.Findings)
			case c.want != "" && !kinds[c.want] && !lenient:
				t.Errorf("%s cycle %d: no %s finding (findings %v, secure %+v)", c.cfg.Name, cy.Cycle, c.want, cy.Findings, cy.Secure)
			}
			if cy.Secure == nil {
				t.Errorf("%s cycle %d: no secured recovery", c.cfg.Name, cy.Cycle)
				continue
			}
			if c.hs != "" {
				// With the state restored the bench's session may go on
				// without even a new client: no set-up at all.
				hs := cy.Secure.Handshakes
				if (len(hs) == 0 && c.hs != "none") || (len(hs) > 0 && hs[0].Kind != c.hs) {
					t.Errorf("%s cycle %d: handshakes %+v, want %s", c.cfg.Name, cy.Cycle, hs, c.hs)
				}
			} else if len(cy.Secure.Handshakes) != 0 {
				t.Errorf("%s cycle %d: handshakes %+v over OSCORE", c.cfg.Name, cy.Cycle, cy.Secure.Handshakes)
			}
			if c.want == results.FindingReplayAccepted && cy.Secure.Replay != coap.ReplayAccepted && !lenient {
				t.Errorf("%s cycle %d: replay %q", c.cfg.Name, cy.Cycle, cy.Secure.Replay)
			}
		}
	}
	s := fr.rep.Summary
	if s.Verdict != results.VerdictFail || s.Findings[results.FindingNonceReuse] < 6 || s.Findings[results.FindingReplayAccepted] < 6 {
		t.Errorf("summary: verdict %s, findings %v", s.Verdict, s.Findings)
	}
}

// stopAfter ends a run once n cycle outcomes are seen.
type stopAfter struct {
	mu     sync.Mutex
	n      int
	cancel context.CancelFunc
}

func (s *stopAfter) Emit(e results.Event) {
	if e.Kind != results.CycleOutcome {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.n--; s.n == 0 {
		s.cancel()
	}
}
func (s *stopAfter) Close() {}

// TestResumeKeepsNonces: the nonces a device used before a run was
// interrupted are checked after --resume too. The resumed run meets a
// device whose protected storage was wiped (a new simulated board under
// the same name, its sender sequence number back at 0, the same key):
// the nonces it uses again are found, with the cycle that first used them.
func TestResumeKeepsNonces(t *testing.T) {
	name := fmt.Sprintf("s%d-wiped", simSeq.Add(1))
	cfg := sim.Config{Name: name, OSCORE: devOSCORE()}
	base, upd := faultBase(t)
	job := parseJob(t, fmt.Sprintf(secureJob, name))
	dir := t.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	run := func(resume bool, stop int) *jobs.Report {
		s, text := secureSims(t, cfg)
		defer s.Close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		o := jobs.RunOptions{
			Prepared: mustPrepare(t, job, parseInventory(t, text), base, upd),
			Run:      results.RunInfo{ID: fmt.Sprintf("resume%d", simSeq.Add(1)), Job: job.Name, JobHash: "h-" + name, Started: time.Now()},
			OutDir:   dir, DB: db, Resume: resume, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
			Tx: coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 4},
		}
		if stop > 0 {
			o.Watch = func(map[string]int) jobs.Watcher { return &stopAfter{n: stop, cancel: cancel} }
		}
		rep, _ := jobs.Execute(ctx, o)
		if rep == nil {
			t.Fatal("run did not start")
		}
		return rep
	}
	first := run(false, 1)
	if !first.Interrupted || len(first.Cycles) != 1 || len(first.Cycles[0].Findings) != 0 {
		t.Fatalf("first run: interrupted %v, cycles %+v", first.Interrupted, first.Cycles)
	}
	second := run(true, 0)
	if second.Run.ID != first.Run.ID {
		t.Fatalf("the second run did not resume the first: %s, %s", second.Run.ID, first.Run.ID)
	}
	found := false
	for _, c := range second.Cycles {
		for _, f := range c.Findings {
			if f.Kind == results.FindingNonceReuse && strings.Contains(f.Detail, "first used in cycle 1") {
				found = true
			}
		}
		if c.Cycle == 1 && len(c.Findings) != 0 {
			t.Errorf("cycle 1 (before the interruption) has findings now: %v", c.Findings)
		}
	}
	if !found {
		t.Errorf("no nonce reuse across the resume found: %+v", second.Cycles)
	}
}
