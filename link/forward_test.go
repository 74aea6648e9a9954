package link

import (
	"encoding/binary"
	"math"
	"net"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// echo is a device that sends every datagram back and remembers the
// sequence number in its first 4 bytes.
type echo struct {
	conn *net.UDPConn
	mu   sync.Mutex
	seen []uint32
	wg   sync.WaitGroup
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	e := &echo{conn: c}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				e.mu.Lock()
				e.seen = append(e.seen, binary.BigEndian.Uint32(buf))
				e.mu.Unlock()
			}
			c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { c.Close(); e.wg.Wait() })
	return e
}

// wait waits until the device has read n datagrams: the forwarder may
// have written them all while the device has not read them yet.
func (e *echo) wait(t *testing.T, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		e.mu.Lock()
		got := uint64(len(e.seen))
		e.mu.Unlock()
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the device read %d of the %d datagrams the forwarder wrote", got, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *echo) Seen() []uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.seen)
}

func forward(t *testing.T, e *echo, cfg Config, opt Options) (*Forwarder, *net.UDPConn) {
	t.Helper()
	f, err := Listen(e.conn.LocalAddr().String(), cfg, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	c, err := net.Dial("udp", f.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.UDPConn).SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return f, c.(*net.UDPConn)
}

// send writes n datagrams of size bytes numbered from 0 to f, waiting
// every 20 for the forwarder to have taken them, so that no socket
// buffer on the way overflows on a loaded host (a datagram the kernel
// drops before the forwarder would shift the sequence of decisions).
func send(t *testing.T, f *Forwarder, c *net.UDPConn, n, size int) {
	t.Helper()
	buf := make([]byte, max(size, 4))
	base := f.Stats()[ToDevice].Datagrams
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		if _, err := c.Write(buf); err != nil {
			t.Fatal(err)
		}
		if i%20 == 19 || i == n-1 {
			deadline := time.Now().Add(5 * time.Second)
			for f.Stats()[ToDevice].Datagrams-base < uint64(i+1) {
				if time.Now().After(deadline) {
					t.Fatalf("the forwarder took %d of %d datagrams", f.Stats()[ToDevice].Datagrams-base, i+1)
				}
				time.Sleep(100 * time.Microsecond)
			}
		}
	}
}

// settle waits until the forwarder has written on every datagram it
// took, both ways.
func settle(t *testing.T, f *Forwarder, want uint64) Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := f.Stats()
		idle := true
		for _, d := range s {
			idle = idle && d.Delivered+d.Dropped() == d.Datagrams+d.Duplicated
		}
		if s[ToDevice].Datagrams >= want && idle {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("forwarder did not settle: %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// binomialBound is the half-width of the two-sided 99.9% interval of the
// count of successes in n draws of probability p (normal approximation,
// z = 3.29).
func binomialBound(n int, p float64) float64 {
	return 3.29 * math.Sqrt(float64(n)*p*(1-p))
}

// TestLoss: over 2000 datagrams at 20% loss, the datagrams lost towards
// the device are within the binomial 99.9% interval, and what the device
// saw is exactly what the forwarder says it delivered.
func TestLoss(t *testing.T) {
	const n = 2000
	e := startEcho(t)
	var mu sync.Mutex
	drops := 0
	f, c := forward(t, e, Config{Loss: 2000, Seed: 11}, Options{OnEvent: func(ev Event) {
		mu.Lock()
		if ev.Kind == Dropped && ev.Reason == ReasonLoss {
			drops++
		}
		mu.Unlock()
	}})
	send(t, f, c, n, 16)
	s := settle(t, f, n)
	for _, d := range []Direction{ToDevice, FromDevice} {
		got := s[d]
		sent := int(got.Datagrams)
		want := float64(sent) * 0.2
		t.Logf("%s: %d of %d lost (%.2f%%, set 20%%; bound ±%.0f)", d, got.Lost, sent, 100*float64(got.Lost)/float64(sent), binomialBound(sent, 0.2))
		if math.Abs(float64(got.Lost)-want) > binomialBound(sent, 0.2) {
			t.Errorf("%s: %d of %d lost, want %.0f ± %.0f", d, got.Lost, sent, want, binomialBound(sent, 0.2))
		}
	}
	e.wait(t, s[ToDevice].Delivered)
	if seen := len(e.Seen()); uint64(seen) != s[ToDevice].Delivered {
		t.Errorf("device saw %d datagrams, forwarder delivered %d", seen, s[ToDevice].Delivered)
	}
	mu.Lock()
	defer mu.Unlock()
	if uint64(drops) != s[ToDevice].Lost+s[FromDevice].Lost {
		t.Errorf("%d drop events, %d drops", drops, s[ToDevice].Lost+s[FromDevice].Lost)
	}
}

// TestDeterminism: the same seed drops the same datagrams; another seed
// does not.
func TestDeterminism(t *testing.T) {
	run := func(seed uint64) []uint32 {
		e := startEcho(t)
		f, c := forward(t, e, Config{Loss: 3000, Seed: seed}, Options{})
		send(t, f, c, 500, 8)
		e.wait(t, settle(t, f, 500)[ToDevice].Delivered)
		seen := e.Seen()
		slices.Sort(seen)
		return seen
	}
	a, b, other := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 twice: %d and %d datagrams through, patterns differ", len(a), len(b))
	}
	if slices.Equal(a, other) {
		t.Error("seeds 7 and 8 drop the same datagrams")
	}
	t.Logf("seed 7: %d of 500 through both times; seed 8: %d", len(a), len(other))
}

// TestDelay: with a delay of 40 ms ± 10 ms each way, every echo takes at
// least 60 ms and the mean round trip is about 80 ms; the forwarder's own
// mean per direction is about 40 ms. The bounds are generous: timers on a
// loaded host fire late, never early.
func TestDelay(t *testing.T) {
	const n = 100
	e := startEcho(t)
	f, c := forward(t, e, Config{Delay: 40 * time.Millisecond, Jitter: 10 * time.Millisecond, Seed: 3}, Options{})
	sent := make([]time.Time, n)
	rtts := make([]time.Duration, 0, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		for len(rtts) < n {
			k, err := c.Read(buf)
			if err != nil || k < 4 {
				return
			}
			rtts = append(rtts, time.Since(sent[binary.BigEndian.Uint32(buf)]))
		}
	}()
	buf := make([]byte, 16)
	for i := range n {
		binary.BigEndian.PutUint32(buf, uint32(i))
		sent[i] = time.Now()
		c.Write(buf)
		time.Sleep(2 * time.Millisecond)
	}
	<-done
	if len(rtts) != n {
		t.Fatalf("%d of %d echoes", len(rtts), n)
	}
	var sum time.Duration
	for _, r := range rtts {
		sum += r
		if r < 60*time.Millisecond {
			t.Errorf("round trip %v, less than the 60 ms the link allows", r)
		}
	}
	mean := sum / n
	s := f.Stats()
	t.Logf("round trip: mean %v, min %v, max %v (set 80 ms ± 20 ms); per direction: to device %v, from device %v (set 40 ms ± 10 ms)",
		mean, slices.Min(rtts), slices.Max(rtts), s[ToDevice].MeanDelay(), s[FromDevice].MeanDelay())
	if mean < 75*time.Millisecond || mean > 110*time.Millisecond {
		t.Errorf("mean round trip %v, want about 80 ms", mean)
	}
	for _, d := range s {
		if m := d.MeanDelay(); m < 37*time.Millisecond || m > 55*time.Millisecond {
			t.Errorf("mean delay %v, want about 40 ms", m)
		}
	}
}

// TestRate: a burst of 25 datagrams of 250 bytes (50,000 bits) at
// 50 kbit/s takes about a second to come back.
func TestRate(t *testing.T) {
	const n, size = 25, 250
	e := startEcho(t)
	f, c := forward(t, e, Config{Rate: 50_000, Seed: 1}, Options{})
	start := time.Now()
	send(t, f, c, n, size)
	buf := make([]byte, 1024)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range n {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	el := time.Since(start)
	// The last echo also crosses the link back: one more datagram's time.
	want := time.Duration(float64(n*size*8+size*8) / 50_000 * float64(time.Second))
	t.Logf("%d×%d bytes at 50 kbit/s: %v, expected %v; mean delay to device %v", n, size, el, want, f.Stats()[ToDevice].MeanDelay())
	if el < want*95/100 || el > want*3/2 {
		t.Errorf("burst took %v, want about %v", el, want)
	}
}

// TestMTU: datagrams larger than the MTU are dropped and counted, the
// others pass.
func TestMTU(t *testing.T) {
	e := startEcho(t)
	var mu sync.Mutex
	var evs []Event
	f, c := forward(t, e, Config{MTU: 100, Seed: 1}, Options{OnEvent: func(ev Event) { mu.Lock(); evs = append(evs, ev); mu.Unlock() }})
	for _, size := range []int{50, 100, 101, 500} {
		c.Write(make([]byte, size))
	}
	s := settle(t, f, 4)
	if s[ToDevice].TooBig != 2 || s[ToDevice].Delivered != 2 || s[FromDevice].Delivered != 2 {
		t.Errorf("stats %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(evs) != 2 || evs[0].Reason != ReasonMTU || evs[0].Size != 101 || evs[1].Size != 500 {
		t.Errorf("events %+v", evs)
	}
}

// TestDuplicateReorder: duplicates and datagrams held back come in the
// proportions set, and the device sees them as such.
func TestDuplicateReorder(t *testing.T) {
	const n = 1000
	e := startEcho(t)
	f, c := forward(t, e, Config{Duplicate: 1000, Reorder: 1000, Seed: 5}, Options{})
	send(t, f, c, n, 8)
	s := settle(t, f, n)
	b := binomialBound(n, 0.1)
	t.Logf("to device: %d duplicated, %d reordered of %d (set 10%%, bound ±%.0f)", s[ToDevice].Duplicated, s[ToDevice].Reordered, n, b)
	if math.Abs(float64(s[ToDevice].Duplicated)-100) > b {
		t.Errorf("%d duplicated of %d", s[ToDevice].Duplicated, n)
	}
	// A datagram is not held back while another is: slightly fewer than
	// 10% are.
	if math.Abs(float64(s[ToDevice].Reordered)-100) > b+10 {
		t.Errorf("%d reordered of %d", s[ToDevice].Reordered, n)
	}
	e.wait(t, s[ToDevice].Delivered)
	seen := e.Seen()
	count := map[uint32]int{}
	late := 0
	var top uint32
	for i, x := range seen {
		count[x]++
		if i > 0 && x < top {
			late++
		}
		top = max(top, x)
	}
	dups := 0
	for _, k := range count {
		dups += k - 1
	}
	t.Logf("device: %d datagrams, %d distinct, %d again, %d behind a later one", len(seen), len(count), dups, late)
	if len(count) != n || uint64(dups) != s[ToDevice].Duplicated {
		t.Errorf("device saw %d distinct and %d duplicates, want %d and %d", len(count), dups, n, s[ToDevice].Duplicated)
	}
	if late == 0 {
		t.Error("no datagram arrived behind a later one")
	}
}

// TestBlockDropEvent: a dropped Block1 request names its block; a
// datagram that is not CoAP is dropped without one.
func TestBlockDropEvent(t *testing.T) {
	e := startEcho(t)
	ch := make(chan Event, 4)
	_, c := forward(t, e, Config{Loss: 10000, Seed: 1}, Options{OnEvent: func(ev Event) { ch <- ev }})
	c.Write(block1(t, 7))
	c.Write([]byte{0x16, 0xfe, 0xfd, 0, 1}) // a DTLS handshake record's start
	ev := <-ch
	if ev.Kind != Dropped || ev.Dir != ToDevice || !ev.CoAP.OK || ev.CoAP.Block1 != 7 || ev.CoAP.CodeString() != "0.03" || ev.CoAP.TypeString() != "CON" {
		t.Errorf("event %+v", ev)
	}
	if ev := <-ch; ev.CoAP.OK || ev.CoAP.Block1 != -1 {
		t.Errorf("DTLS record: %+v", ev)
	}
}

func block1(t testing.TB, num uint32) []byte {
	t.Helper()
	m := message.Message{Code: codes.PUT, Type: message.Confirmable, MessageID: 0x1234, Token: []byte{1, 2, 3, 4}, Payload: make([]byte, 64)}
	opts := message.Options{{ID: message.URIPath, Value: []byte("fw")}}
	v := make([]byte, 4)
	n, _ := message.EncodeUint32(v, num<<4|1<<3|2)
	opts = opts.Add(message.Option{ID: message.Block1, Value: v[:n]})
	opts = opts.Add(message.Option{ID: 292, Value: []byte{9}})
	m.Options = opts
	out := make([]byte, 512)
	k, err := coder.DefaultCoder.Encode(m, out)
	if err != nil {
		t.Fatal(err)
	}
	return out[:k]
}

// TestClose: closing releases the port and every goroutine, also with
// datagrams still queued.
func TestClose(t *testing.T) {
	e := startEcho(t)
	before := runtime.NumGoroutine()
	f, err := Listen(e.conn.LocalAddr().String(), Config{Delay: time.Second, Seed: 1}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	addr := f.Addr()
	var cs []net.Conn
	for range 3 {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("queued"))
		cs = append(cs, c)
	}
	time.Sleep(20 * time.Millisecond)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		c.Close()
	}
	ua, _ := net.ResolveUDPAddr("udp", addr)
	l, err := net.ListenUDP("udp", ua)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	l.Close()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after Close, %d before", g, before)
	}
	if f.Close() != nil {
		t.Error("second Close failed")
	}
}
