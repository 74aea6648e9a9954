package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// securedRecoveryJob is the campaign BenchmarkSecuredRecovery runs on every board:
// the built-in demo's images (16 KiB in 1024-byte blocks), a cut after
// every block and four cuts 300 µs into a block, the baseline flashed over
// the probe before every cycle.
const securedRecoveryJob = `
boards: [%s]
baseline: {build: {version: 1.0.0, seq: 1, size: 16KiB, seed: 1}}
image: {build: {version: 2.0.0, seq: 2, size: 16KiB, seed: 2}}
block_size: %d
cuts:
  - after_block: {from: 0, to: last, step: 1}
  - during_block: {block: {from: 2, to: 14, step: 4}, delay: 300us}
off_time: 20ms
recovery_timeout: 1s
repeat: %d
seed: 1
parallel: true
reflash: true
`

const (
	secureBlock  = 1024
	secureRepeat = 2
)

// secureProfile is one board of the campaign: how it keeps its security
// context across a cut.
type secureProfile struct {
	name string // in the metrics' units
	cfg  func(c *sim.Config)
}

var secureProfiles = []secureProfile{
	{"udp", func(c *sim.Config) { c.DTLSAddr = "-" }},
	{"dtls-none", func(c *sim.Config) { c.DTLSCache = sim.DTLSCacheNone }},
	{"dtls-session", func(c *sim.Config) { c.DTLSCache = sim.DTLSCacheSession }},
	{"dtls-state", func(c *sim.Config) { c.DTLSCache = sim.DTLSCacheState }},
	{"oscore", func(c *sim.Config) {
		p := sim.DevOSCORE()
		c.OSCORE, c.DTLSAddr = &p, "-"
	}},
}

// secureFigures is what the campaign measured for one profile.
type secureFigures struct {
	recoveries int
	// firstBlock is power-on → first block accepted after the cut; answer
	// power-on → first answer on CoAP; bytes the UDP payload bytes both
	// ways in the first span, as the relay saw them, benchBytes as the
	// bench recorded them (secured links only).
	firstBlock, answer []time.Duration
	bytes, benchBytes  []int
	// client is power-on → the first datagram of the client that got the
	// block through (the bench's first request, sent as power comes
	// back, is lost while the board boots; the next goes out when that
	// attempt's bound has passed); exchanges that datagram → the block's
	// request: the device answering and, on a secured link, the session
	// set up; firstAnswer that datagram → the board's first answer to
	// it. roundTrips counts the datagrams from the board before the
	// block's request, each the end of one round trip.
	client, exchanges, firstAnswer []time.Duration
	roundTrips                     []int
	handshakeBytes                 []int
	// handshakes by kind and Echo challenges, summed over the recoveries.
	handshakes map[string]int
	echo       int
	// overhead is, per block exchange of the whole campaign, the UDP
	// payload bytes of the block's request and its answer less the
	// block's payload; reqOverhead the request's part.
	overhead, reqOverhead []int
	replay                map[string]int
}

// BenchmarkSecuredRecovery runs one campaign on five in-process sim
// boards side by side (parallel: noise on the machine hits all alike),
// inplace-recovery, same images, same cuts, time scale 0.25 (the
// built-in boards' default), off_time 20 ms. The boards differ only in
// how the bench reaches them and what the device keeps of its security
// context across a cut:
//
//   - udp: plain CoAP;
//   - dtls-none: DTLS 1.2 PSK, nothing cached: a full handshake after
//     each boot;
//   - dtls-session: the session (ID, master secret) cached: an
//     abbreviated handshake;
//   - dtls-state: the record layer (keys, epoch, sequence numbers)
//     restored, RFC 9146 connection IDs: no handshake;
//   - oscore: the context derived at boot, the sender sequence number
//     stored a window ahead; an Echo challenge after each boot.
//
// Each board is reached through a UDP relay in this process that counts
// every datagram both ways (the same instrument for every profile,
// plain UDP included, whose bytes the bench does not count). Per
// profile it reports, over the recoveries that accepted a block after
// the cut (an after_block cut at the last block has none), medians of:
// power-on → first block accepted (first-block-ms); the first datagram
// of the client that got through → the block's request (exchanges-ms:
// the device answering and, when secured, the session set up); the
// datagrams from the board before that request (round-trips); the UDP
// payload bytes both ways from power-on to the block's acknowledgement
// (bytes); the handshake's bytes as the bench recorded them; and per
// recovery the handshakes by kind and the Echo challenges. Last, the
// median per-block overhead on the wire: UDP payload bytes of a block's
// request and its answer less the block's 1024 bytes, over every block
// exchange of the campaign. The log adds percentiles, power-on → first
// answer, the device's own time for its first answer, and the bench's
// record of the bytes beside the relay's.
//
// It fails unless every cycle is updated with its cut where planned (the
// boards' own records), no security finding, no replay accepted, and
// dtls-none recovers with one full handshake, dtls-session with one
// abbreviated, dtls-state and oscore with none.
//
// Run it with -benchtime 1x: one iteration is one campaign.
func BenchmarkSecuredRecovery(b *testing.B) {
	var figs map[string]*secureFigures
	for b.Loop() {
		figs = securedCampaign(b)
	}
	for _, p := range secureProfiles {
		f := figs[p.name]
		n := float64(f.recoveries)
		b.ReportMetric(ms(median(f.firstBlock)), p.name+"-first-block-ms")
		b.ReportMetric(ms(median(f.exchanges)), p.name+"-exchanges-ms")
		b.ReportMetric(float64(median(f.roundTrips)), p.name+"-round-trips")
		b.ReportMetric(float64(median(f.bytes)), p.name+"-bytes")
		if len(f.handshakeBytes) > 0 {
			b.ReportMetric(float64(median(f.handshakeBytes)), p.name+"-handshake-bytes")
		}
		b.ReportMetric(float64(f.handshakes[coap.HandshakeFull])/n, p.name+"-full/rec")
		b.ReportMetric(float64(f.handshakes[coap.HandshakeAbbreviated])/n, p.name+"-abbr/rec")
		b.ReportMetric(float64(f.echo)/n, p.name+"-echo/rec")
		b.ReportMetric(float64(median(f.overhead)), p.name+"-overhead-B/block")
		b.ReportMetric(n, p.name+"-recoveries")
		b.Logf("%-12s %3d recoveries; ms p10/p50/p90: first block %s, answer %s, new client %s, exchanges %s, device's first answer %s; bytes p10/p50/p90 %d/%d/%d (bench's record p50 %d); round trips p50 %d; overhead per block p50 %d (request %d) of %d block exchanges; handshakes %v, p50 %d bytes; echo %d; replay %v",
			p.name, f.recoveries, q3(f.firstBlock), q3(f.answer), q3(f.client), q3(f.exchanges), q3(f.firstAnswer),
			quantile(f.bytes, 0.1), median(f.bytes), quantile(f.bytes, 0.9), median(f.benchBytes), median(f.roundTrips),
			median(f.overhead), median(f.reqOverhead), len(f.overhead), f.handshakes, median(f.handshakeBytes), f.echo, f.replay)
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// q3 is the 10th, 50th and 90th percentiles of v in milliseconds.
func q3(v []time.Duration) string {
	return fmt.Sprintf("%.2f/%.2f/%.2f", ms(quantile(v, 0.1)), ms(median(v)), ms(quantile(v, 0.9)))
}

func median[T int | time.Duration](v []T) T { return quantile(v, 0.5) }

// quantile is the nearest-rank quantile of v (0 when empty).
func quantile[T int | time.Duration](v []T, q float64) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

// securedCampaign starts the five boards, runs securedRecoveryJob on them in one
// campaign, checks it and returns each profile's figures.
func securedCampaign(b *testing.B) map[string]*secureFigures {
	b.StopTimer()
	defer b.StartTimer() // b.Loop wants it running
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average before the campaign: %s", strings.TrimSpace(string(load)))
	}
	simbench.DevSecrets()
	var simLog lockedBuffer
	log := slog.New(slog.NewTextHandler(&simLog, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var cfgs []sim.Config
	for _, p := range secureProfiles {
		c := sim.Config{Name: fmt.Sprintf("s%d-%s", simSeq.Add(1), p.name), Strategy: sim.InplaceRecovery, Pins: true,
			UDPAddrs: []string{"127.0.0.1:0"}, StateDir: b.TempDir(), TimeScale: 0.25, Logger: log}
		p.cfg(&c)
		cfgs = append(cfgs, c)
	}
	s, err := sim.Start(cfgs, true, log)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	for _, bd := range s.Boards {
		bd.SetPower(false)
	}
	text, err := simbench.Inventory(s.Boards, nil)
	if err != nil {
		b.Fatal(err)
	}
	inv := string(text)
	relays := map[string]*wireRelay{}
	profileOf := map[string]string{}
	var names []string
	for i, bd := range s.Boards {
		p := secureProfiles[i].name
		info, cfg := bd.Info(), bd.Config()
		target := info.CoAP[0]
		switch {
		case cfg.OSCORE != nil:
			target = info.OSCORE
		case cfg.DTLSAddr != "-":
			target = info.CoAPS
		}
		r, err := startWireRelay(target)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		// The bench's entry as simbench wires the board, through the
		// relay. simbench gives a DTLS board that caches nothing plain
		// UDP; this one is reached over DTLS with cache none.
		entry := simbench.CoAPEntry(cfg, r.Addr(), r.Addr(), r.Addr())
		if cfg.DTLSAddr != "-" && cfg.DTLSCache == sim.DTLSCacheNone {
			entry = fmt.Sprintf(`{address: "%s", profile: %s, dtls: {identity: "%s", key_env: %s, cache: %s}}`,
				r.Addr(), boards.ProfileResumable, cfg.PSKIdentity, simbench.EnvDevPSK, sim.DTLSCacheNone)
		}
		inv = replaceEntry(b, inv, bd.Name(), "coap:", entry)
		relays[bd.Name()], profileOf[bd.Name()] = r, p
		names = append(names, bd.Name())
	}
	wired, err := boards.Parse("(secured recovery bench)", []byte(inv))
	if err != nil {
		b.Fatalf("%v\n%s", err, inv)
	}
	job := parseJob(b, fmt.Sprintf(securedRecoveryJob, strings.Join(names, ", "), secureBlock, secureRepeat))
	prep := mustPrepare(b, job, wired, nil, nil)
	if len(prep.Update)%secureBlock != 0 {
		b.Fatalf("update of %d bytes: want whole %d-byte blocks", len(prep.Update), secureBlock)
	}
	plan, err := job.Cycles(job.Blocks(len(prep.Update)))
	if err != nil {
		b.Fatal(err)
	}
	witnesses := map[string]power.CutWitness{}
	for _, bd := range s.Boards {
		witnesses[bd.Name()] = simbench.Witness(bd)
	}
	events := &eventLog{}
	dir := b.TempDir()
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.StartTimer()
	rep, err := jobs.Execute(context.Background(), jobs.RunOptions{
		Prepared: prep,
		Run:      results.RunInfo{ID: fmt.Sprintf("sec%d", simSeq.Add(1)), Job: job.Name, JobHash: "h", Started: time.Now()},
		OutDir:   dir, DB: db, Locker: &jobs.FileLocker{Dir: filepath.Join(dir, "locks")},
		Tx:        coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3}, // as fudbench run
		Witnesses: witnesses,
		Watch:     func(map[string]int) jobs.Watcher { return events },
	})
	b.StopTimer()
	if err != nil {
		b.Fatalf("run: %v", err)
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average after the campaign: %s", strings.TrimSpace(string(load)))
	}

	// Every cycle updated, its cut where planned, nothing found.
	if want := len(s.Boards) * len(plan); len(rep.Cycles) != want {
		b.Errorf("%d cycles recorded, want %d", len(rep.Cycles), want)
	}
	bad := 0
	for _, c := range rep.Cycles {
		var why []string
		if c.Outcome != results.Updated {
			why = append(why, fmt.Sprintf("%s %q", c.Outcome, c.Reason))
		}
		if c.Cut == nil || c.Missed != "" || c.Attempts > 1 {
			why = append(why, fmt.Sprintf("cut %+v missed %q attempts %d", c.Cut, c.Missed, c.Attempts))
		}
		if len(c.Findings) > 0 {
			why = append(why, fmt.Sprintf("findings %+v", c.Findings))
		}
		if c.Secure != nil && c.Secure.Replay == coap.ReplayAccepted {
			why = append(why, "replay accepted")
		}
		if len(why) > 0 {
			bad++
			b.Errorf("%s cycle %d (%s): %s", c.Board, c.Cycle, c.Plan, strings.Join(why, "; "))
		}
	}
	if bad > 0 {
		if t := simLog.String(); t != "" {
			b.Logf("sim boards' warnings and errors:\n%s", t)
		}
		b.FailNow()
	}

	figs := map[string]*secureFigures{}
	for _, p := range secureProfiles {
		figs[p.name] = &secureFigures{handshakes: map[string]int{}, replay: map[string]int{}}
	}
	evs := events.byCycle()
	for _, c := range rep.Cycles {
		p := profileOf[c.Board]
		f := figs[p]
		on, acked, ok := firstBlockAfterCut(evs[cycleKey{c.Board, c.Cycle}])
		if !ok {
			if c.Secure != nil && c.Secure.FirstBlock > 0 {
				b.Errorf("%s cycle %d (%s): the bench recorded a first block after the cut %v after power-on, the events show none", c.Board, c.Cycle, c.Plan, c.Secure.FirstBlock)
			}
			continue // no block left to send after the cut
		}
		f.recoveries++
		f.firstBlock = append(f.firstBlock, acked.Sub(on))
		f.answer = append(f.answer, c.RecoveryAnswer)
		sp := relays[c.Board].span(on, acked, secureBlock)
		f.bytes = append(f.bytes, sp.bytes)
		f.roundTrips = append(f.roundTrips, sp.roundTrips)
		f.client = append(f.client, sp.client)
		f.exchanges = append(f.exchanges, sp.exchanges)
		f.firstAnswer = append(f.firstAnswer, sp.firstAnswer)
		var kinds []string
		if p != "udp" {
			sr := c.Secure
			if sr == nil || sr.FirstBlock == 0 {
				b.Fatalf("%s cycle %d (%s): a block was accepted after the cut, but the bench recorded no secured recovery: %+v", c.Board, c.Cycle, c.Plan, sr)
			}
			f.benchBytes = append(f.benchBytes, sr.Bytes)
			for _, h := range sr.Handshakes {
				f.handshakes[h.Kind]++
				kinds = append(kinds, h.Kind)
				if h.Kind != coap.HandshakeNone {
					f.handshakeBytes = append(f.handshakeBytes, h.Bytes)
				}
			}
			f.echo += sr.Echo
			f.replay[sr.Replay]++
		}
		// What each profile must cost: one full handshake, one
		// abbreviated, none at all.
		full, abbr := slices.Contains(kinds, coap.HandshakeFull), slices.Contains(kinds, coap.HandshakeAbbreviated)
		var wrong bool
		switch p {
		case "dtls-none":
			wrong = !full || abbr
		case "dtls-session":
			wrong = full || !abbr
		case "dtls-state", "oscore", "udp":
			wrong = full || abbr
		}
		if wrong {
			b.Fatalf("%s cycle %d (%s): recovery after the cut with handshakes %v", c.Board, c.Cycle, c.Plan, kinds)
		}
	}
	for name, r := range relays {
		f := figs[profileOf[name]]
		f.overhead, f.reqOverhead = r.blockOverhead(secureBlock)
	}
	for _, p := range secureProfiles {
		if figs[p.name].recoveries == 0 {
			b.Fatalf("%s: no recovery accepted a block after its cut", p.name)
		}
	}
	return figs
}

// replaceEntry replaces board's line starting with key in a bench file
// made by simbench.Inventory.
func replaceEntry(b testing.TB, text, board, key, value string) string {
	b.Helper()
	lines := strings.Split(text, "\n")
	in := false
	for i, l := range lines {
		if name, ok := strings.CutPrefix(l, "  - name: "); ok {
			in = name == board
			continue
		}
		if in && strings.HasPrefix(strings.TrimSpace(l), key) {
			lines[i] = l[:len(l)-len(strings.TrimLeft(l, " "))] + key + " " + value
			return strings.Join(lines, "\n")
		}
	}
	b.Fatalf("no %s line for board %s in\n%s", key, board, text)
	return ""
}

type cycleKey struct {
	board string
	cycle int
}

// eventLog keeps a run's events (a jobs.Watcher), with their full wall
// times.
type eventLog struct {
	mu  sync.Mutex
	evs []results.Event
}

func (l *eventLog) Emit(e results.Event) {
	l.mu.Lock()
	l.evs = append(l.evs, e)
	l.mu.Unlock()
}

func (l *eventLog) Close() {}

func (l *eventLog) byCycle() map[cycleKey][]results.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[cycleKey][]results.Event{}
	for _, e := range l.evs {
		k := cycleKey{e.Board, e.Cycle}
		out[k] = append(out[k], e)
	}
	return out
}

// firstBlockAfterCut finds, in one cycle's events, the power-on after
// the cycle's cut and the first block acknowledged after it.
func firstBlockAfterCut(evs []results.Event) (on, acked time.Time, ok bool) {
	i := slices.IndexFunc(evs, func(e results.Event) bool { return e.Kind == results.CutTrigger })
	if i < 0 {
		return on, acked, false
	}
	evs = evs[i:]
	j := slices.IndexFunc(evs, func(e results.Event) bool { return e.Kind == results.PowerOn })
	if j < 0 {
		return on, acked, false
	}
	on, evs = evs[j].Wall, evs[j:]
	k := slices.IndexFunc(evs, func(e results.Event) bool { return e.Kind == results.BlockAcked })
	if k < 0 {
		return on, acked, false
	}
	return on, evs[k].Wall, true
}

// wireRelay forwards UDP datagrams between the bench's clients and one
// board's endpoint, each client (source address) on its own upstream
// socket, and logs every datagram's UDP payload size: a byte count of
// the link that is the same whatever runs over it.
type wireRelay struct {
	ln     *net.UDPConn
	target *net.UDPAddr

	mu     sync.Mutex
	flows  map[string]relayFlow // by the client's address
	log    []datagram
	closed bool
	wg     sync.WaitGroup
}

// relayFlow is one client's upstream socket to the board.
type relayFlow struct {
	id int
	up *net.UDPConn
}

type datagram struct {
	at   time.Time
	flow int  // which client
	up   bool // bench → board
	n    int
}

func startWireRelay(target string) (*wireRelay, error) {
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		return nil, err
	}
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	r := &wireRelay{ln: ln, target: ta, flows: map[string]relayFlow{}}
	r.wg.Add(1)
	go r.serve()
	return r, nil
}

func (r *wireRelay) Addr() string { return r.ln.LocalAddr().String() }

func (r *wireRelay) note(flow int, up bool, n int) {
	at := time.Now()
	r.mu.Lock()
	r.log = append(r.log, datagram{at: at, flow: flow, up: up, n: n})
	r.mu.Unlock()
}

func (r *wireRelay) serve() {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		r.mu.Lock()
		f, known := r.flows[from.String()]
		if !known && r.closed {
			r.mu.Unlock()
			return
		}
		if !known {
			f.id = len(r.flows)
			if f.up, err = net.DialUDP("udp", nil, r.target); err == nil {
				r.flows[from.String()] = f
			}
		}
		r.mu.Unlock()
		if err != nil {
			continue
		}
		if !known {
			r.wg.Add(1)
			go r.back(f, from)
		}
		r.note(f.id, true, n)
		_, _ = f.up.Write(buf[:n]) // a refused write is a lost datagram
	}
}

// back forwards the board's answers to one client.
func (r *wireRelay) back(f relayFlow, client *net.UDPAddr) {
	defer r.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, err := f.up.Read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP refused while the board is off
		}
		r.note(f.id, false, n)
		_, _ = r.ln.WriteToUDP(buf[:n], client)
	}
}

func (r *wireRelay) Close() {
	r.ln.Close()
	r.mu.Lock()
	r.closed = true
	for _, f := range r.flows {
		f.up.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// relaySpan is what the relay saw of one recovery, from power-on to the
// first block acknowledged after the cut.
type relaySpan struct {
	bytes      int           // UDP payload bytes both ways
	roundTrips int           // datagrams from the board before the block's request
	client     time.Duration // power-on → first datagram of the client that sent the block
	exchanges  time.Duration // that datagram → the block's request
	// firstAnswer is that datagram → the board's first answer to that
	// client: the device's own time for its first answer after the boot
	// (a handshake's first flight, an Echo challenge, a plain answer).
	firstAnswer time.Duration
}

// span sums up the datagrams from on to acked; the block's request is the
// first datagram to the board larger than block.
func (r *wireRelay) span(on, acked time.Time, block int) relaySpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sp relaySpan
	var in []datagram
	for _, d := range r.log {
		if !d.at.Before(on) && !d.at.After(acked) {
			in = append(in, d)
			sp.bytes += d.n
		}
	}
	req := slices.IndexFunc(in, func(d datagram) bool { return d.up && d.n > block })
	if req < 0 {
		return sp
	}
	for _, d := range in[:req] {
		if !d.up {
			sp.roundTrips++
		}
	}
	first := slices.IndexFunc(in, func(d datagram) bool { return d.flow == in[req].flow })
	sp.client = in[first].at.Sub(on)
	sp.exchanges = in[req].at.Sub(in[first].at)
	if a := slices.IndexFunc(in[first:], func(d datagram) bool { return !d.up && d.flow == in[req].flow }); a >= 0 {
		sp.firstAnswer = in[first+a].at.Sub(in[first].at)
	}
	return sp
}

// blockOverhead returns, for every block exchange the relay saw (a
// request to the board larger than a block, and the next datagram back
// on its flow), the bytes of both less the block's payload, and the
// request's part of it.
func (r *wireRelay) blockOverhead(block int) (total, req []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, d := range r.log {
		if !d.up || d.n <= block {
			continue
		}
		for _, a := range r.log[i+1:] {
			if a.flow != d.flow {
				continue
			}
			if a.up {
				break // sent again, or the next request: no answer to this one
			}
			total = append(total, d.n+a.n-block)
			req = append(req, d.n-block)
			break
		}
	}
	return total, req
}
