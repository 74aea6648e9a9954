package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/lab"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// labProc is a fudbench process of a lab test, its output kept for the
// failure message.
type labProc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *labProc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *labProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// signal sends sig and waits for the process to end.
func (p *labProc) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not end within 30 s of %v:\n%s", p.name, sig, p.output())
	}
}

func startProc(t testing.TB, name string, args ...string) *labProc {
	t.Helper()
	p := &labProc{name: name, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("--- %s:\n%s", name, p.output())
		}
	})
	return p
}

// testLab is a coordinator started by a test.
type testLab struct {
	*labProc
	dir, url, nats     string
	listen, natsListen string
	keys               string // the agents' nkey seed files
	ca                 string // the certificate to trust, over TLS
	extra              []string
}

// restart starts the coordinator again as it was, on the same ports.
func (l *testLab) restart(t testing.TB) *testLab {
	t.Helper()
	l2 := startLab(t, l.dir, l.listen, l.natsListen, l.extra...)
	l2.keys, l2.ca = l.keys, l.ca
	return l2
}

// startLab starts `fudbench serve` on ephemeral ports (or the ports of
// an earlier one, to restart it) and waits until it serves.
func startLab(t testing.TB, dir, listen, natsListen string, extra ...string) *testLab {
	t.Helper()
	if listen == "" {
		listen, natsListen = "127.0.0.1:0", "127.0.0.1:0"
	}
	args := append([]string{"serve", "--data", dir, "--listen", listen, "--nats-listen", natsListen}, extra...)
	l := &testLab{labProc: startProc(t, "serve", args...), dir: dir, keys: filepath.Dir(dir), extra: extra}
	api := regexp.MustCompile(`API\s+(https?://\S+)`)
	nurl := regexp.MustCompile(`NATS\s+((?:nats|tls)://\S+)`)
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		out := l.output()
		if m := api.FindStringSubmatch(out); m != nil {
			if n := nurl.FindStringSubmatch(out); n != nil {
				l.url, l.nats = m[1], n[1]
				l.listen = l.url[strings.Index(l.url, "://")+3:]
				l.natsListen = l.nats[strings.Index(l.nats, "://")+3:]
				return l
			}
		}
		select {
		case <-l.done:
			t.Fatalf("fudbench serve ended:\n%s", out)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("fudbench serve did not start in 60 s:\n%s", l.output())
	return nil
}

func (l *testLab) token(scope string) string {
	return filepath.Join(l.dir, scope)
}

func (l *testLab) client(t testing.TB, scope string) *lab.Client {
	b, err := os.ReadFile(l.token(scope))
	if err != nil {
		t.Fatal(err)
	}
	c := &lab.Client{URL: l.url, Token: strings.TrimSpace(string(b))}
	if l.ca != "" {
		pool, err := lab.CertPool(l.ca)
		if err != nil {
			t.Fatal(err)
		}
		c.HTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	}
	return c
}

// agent starts `fudbench agent` on the built-in boards.
func (l *testLab) agent(t testing.TB, name string, extra ...string) *labProc {
	t.Helper()
	args := append([]string{"agent", "--server", l.url, "--token-file", l.token(submitTokenFile), "--name", name,
		"--nkey", filepath.Join(l.keys, "agent-"+name+".nk")}, extra...)
	a := startProc(t, "agent "+name, args...)
	// Announced once its boards show in the lab.
	cl := l.client(t, readTokenFile)
	waitFor(t, 60*time.Second, "agent "+name+" announced", func() bool {
		ags, err := cl.Agents(context.Background())
		for _, ag := range ags {
			if ag.Name == name {
				return true
			}
		}
		select {
		case <-a.done:
			t.Fatalf("agent %s ended:\n%s", name, a.output())
		default:
		}
		return err == nil && false
	})
	return a
}

func waitFor(t testing.TB, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// submit runs `fudbench submit` and returns stdout, stderr and the exit code.
func (l *testLab) submit(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	return cli(t, append([]string{"submit", "--server", l.url, "--token-file", l.token(submitTokenFile)}, args...)...)
}

// labDB opens the coordinator's results database read-side.
func (l *testLab) db(t testing.TB) *results.DB {
	t.Helper()
	db, err := results.OpenDB(filepath.Join(l.dir, "results.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// labModes are the two ways a coordinator runs: with its embedded NATS
// server, and on an external three-node cluster.
var labModes = []struct {
	name  string
	start func(t *testing.T, extra ...string) *testLab
}{
	{"embedded", func(t *testing.T, extra ...string) *testLab { return startLab(t, t.TempDir(), "", "", extra...) }},
	{"cluster", startClusterLab},
}

// startClusterLab starts three NATS servers with JetStream in one
// cluster on loopback (nats-server as a library) and a coordinator on
// them, with nkeys made for it and for agents pi1 to pi3, each agent
// with lab.AgentPermissions, as a lab's own cluster configuration would.
func startClusterLab(t *testing.T, extra ...string) *testLab {
	t.Helper()
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys")
	coord, err := lab.AgentKey(filepath.Join(keys, "coordinator.nk"))
	if err != nil {
		t.Fatal(err)
	}
	cpub, _ := coord.PublicKey()
	users := []*server.NkeyUser{{Nkey: cpub}}
	for _, n := range []string{"pi1", "pi2", "pi3"} {
		kp, err := lab.AgentKey(filepath.Join(keys, "agent-"+n+".nk"))
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := kp.PublicKey()
		users = append(users, &server.NkeyUser{Nkey: pub, Permissions: lab.AgentPermissions(n)})
	}
	var routes []*url.URL
	var ports []int
	for range 3 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		routes = append(routes, &url.URL{Scheme: "nats", Host: ln.Addr().String()})
	}
	var servers []*server.Server
	var urls []string
	for i := range 3 {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			Cluster: server.ClusterOpts{Name: "fudbench-test", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes, Nkeys: users, NoSigs: true, NoLog: true,
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		t.Cleanup(ns.Shutdown)
		if !ns.ReadyForConnections(30 * time.Second) {
			t.Fatalf("nats server n%d did not start", i+1)
		}
		servers = append(servers, ns)
		urls = append(urls, ns.ClientURL())
	}
	waitFor(t, 60*time.Second, "a JetStream meta leader", func() bool {
		for _, ns := range servers {
			if ns.JetStreamIsLeader() {
				return true
			}
		}
		return false
	})
	args := append([]string{"--nats", strings.Join(urls, ","), "--nats-nkey", filepath.Join(keys, "coordinator.nk"), "--replicas", "3"}, extra...)
	l := startLab(t, filepath.Join(dir, "lab"), "", "", args...)
	l.keys = keys
	return l
}

// TestLabDemo is the newcomer's path: a coordinator, two agents, the demo
// job submitted with --wait; then what the API and dashboard show. Once
// with the embedded NATS server, once on an external cluster.
func TestLabDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("a lab with two agents")
	}
	for _, m := range labModes {
		t.Run(m.name, func(t *testing.T) { testLabDemo(t, m.start(t)) })
	}
}

func testLabDemo(t *testing.T, l *testLab) {
	l.agent(t, "pi1")
	l.agent(t, "pi2")
	dir := t.TempDir()
	junit, report := filepath.Join(dir, "junit.xml"), filepath.Join(dir, "report.html")
	start := time.Now()
	stdout, stderr, code := l.submit(t, "testdata/lab/small.yaml", "--wait", "--junit", junit, "--report", report)
	if code != 0 {
		t.Fatalf("submit --wait: exit %d\n%s%s", code, stdout, stderr)
	}
	id := strings.TrimSpace(stdout)
	t.Logf("submit --wait: %v\n%s", time.Since(start).Round(time.Millisecond), stderr)
	for _, want := range []string{"queued " + id, "running on pi", "sim-naive    cycle 4", "pass on pi", "8/8 cycles, 0 failed, exit 0"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("submit --wait output lacks %q", want)
		}
	}
	var doc results.JUnitSuites
	if b, err := os.ReadFile(junit); err != nil {
		t.Fatal(err)
	} else if err := xml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("junit.xml: %v", err)
	} else if doc.Tests != 8 || doc.Failures != 0 {
		t.Errorf("junit.xml: %d tests, %d failures; want 8, 0", doc.Tests, doc.Failures)
	}
	if b, err := os.ReadFile(report); err != nil || !bytes.Contains(b, []byte(id)) {
		t.Errorf("report.html does not name the run (%v)", err)
	}

	// Central results: every cycle, and the events of every cycle.
	db := l.db(t)
	cs, err := db.Cycles(id)
	if err != nil || len(cs) != 8 {
		t.Fatalf("central store holds %d cycles of %s (%v), want 8", len(cs), id, err)
	}
	evs, err := db.ReadEvents(id)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := 0
	for _, e := range evs {
		if e.Kind == results.CycleOutcome {
			outcomes++
		}
	}
	if outcomes != 8 {
		t.Errorf("central store holds %d cycle.outcome events, want 8", outcomes)
	}
	rec, err := db.Run(id)
	if err != nil || rec.Status != "pass" || (rec.Host != "pi1" && rec.Host != "pi2") {
		t.Errorf("central run record %+v (%v), want pass on pi1 or pi2", rec, err)
	}

	// The agent that ran it shows its boards free again, with their last
	// outcome and health.
	waitFor(t, 15*time.Second, rec.Host+"'s sim-safe announced free, updated and ok", func() bool {
		ags, err := l.client(t, readTokenFile).Agents(context.Background())
		for _, a := range ags {
			for _, b := range a.Boards {
				if a.Name == rec.Host && b.Name == "sim-safe" {
					return err == nil && b.Last == "updated" && b.Health == "ok" && b.Run == "" && b.Pool == "default"
				}
			}
		}
		return false
	})

	// runs lists it; the read token may not submit or cancel.
	out, errOut, code := cli(t, "runs", "--server", l.url, "--token-file", l.token(readTokenFile))
	if code != 0 || !regexp.MustCompile(id+`\s+lab-small\s+default\s+pi[12]\s+pass\s+8/8`).MatchString(out) {
		t.Errorf("runs: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = cli(t, "cancel", id, "--server", l.url, "--token-file", l.token(readTokenFile))
	if code != ExitUsage || !strings.Contains(errOut, "may read, not submit or cancel") {
		t.Errorf("cancel with the read token: exit %d, %s", code, errOut)
	}

	// The dashboard is one page with no outside resource, and its live
	// stream starts with the runs and the agents.
	resp, err := http.Get(l.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(page, []byte("EventSource")) || regexp.MustCompile(`(src|href)="(https?:)?//`).Match(page) {
		t.Errorf("dashboard: %s, %d bytes, or it loads something from outside", resp.Status, len(page))
	}
	cl := l.client(t, readTokenFile)
	req, _ := http.NewRequest("GET", l.url+"/api/v1/live?access_token="+cl.Token, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err = http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var sawRun, sawAgents bool
	for sc.Scan() && !(sawRun && sawAgents) {
		line := sc.Text()
		if d, ok := strings.CutPrefix(line, "data: "); ok && strings.Contains(d, id) && strings.Contains(d, `"status":"pass"`) {
			sawRun = true
		}
		if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"name":"pi1"`) && strings.Contains(line, `"sim-safe"`) {
			sawAgents = true
		}
	}
	if !sawRun || !sawAgents {
		t.Errorf("live stream: run %v, agents %v", sawRun, sawAgents)
	}
}

// TestLabRefuses: a job that fails validation is not queued (exit 2,
// file:line:column), and the API wants a token.
func TestLabRefuses(t *testing.T) {
	l := startLab(t, t.TempDir(), "", "")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("name: x\ncuts: [\n"), 0o644)
	_, errOut, code := l.submit(t, bad)
	if code != ExitUsage || !strings.Contains(errOut, "bad.yaml:2:") {
		t.Errorf("bad job: exit %d, %s", code, errOut)
	}
	_, errOut, code = l.submit(t, "testdata/lab/small.yaml", "--pool", "no.such")
	if code != ExitUsage || !strings.Contains(errOut, "--pool") {
		t.Errorf("bad pool: exit %d, %s", code, errOut)
	}
	// No agent serves the pool yet: queued with a warning.
	out, errOut, code := l.submit(t, "testdata/lab/small.yaml", "--pool", "later")
	if code != 0 || !strings.Contains(errOut, "no agent serves pool later") {
		t.Errorf("submit to an empty pool: exit %d, %s%s", code, out, errOut)
	}
	cl := l.client(t, readTokenFile)
	runs, err := cl.Runs(context.Background())
	if err != nil || len(runs) != 1 || runs[0].Status != lab.StatusQueued {
		t.Errorf("runs after one good submission: %+v, %v", runs, err)
	}
	// Cancel it while queued: it never runs.
	if out, errOut, code = cli(t, "cancel", strings.TrimSpace(out), "--server", l.url, "--token-file", l.token(submitTokenFile)); code != 0 || !strings.Contains(out, "cancelled") {
		t.Errorf("cancel a queued run: exit %d, %s%s", code, out, errOut)
	}
	for _, c := range []struct{ name, header string }{{"no token", ""}, {"wrong token", "Bearer nope"}} {
		req, _ := http.NewRequest("GET", l.url+"/api/v1/runs", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: %s, want 401", c.name, resp.Status)
		}
	}
	os.WriteFile(filepath.Join(dir, "wrong"), []byte("nope\n"), 0o600)
	_, errOut, code = cli(t, "runs", "--server", l.url, "--token-file", filepath.Join(dir, "wrong"))
	if code != ExitUsage || !strings.Contains(errOut, "not one of this coordinator's") {
		t.Errorf("runs with a wrong token: exit %d, %s", code, errOut)
	}
	// A submission over the limit is refused before it is read whole.
	req, _ := http.NewRequest("POST", l.url+"/api/v1/runs", io.LimitReader(zeros{}, lab.MaxSubmitBody+1))
	req.Header.Set("Authorization", "Bearer "+l.client(t, submitTokenFile).Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized submission: %s, want 413", resp.Status)
	}
	// An image over the limit, or whose bytes are not its name, is
	// refused.
	for _, c := range []struct {
		name   string
		digest string
		body   io.Reader
		want   int
	}{
		{"image of 64 MiB + 1", strings.Repeat("0", 64), io.LimitReader(zeros{}, fwimage.MaxImageSize+1), http.StatusRequestEntityTooLarge},
		{"image not its digest", strings.Repeat("0", 64), strings.NewReader("not an image"), http.StatusBadRequest},
	} {
		req, _ := http.NewRequest("PUT", l.url+"/api/v1/images/"+c.digest, c.body)
		req.Header.Set("Authorization", "Bearer "+l.client(t, submitTokenFile).Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: %s, want %d", c.name, resp.Status, c.want)
		}
	}
	// A second agent of the same name is refused, with the same key as
	// the first one's (two processes) or another.
	l.agent(t, "pi1")
	_, errOut, code = cli(t, "agent", "--server", l.url, "--token-file", l.token(submitTokenFile), "--name", "pi1",
		"--nkey", filepath.Join(l.keys, "agent-pi1.nk"))
	if code != ExitUsage || !strings.Contains(errOut, "an agent named pi1") {
		t.Errorf("second agent pi1: exit %d, %s", code, errOut)
	}
	_, errOut, code = cli(t, "agent", "--server", l.url, "--token-file", l.token(submitTokenFile), "--name", "pi1",
		"--nkey", filepath.Join(dir, "other.nk"))
	if code != ExitUsage || !strings.Contains(errOut, "agent pi1 is enrolled with another key") {
		t.Errorf("agent pi1 with another key: exit %d, %s", code, errOut)
	}
	// A key nobody enrolled is refused by NATS itself.
	_, errOut, code = cli(t, "agent", "--server", l.url, "--token-file", l.token(readTokenFile), "--name", "pi9",
		"--nkey", filepath.Join(dir, "pi9.nk"))
	if code != ExitUsage || !strings.Contains(errOut, "refused agent pi9's key") {
		t.Errorf("agent pi9 not enrolled: exit %d, %s", code, errOut)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestLabManyJobs: three agents, two pools, ten jobs submitted at once
// from two clients. Every job runs exactly once, in its pool; no board
// runs two jobs at once; every result lands centrally; --wait exits with
// each job's code.
func TestLabManyJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("three agents, ten jobs")
	}
	for _, m := range labModes {
		t.Run(m.name, func(t *testing.T) { testLabManyJobs(t, m.start(t)) })
	}
}

func testLabManyJobs(t *testing.T, l *testLab) {
	// pi1 and pi2 serve pool a, pi3 pool b; pi1 has a board in pool b
	// too, on which the jobs (they name sim-safe and sim-naive) cannot
	// run: it must leave them to pi3.
	l.agent(t, "pi1", "--pool", "a", "--pool", "sim-dtls=b")
	l.agent(t, "pi2", "--pool", "a")
	l.agent(t, "pi3", "--pool", "b")
	type sub struct {
		pool, job string
		code      int
		id        string
		out       string
	}
	var subs []*sub
	for i := range 10 {
		s := &sub{pool: "a", job: "testdata/lab/small.yaml"}
		if i%2 == 1 {
			s.pool = "b"
		}
		if i == 3 || i == 6 {
			s.job = "testdata/lab/strict.yaml" // sim-naive bricks: exit 1
		}
		subs = append(subs, s)
	}
	var wg sync.WaitGroup
	for i, s := range subs {
		wg.Go(func() {
			// Two clients: each its own token file copy.
			tok := l.token(submitTokenFile)
			if i%2 == 0 {
				tok = filepath.Join(t.TempDir(), "token")
				b, _ := os.ReadFile(l.token(submitTokenFile))
				os.WriteFile(tok, b, 0o600)
			}
			stdout, stderr, code := cli(t, "submit", s.job, "--server", l.url, "--token-file", tok, "--pool", s.pool, "--wait")
			s.id, s.code, s.out = strings.TrimSpace(stdout), code, stderr
		})
	}
	wg.Wait()
	db := l.db(t)
	type span struct {
		run        string
		start, end time.Time
	}
	spans := map[string][]span{} // agent/board → runs on it
	for i, s := range subs {
		want := 0
		if strings.Contains(s.job, "strict") {
			want = ExitDeviceFail
		}
		if s.code != want {
			t.Errorf("job %d (%s, pool %s): exit %d, want %d\n%s", i, s.job, s.pool, s.code, want, s.out)
			continue
		}
		rec, err := db.Run(s.id)
		if err != nil {
			t.Fatalf("job %d: %v", i, err)
		}
		cs, _ := db.Cycles(s.id)
		if len(cs) != 8 {
			t.Errorf("job %d: %d cycles stored centrally, want 8", i, len(cs))
		}
		inPool := map[string][]string{"a": {"pi1", "pi2"}, "b": {"pi3"}}[s.pool]
		if !strings.Contains(strings.Join(inPool, " "), rec.Host) || rec.Host == "" {
			t.Errorf("job %d of pool %s ran on %q", i, s.pool, rec.Host)
		}
		// Taken once: one start per run on the timeline.
		evs, _ := db.ReadEvents(s.id)
		first := map[string]time.Time{}
		last := map[string]time.Time{}
		for _, e := range evs {
			if e.Board == "" {
				continue
			}
			if _, ok := first[e.Board]; !ok {
				first[e.Board] = e.Wall
			}
			last[e.Board] = e.Wall
		}
		for b := range first {
			k := rec.Host + "/" + b
			spans[k] = append(spans[k], span{s.id, first[b], last[b]})
		}
		if strings.Count(s.out, "running on") != 1 {
			t.Errorf("job %d was taken other than once:\n%s", i, s.out)
		}
	}
	for k, ss := range spans {
		for i := range ss {
			for j := range ss {
				if i < j && ss[i].start.Before(ss[j].end) && ss[j].start.Before(ss[i].end) {
					t.Errorf("board %s ran %s and %s at once", k, ss[i].run, ss[j].run)
				}
			}
		}
	}
}

// TestLabAgentKilled: an agent killed in the middle of a campaign leaves
// the job to the next agent of its pool, which resumes it: no finished
// cycle is lost or run again.
func TestLabAgentKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("a campaign across two agents")
	}
	for _, m := range labModes {
		t.Run(m.name, func(t *testing.T) {
			testLabAgentKilled(t, m.start(t, "--ack-wait", "3s", "--lease-ttl", "1s"), syscall.SIGKILL)
		})
	}
}

// TestLabAgentStopped: an agent stopped with SIGTERM mid-campaign leaves
// its boards safe, gives the job back at once and exits 130; the next
// agent resumes the run (the ack wait is long: it does not come into it).
func TestLabAgentStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("a campaign across two agents")
	}
	testLabAgentKilled(t, startLab(t, t.TempDir(), "", ""), syscall.SIGTERM)
}

func testLabAgentKilled(t *testing.T, l *testLab, sig syscall.Signal) {
	a1 := l.agent(t, "pi1")
	out, errOut, code := l.submit(t, "testdata/lab/long.yaml")
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, errOut)
	}
	id := strings.TrimSpace(out)
	cl := l.client(t, readTokenFile)
	var before []results.Cycle
	waitFor(t, 60*time.Second, "six cycles on pi1", func() bool {
		cs, err := cl.Cycles(context.Background(), id)
		before = cs
		return err == nil && len(cs) >= 6
	})
	stopped := time.Now()
	a1.stop(t, sig)
	if sig == syscall.SIGTERM {
		if code := a1.cmd.ProcessState.ExitCode(); code != ExitInterrupted || time.Since(stopped) > 10*time.Second {
			t.Errorf("agent stopped with SIGTERM: exit %d after %v", code, time.Since(stopped).Round(time.Millisecond))
		}
	}
	if st, _ := cl.Run(context.Background(), id); st.Ended() {
		t.Fatalf("run ended before the agent was stopped: %+v", st)
	}
	l.agent(t, "pi2")
	var st lab.RunState
	waitFor(t, 120*time.Second, "the run's end on pi2", func() bool {
		var err error
		st, err = cl.Run(context.Background(), id)
		return err == nil && st.Ended()
	})
	if st.Status != "pass" || st.Agent != "pi2" || st.Attempt < 2 || st.Done != 32 {
		t.Fatalf("run after the kill: %+v", st)
	}
	after, err := cl.Cycles(context.Background(), id)
	if err != nil || len(after) != 32 {
		t.Fatalf("%d cycles after the resume (%v), want 32", len(after), err)
	}
	// The cycles pi1 finished are the ones it recorded: not run again.
	byKey := map[string]results.Cycle{}
	for _, c := range after {
		byKey[fmt.Sprintf("%s/%d", c.Board, c.Cycle)] = c
	}
	for _, c := range before {
		a := byKey[fmt.Sprintf("%s/%d", c.Board, c.Cycle)]
		if a.Start != c.Start || a.End != c.End || a.Outcome != c.Outcome {
			t.Errorf("cycle %s/%d changed after the resume: %v–%v %s, was %v–%v %s", c.Board, c.Cycle, a.Start, a.End, a.Outcome, c.Start, c.End, c.Outcome)
		}
	}
}

// TestLabCoordinatorRestart: the coordinator stopped and started again in
// the middle of a campaign; the agent waits for it, and nothing is lost.
func TestLabCoordinatorRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a campaign across a coordinator restart")
	}
	for _, m := range labModes {
		t.Run(m.name, func(t *testing.T) { testLabCoordinatorRestart(t, m.start(t)) })
	}
}

func testLabCoordinatorRestart(t *testing.T, l *testLab) {
	l.agent(t, "pi1")
	out, errOut, code := l.submit(t, "testdata/lab/long.yaml")
	if code != 0 {
		t.Fatalf("submit: exit %d\n%s", code, errOut)
	}
	id := strings.TrimSpace(out)
	cl := l.client(t, readTokenFile)
	waitFor(t, 60*time.Second, "four cycles", func() bool {
		cs, err := cl.Cycles(context.Background(), id)
		return err == nil && len(cs) >= 4
	})
	l.stop(t, syscall.SIGTERM)
	time.Sleep(time.Second) // the agent goes on without it
	l2 := l.restart(t)
	cl = l2.client(t, readTokenFile)
	var st lab.RunState
	waitFor(t, 120*time.Second, "the run's end", func() bool {
		var err error
		st, err = cl.Run(context.Background(), id)
		return err == nil && st.Ended()
	})
	if st.Status != "pass" || st.Done != 32 {
		t.Fatalf("run after the restart: %+v", st)
	}
	db := l2.db(t)
	evs, err := db.ReadEvents(id)
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[string]int{}
	for _, e := range evs {
		if e.Kind == results.CycleOutcome {
			outcomes[fmt.Sprintf("%s/%d", e.Board, e.Cycle)]++
		}
	}
	if len(outcomes) != 32 {
		t.Errorf("%d cycles have an outcome event, want 32", len(outcomes))
	}
	for k, n := range outcomes {
		if n != 1 {
			t.Errorf("cycle %s has %d outcome events", k, n)
		}
	}
}

// TestLabDashboardInBrowser opens the dashboard in headless Chromium:
// the agent's boards show, a run submitted while the page is open
// appears and reaches its verdict without a reload, its report link
// opens the report, and the page asks for nothing outside the
// coordinator and logs no error. Without a token it asks for one.
func TestLabDashboardInBrowser(t *testing.T) {
	browser := chromiumPath(t)
	l := startLab(t, t.TempDir(), "", "")
	l.agent(t, "pi1")
	read := l.client(t, readTokenFile).Token

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.Flag("headless", "new"), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1200, 900))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	var (
		mu       sync.Mutex
		requests []string
		problems []string
	)
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, "console.error")
			}
		}
	}); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	tctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelT()
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(tctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return s
	}
	until := func(what, js string) {
		t.Helper()
		waitFor(t, time.Minute, what, func() bool { return eval(js) == "yes" })
	}

	// Without a token: the page asks for one and opens no stream.
	if err := chromedp.Do(tctx, chromedp.Navigate(l.url+"/"), chromedp.WaitReady("body")); err != nil {
		t.Fatal(err)
	}
	if eval(`document.getElementById("login").hidden ? "hidden" : "shown"`) != "shown" {
		t.Error("the dashboard without a token does not ask for one")
	}

	// (From another page: a change of fragment alone loads nothing.)
	if err := chromedp.Do(tctx, chromedp.Navigate("about:blank"), chromedp.Navigate(l.url+"/#token="+read), chromedp.WaitReady("body")); err != nil {
		t.Fatal(err)
	}
	until("pi1's boards on the page", `document.querySelector('#boards tr[data-board="pi1/sim-safe"]') ? "yes" : "no"`)
	if loc := eval(`location.href`); strings.Contains(loc, read) {
		t.Errorf("the token stays in the address bar: %s", loc)
	}
	done := make(chan int, 1)
	go func() {
		_, _, code := l.submit(t, "testdata/lab/small.yaml", "--wait")
		done <- code
	}()
	until("a running run on the page", `[...document.querySelectorAll('#runs tr[data-run]')].some(r => r.textContent.includes("running")) ? "yes" : "no"`)
	until("the run's verdict on the page", `[...document.querySelectorAll('#runs tr[data-run]')].some(r => r.textContent.includes("pass") && r.textContent.includes("8/8")) ? "yes" : "no"`)
	if code := <-done; code != 0 {
		t.Errorf("submit --wait: exit %d", code)
	}
	href := eval(`document.querySelector('#runs tr[data-run] a').href`)
	if !strings.Contains(href, "/report.html?access_token=") {
		t.Fatalf("report link %q", href)
	}
	if err := chromedp.Do(tctx, chromedp.Navigate(href), chromedp.WaitReady("body")); err != nil {
		t.Fatal(err)
	}
	if title := eval(`document.title`); !strings.Contains(title, "lab-small") {
		t.Errorf("the report link opened %q", title)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, u := range requests {
		if !strings.HasPrefix(u, l.url+"/") && u != "about:blank" {
			t.Errorf("the dashboard requested %s", u)
		}
	}
	if len(problems) > 0 {
		t.Errorf("the page logged: %v", problems)
	}
}

// TestLabSecretsNotRecorded runs the OSCORE example through a lab with
// debug logging and looks for the boards' keys, the API tokens and the
// agent's nkey seed in everything the lab wrote: the coordinator's data
// directory (results database, JetStream's files) but the token and key
// files themselves, and every process's output.
func TestLabSecretsNotRecorded(t *testing.T) {
	if testing.Short() {
		t.Skip("a secured campaign through a lab")
	}
	l := startLab(t, t.TempDir(), "", "", "-v")
	agent := l.agent(t, "pi1", "-v")
	stdout, stderr, code := l.submit(t, "../../examples/oscore.yaml", "--wait", "-v")
	if code != ExitDeviceFail || !strings.Contains(stderr, "fail on pi1") {
		t.Fatalf("oscore example through the lab: exit %d, want 1 (the buggy board fails)\n%s%s", code, stdout, stderr)
	}
	seed, err := os.ReadFile(filepath.Join(l.keys, "agent-pi1.nk"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"the development PSK":      sim.DevPSK,
		"the OSCORE master secret": sim.DevOSCORE().MasterSecret,
		"the read token":           []byte(l.client(t, readTokenFile).Token),
		"the submit token":         []byte(l.client(t, submitTokenFile).Token),
		"the agent's nkey seed":    bytes.TrimSpace(seed),
	}
	scan := func(what string, data []byte) {
		t.Helper()
		for name, k := range secrets {
			for form, needle := range secretFormsOf(k) {
				if bytes.Contains(data, needle) {
					t.Errorf("%s holds %s (%s)", what, name, form)
				}
			}
		}
	}
	l.stop(t, syscall.SIGTERM) // the database and the streams written out
	agent.stop(t, syscall.SIGTERM)
	files := 0
	filepath.WalkDir(l.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch d.Name() {
		case readTokenFile, submitTokenFile, agentKeysFile:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Error(err)
			return nil
		}
		files++
		scan(path, b)
		return nil
	})
	if files < 5 {
		t.Errorf("scanned %d files of the lab's data directory", files)
	}
	scan("the coordinator's output", []byte(l.output()))
	scan("the agent's output", []byte(agent.output()))
	scan("submit's output", []byte(stdout+stderr))
}

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (cert, key string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fudbench lab test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, key
}

// TestLabTLS: with --tls-cert the API is HTTPS and the embedded NATS
// server wants TLS; an agent and submit that trust the certificate (--ca)
// run a job, a client that does not is refused, and so is plain HTTP.
func TestLabTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("a lab over TLS")
	}
	cert, key := selfSigned(t, t.TempDir())
	l := startLab(t, t.TempDir(), "", "", "--tls-cert", cert, "--tls-key", key)
	l.ca = cert
	if !strings.HasPrefix(l.url, "https://") || !strings.HasPrefix(l.nats, "tls://") {
		t.Fatalf("serve with a certificate: API %s, NATS %s", l.url, l.nats)
	}
	l.agent(t, "pi1", "--ca", cert)
	out, errOut, code := l.submit(t, "testdata/lab/small.yaml", "--wait", "--ca", cert)
	if code != 0 {
		t.Fatalf("submit --wait over TLS: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = cli(t, "runs", "--server", l.url, "--token-file", l.token(readTokenFile))
	if code != ExitInfra || !strings.Contains(errOut, "certificate") {
		t.Errorf("runs without the CA: exit %d, %s", code, errOut)
	}
	resp, err := http.Get("http" + strings.TrimPrefix(l.url, "https") + "/api/v1/runs")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the API: %s", resp.Status)
		}
	}
	if nc, err := nats.Connect("nats://" + strings.TrimPrefix(l.nats, "tls://")); err == nil {
		nc.Close()
		t.Error("a plain NATS client connected")
	}
}
