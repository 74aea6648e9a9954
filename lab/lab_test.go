package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fudbench/fudbench/jobs"
)

// testServer starts an embedded server on a free loopback port and
// returns a JetStream client on it.
func testServer(t *testing.T) (*Server, jetstream.JetStream) {
	t.Helper()
	s, err := StartServer(ServerOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s, connect(t, s.ClientURL())
}

func connect(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// testLeases opens the leases bucket with ttl on a new server.
func testLeases(t *testing.T, ttl time.Duration) (context.Context, *Leases) {
	t.Helper()
	_, js := testServer(t)
	ctx := ctxT(t, 30*time.Second)
	l, err := OpenLeases(ctx, js, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return ctx, l
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestServerListensOnLoopback(t *testing.T) {
	s, _ := testServer(t)
	if url := s.ClientURL(); len(url) < 17 || url[:17] != "nats://127.0.0.1:" {
		t.Errorf("client URL %s, want loopback", url)
	}
}

// TestQueueEachJobOnce: ten jobs, two pools, two agents sharing each
// pool's consumer: each job is taken exactly once, by an agent of its
// pool; a run ID submitted twice is queued once.
func TestQueueEachJobOnce(t *testing.T) {
	_, js := testServer(t)
	ctx := ctxT(t, 30*time.Second)
	q, err := OpenQueue(ctx, js, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for i := range 10 {
		pool := []string{"f4", "nrf"}[i%2]
		run := fmt.Sprintf("run-%d", i)
		want[run] = pool
		dup, err := q.Submit(ctx, pool, run, []byte("cuts: [none]\n"))
		if err != nil || dup {
			t.Fatalf("submit %s: dup %v, %v", run, dup, err)
		}
	}
	if dup, err := q.Submit(ctx, "f4", "run-0", []byte("again")); err != nil || !dup {
		t.Fatalf("second submit of run-0: duplicate %v, %v", dup, err)
	}
	if n, err := q.Pending(ctx); err != nil || n != 10 {
		t.Fatalf("pending %d, %v; want 10", n, err)
	}
	var mu sync.Mutex
	got := map[string][]string{} // run → agents that took it
	var wg sync.WaitGroup
	for _, agent := range []string{"pi-1", "pi-2", "pi-3", "pi-4"} {
		pool := map[string]string{"pi-1": "f4", "pi-2": "f4", "pi-3": "nrf", "pi-4": "nrf"}[agent]
		p, err := q.Pool(ctx, pool, 2)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				nctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
				d, err := p.Next(nctx)
				cancel()
				if err != nil {
					return // the pool is empty
				}
				if d.Pool != pool || d.Attempt != 1 {
					t.Errorf("%s took %+v", agent, d)
				}
				mu.Lock()
				got[d.RunID] = append(got[d.RunID], agent+"@"+pool)
				mu.Unlock()
				if err := d.Done(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for run, pool := range want {
		if len(got[run]) != 1 || got[run][0][len(got[run][0])-len(pool):] != pool {
			t.Errorf("%s (pool %s) taken by %v, want once by an agent of its pool", run, pool, got[run])
		}
	}
	if n, err := q.Pending(ctx); err != nil || n != 0 {
		t.Errorf("pending %d after all were done, %v", n, err)
	}
}

// TestQueueRedeliversWhenAgentStops: a job whose agent stops signalling
// progress is delivered again after the ack wait, as attempt 2; progress
// keeps it with its agent.
func TestQueueRedeliversWhenAgentStops(t *testing.T) {
	_, js := testServer(t)
	ctx := ctxT(t, 30*time.Second)
	q, err := OpenQueue(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Submit(ctx, "f4", "run-x", []byte("job")); err != nil {
		t.Fatal(err)
	}
	p, err := q.Pool(ctx, "f4", 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Next(ctx)
	if err != nil || d.RunID != "run-x" || d.Attempt != 1 || string(d.Body) != "job" {
		t.Fatalf("first delivery %+v, %v", d, err)
	}
	// Progress for 4 s (twice the ack wait): nobody else gets it.
	for range 4 {
		time.Sleep(time.Second)
		if err := d.Progress(); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if d2, err := p.Next(short); err == nil {
		t.Fatalf("delivered again while in progress: %+v", d2)
	}
	cancel()
	// The agent dies: no more progress, no ack.
	d2, err := p.Next(ctx)
	if err != nil || d2.RunID != "run-x" || d2.Attempt != 2 {
		t.Fatalf("redelivery %+v, %v; want run-x, attempt 2", d2, err)
	}
	if err := d2.Done(); err != nil {
		t.Fatal(err)
	}
}

func TestQueueRefusesBadPool(t *testing.T) {
	_, js := testServer(t)
	ctx := ctxT(t, 10*time.Second)
	q, err := OpenQueue(ctx, js, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, pool := range []string{"", "a.>", "a b", "*", ".x"} {
		if _, err := q.Submit(ctx, pool, "r", nil); err == nil {
			t.Errorf("pool %q accepted", pool)
		}
	}
}

// TestLeases: one holder at a time; a second Acquire waits until the
// first releases; renewals keep a lease past its TTL.
func TestLeases(t *testing.T) {
	// A TTL of 2 s renewed every 667 ms: a slow machine has 1.3 s of
	// slack before a renewal comes too late.
	ctx, l := testLeases(t, 2*time.Second)
	a := jobs.Holder{Run: "run-a", Job: "soak", Host: "pi-1", PID: 10}
	b := jobs.Holder{Run: "run-b", Job: "ci", Host: "pi-2", PID: 20}
	la, err := l.Acquire(ctx, "dut-1", a)
	if err != nil {
		t.Fatal(err)
	}
	// Held for two and a half TTLs by renewals alone.
	time.Sleep(5 * time.Second)
	if h, ok, err := l.Holder(ctx, "dut-1"); err != nil || !ok || h != a {
		t.Fatalf("holder after 2.5 TTLs: %v %v %v, want %v", h, ok, err, a)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = l.Acquire(short, "dut-1", b)
	cancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || err.Error() != "board dut-1 is held by "+a.String()+": context deadline exceeded" {
		t.Fatalf("second holder: %v", err)
	}
	got := make(chan error, 1)
	go func() {
		lb, err := l.Acquire(ctx, "dut-1", b)
		if err == nil {
			err = lb.Release()
		}
		got <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := la.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting holder: %v", err)
	}
	if _, ok, err := l.Holder(ctx, "dut-1"); err != nil || ok {
		t.Errorf("held after both released: %v %v", ok, err)
	}
}

// TestLeaseOfDeadHolderExpires: a holder that dies (its connection
// closes, renewals stop) loses the board after the TTL, on the server's
// clock; the waiting holder gets it.
func TestLeaseOfDeadHolderExpires(t *testing.T) {
	s, js := testServer(t)
	ctx := ctxT(t, 30*time.Second)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	deadJS, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := OpenLeases(ctx, deadJS, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.Acquire(ctx, "dut-2", jobs.Holder{Run: "run-dead", Host: "pi-9"}); err != nil {
		t.Fatal(err)
	}
	nc.Close() // the agent is killed

	l, err := OpenLeases(ctx, js, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	le, err := l.Acquire(ctx, "dut-2", jobs.Holder{Run: "run-next", Host: "pi-1"})
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("the dead holder's lease lapsed after %v (TTL 2s, renewed every 667ms)", took.Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("took %v for a 2 s TTL", took)
	}
	if err := le.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestKVUpdateDropsKeyTTL pins down why leases renew by publishing: a
// key created with a TTL and then written with kv.Update no longer
// expires.
func TestKVUpdateDropsKeyTTL(t *testing.T) {
	ctx, l := testLeases(t, time.Second)
	rev, err := l.kv.Create(ctx, "k", []byte("v"), jetstream.KeyTTL(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.kv.Update(ctx, "k", []byte("v2"), rev); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	if _, err := l.kv.Get(ctx, "k"); err != nil {
		t.Fatalf("the key expired after kv.Update (%v): the library now keeps the TTL, and leases could renew with it", err)
	}
}

// TestLeaseLost: when the key is no longer the lease's (deleted by an
// operator, or lapsed and taken by another holder), the next renewal
// fails: Lost says so and Release reports it rather than deleting the
// other holder's key.
func TestLeaseLost(t *testing.T) {
	ctx, l := testLeases(t, 2*time.Second)
	le, err := l.Acquire(ctx, "dut-3", jobs.Holder{Run: "run-a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.kv.Delete(ctx, "dut-3"); err != nil {
		t.Fatal(err)
	}
	other, err := l.Acquire(ctx, "dut-3", jobs.Holder{Run: "run-b"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for le.(*lease).Lost() == nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if err := le.(*lease).Lost(); err == nil {
		t.Fatal("the lease was taken over and Lost says nothing")
	}
	if err := le.Release(); err == nil || !strings.Contains(err.Error(), "lease of dut-3 lost") {
		t.Errorf("release of a lost lease: %v", err)
	}
	if h, ok, err := l.Holder(ctx, "dut-3"); err != nil || !ok || h.Run != "run-b" {
		t.Errorf("holder %v %v %v, want run-b's lease untouched", h, ok, err)
	}
	if err := other.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestImages: an image is stored once under its SHA-256; fetching checks
// the size before reading and the bytes against the name.
func TestImages(t *testing.T) {
	_, js := testServer(t)
	ctx := ctxT(t, 30*time.Second)
	im, err := OpenImages(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	img := bytes.Repeat([]byte("firmware"), 40_000) // 320,000 bytes: several chunks
	d, err := im.Put(ctx, img)
	if err != nil || d != Digest(img) {
		t.Fatalf("put: %s %v", d, err)
	}
	if d2, err := im.Put(ctx, img); err != nil || d2 != d {
		t.Fatalf("second put: %s %v", d2, err)
	}
	got, err := im.Get(ctx, d, 0)
	if err != nil || !bytes.Equal(got, img) {
		t.Fatalf("get: %d bytes, %v", len(got), err)
	}
	if _, err := im.Get(ctx, d, 64<<10); err == nil || !strings.Contains(err.Error(), "is 320000 bytes: the limit is 65536") {
		t.Errorf("get with a 64 KiB limit: %v", err)
	}
	if _, err := im.Get(ctx, Digest([]byte("other")), 0); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("get of a digest never stored: %v", err)
	}
	// Bytes stored under a name that is not their digest are refused.
	forged := Digest([]byte("the real image"))
	if _, err := im.obs.PutBytes(ctx, forged, []byte("something else")); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Get(ctx, forged, 0); err == nil || !strings.Contains(err.Error(), "holds bytes whose SHA-256 is "+Digest([]byte("something else"))) {
		t.Errorf("get of a forged object: %v", err)
	}
}
