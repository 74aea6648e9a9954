package coap_test

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/coap/oscore"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

// Environment of the helper processes.
const (
	seqChildEnv   = "FUDBENCH_TEST_SEQ_CHILD"    // TestHelperSeqReserve: the sequence file
	oscChildEnv   = "FUDBENCH_TEST_OSCORE_CHILD" // TestHelperOSCORESender: the sequence file
	oscChildAddr  = "FUDBENCH_TEST_OSCORE_ADDR"  // ... and the device's address
	oscChildSalt  = "FUDBENCH_TEST_OSCORE_SALT"  // ... and the context's master salt
	childReserves = 40                           // reservations of one helper process
)

// span is a reserved range [first, first+n).
type span struct{ first, n uint64 }

// checkDisjoint fails t unless the spans tile [0, end) exactly: disjoint,
// and no number skipped.
func checkDisjoint(t *testing.T, spans []span) (end uint64) {
	t.Helper()
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	for _, s := range spans {
		if s.first != end {
			t.Fatalf("reserved [%d, %d) after the numbers up to %d: overlapping or skipping", s.first, s.first+s.n, end)
		}
		end = s.first + s.n
	}
	return end
}

// seqValueOf is the number in a sequence file.
func seqValueOf(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("%s holds %q: no newline at the end", path, b)
	}
	n, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return n
}

// TestHelperSeqReserve is the child process of TestSeqFileDisjoint: it
// reserves childReserves blocks in the file named by seqChildEnv and
// prints each as "first n". It does nothing in a normal test run.
func TestHelperSeqReserve(t *testing.T) {
	path := os.Getenv(seqChildEnv)
	if path == "" {
		t.Skip("helper process for TestSeqFileDisjoint")
	}
	s := coap.NewSeqFile(path)
	for i := range childReserves {
		n := uint64(1 + i%7)
		first, err := s.Reserve(n)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(first, n)
	}
}

// TestSeqFileDisjoint reserves from 8 goroutines through two SeqFile
// values on one path, while two child processes reserve from the same
// file: every number goes to exactly one reservation, the missing
// directories are made, and the file ends at the end of the last block.
func TestSeqFileDisjoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "fudbench", "bench.seq")
	files := []*coap.SeqFile{coap.NewSeqFile(path), coap.NewSeqFile(path)}
	var (
		mu    sync.Mutex
		spans []span
		wg    sync.WaitGroup
	)
	record := func(s span) {
		mu.Lock()
		spans = append(spans, s)
		mu.Unlock()
	}
	var children []*exec.Cmd
	var outs []*bytes.Buffer
	if testing.Short() {
		t.Log("-short: no child processes")
	} else {
		for range 2 {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSeqReserve$", "-test.count=1")
			cmd.Env = append(os.Environ(), seqChildEnv+"="+path)
			out := &bytes.Buffer{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			children, outs = append(children, cmd), append(outs, out)
		}
	}
	for g := range 8 {
		wg.Go(func() {
			for i := range 25 {
				n := uint64(1 + (g+i)%5)
				if i%3 == 0 {
					n = 256
				}
				first, err := files[(g+i)%2].Reserve(n)
				if err != nil {
					t.Error(err)
					return
				}
				record(span{first, n})
			}
		})
	}
	wg.Wait()
	for i, cmd := range children {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v\n%s", err, outs[i])
		}
		sc := bufio.NewScanner(outs[i])
		got := 0
		for sc.Scan() {
			var s span
			if _, err := fmt.Sscan(sc.Text(), &s.first, &s.n); err != nil {
				continue // the test framework's own lines
			}
			record(s)
			got++
		}
		if got != childReserves {
			t.Fatalf("child reported %d reservations, want %d:\n%s", got, childReserves, outs[i])
		}
	}
	if t.Failed() {
		return
	}
	end := checkDisjoint(t, spans)
	if got := seqValueOf(t, path); got != end {
		t.Fatalf("the file holds %d, the last block ends at %d", got, end)
	}
	// A new value on the path, as in the next process, goes on from there.
	if first, err := coap.NewSeqFile(path).Reserve(256); err != nil || first != end {
		t.Fatalf("next reservation: %d, %v; want %d", first, err, end)
	}
	if got := seqValueOf(t, path); got != end+256 {
		t.Fatalf("the file holds %d, want %d", got, end+256)
	}
}

// TestSeqFileFresh: a file that does not exist yet (nor its directories)
// starts at 0, and each reservation leaves the end of its block in it.
func TestSeqFileFresh(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "c.seq")
	s := coap.NewSeqFile(path)
	if s.Path() != path {
		t.Fatalf("Path %q", s.Path())
	}
	for i, want := range []span{{0, 256}, {256, 1}, {257, 256}} {
		first, err := s.Reserve(want.n)
		if err != nil || first != want.first {
			t.Fatalf("reservation %d: %d, %v; want %d", i, first, err, want.first)
		}
		if got := seqValueOf(t, path); got != want.first+want.n {
			t.Fatalf("after reservation %d the file holds %d, want %d", i, got, want.first+want.n)
		}
	}
	// Nothing is left behind but the file and its lock.
	ents, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"c.seq", "c.seq.lock"}) {
		t.Fatalf("directory holds %v", names)
	}
}

// TestSeqFileGarbage: a file that does not hold a sequence number is an
// error that names the file, never a silent 0, and is left as it is; so
// is a number that the next block would carry past 2^64.
func TestSeqFileGarbage(t *testing.T) {
	for _, content := range []string{"garbage\n", "", "\n", "12x\n", "-5\n", "0x10\n", "1 2\n", "18446744073709551616\n"} {
		t.Run(strconv.Quote(content), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "bench.seq")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			first, err := coap.NewSeqFile(path).Reserve(256)
			if err == nil {
				t.Fatalf("reserved from %d", first)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name %s", err, path)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Fatalf("the file now holds %q", b)
			}
		})
	}
	t.Run("exhausted", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bench.seq")
		if err := os.WriteFile(path, []byte("18446744073709551600\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if first, err := coap.NewSeqFile(path).Reserve(256); err == nil || !strings.Contains(err.Error(), path) {
			t.Fatalf("reserved from %d, %v", first, err)
		}
	})
	// Surrounding white space, as other programs write it, is fine.
	t.Run("spaces", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "bench.seq")
		if err := os.WriteFile(path, []byte(" 554\n\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if first, err := coap.NewSeqFile(path).Reserve(1); err != nil || first != 554 {
			t.Fatalf("reserved from %d, %v", first, err)
		}
	})
}

// oscoreDevice is an OSCORE server that records every Partial IV it
// receives and answers 2.05 under a Partial IV of its own.
type oscoreDevice struct {
	ctx  *oscore.Context
	mu   sync.Mutex
	pivs map[uint64]int // Partial IV -> times received
	addr string
}

func newOSCOREDevice(t *testing.T, p oscore.Params) *oscoreDevice {
	t.Helper()
	ctx, err := oscore.New(p)
	if err != nil {
		t.Fatal(err)
	}
	d := &oscoreDevice{ctx: ctx, pivs: map[uint64]int{}}
	srv, err := coapsrv.ListenUDP("127.0.0.1:0", d.handle, coapsrv.Options{OSCORE: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	d.addr = srv.Addr().String()
	return d
}

func (d *oscoreDevice) handle(_ context.Context, r *coapsrv.Request) *coapsrv.Response {
	in, x, err := d.ctx.UnprotectRequest(oscore.Message{Code: r.Code, Options: r.Options, Payload: r.Payload})
	if err != nil {
		code, diag := oscore.ErrorCode(err)
		return &coapsrv.Response{Code: code, ContentFormat: coapsrv.NoContentFormat, Payload: []byte(diag)}
	}
	var piv uint64
	for _, b := range x.PIV {
		piv = piv<<8 | uint64(b)
	}
	d.mu.Lock()
	d.pivs[piv]++
	d.mu.Unlock()
	// The device keeps no replay window here (the test counts the Partial
	// IVs itself), so it answers under a Partial IV of its own.
	out, _, err := d.ctx.ProtectResponse(oscore.Message{Code: codes.Content, Payload: in.Payload}, x, true)
	if err != nil {
		return &coapsrv.Response{Code: codes.InternalServerError, ContentFormat: coapsrv.NoContentFormat}
	}
	return &coapsrv.Response{Code: out.Code, ContentFormat: coapsrv.NoContentFormat, Options: out.Options, Payload: out.Payload}
}

// received returns the Partial IVs received, sorted, and fails t if one
// came twice.
func (d *oscoreDevice) received(t *testing.T) []uint64 {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []uint64
	for piv, n := range d.pivs {
		if n > 1 {
			t.Errorf("partial IV %d received %d times", piv, n)
		}
		out = append(out, piv)
	}
	slices.Sort(out)
	return out
}

var saltRuns atomic.Int64

// testContext is a bench context of this test's own (a master salt no
// other test or run in this process uses) and the device's side of it.
func testContext(t *testing.T) (bench, device oscore.Params) {
	bench = oscore.Params{
		MasterSecret: []byte("seqfile-test-secret"),
		MasterSalt:   fmt.Appendf(nil, "%s/%d", t.Name(), saltRuns.Add(1)),
		SenderID:     []byte{0x42},
		RecipientID:  []byte{},
	}
	return bench, swapped(bench)
}

// send makes n requests through c, each checked.
func send(t *testing.T, c *coap.Client, n int) {
	t.Helper()
	for i := range n {
		r, err := c.Do(context.Background(), coap.Request{Code: codes.POST, Path: "/x", Payload: []byte{byte(i)}, ContentFormat: -1})
		if err != nil {
			t.Error(err)
			return
		}
		if r.Code != codes.Content || !bytes.Equal(r.Payload, []byte{byte(i)}) {
			t.Errorf("answer %v %x", r.Code, r.Payload)
			return
		}
	}
}

// TestHelperOSCORESender is the child process of
// TestOSCOREContextShared: a second bench process with the same context
// and sequence file sends three requests. It does nothing in a normal
// test run.
func TestHelperOSCORESender(t *testing.T) {
	path := os.Getenv(oscChildEnv)
	if path == "" {
		t.Skip("helper process for TestOSCOREContextShared")
	}
	p, _ := testContext(t)
	p.MasterSalt = []byte(os.Getenv(oscChildSalt))
	o, err := coap.NewOSCORE(p, coap.NewSeqFile(path))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, os.Getenv(oscChildAddr), nil, fastTx)
	c.UseOSCORE(o)
	send(t, c, 3)
}

// TestOSCOREContextShared: NewOSCORE with the same context and sequence
// file returns one context, whose Partial IVs two clients sending at once
// never repeat, across reserved blocks; a second process with its own
// SeqFile on the same path starts past every number the first reserved;
// the same context with another sequence file is refused, as two
// sequences under one key would repeat nonces.
func TestOSCOREContextShared(t *testing.T) {
	p, dp := testContext(t)
	dev := newOSCOREDevice(t, dp)
	path := filepath.Join(t.TempDir(), "bench.seq")
	o1, err := coap.NewOSCORE(p, coap.NewSeqFile(path))
	if err != nil {
		t.Fatal(err)
	}
	o2, err := coap.NewOSCORE(p, coap.NewSeqFile(path))
	if err != nil {
		t.Fatal(err)
	}
	if o1 != o2 {
		t.Fatal("two contexts for one sender context and sequence file")
	}
	if _, err := coap.NewOSCORE(p, coap.NewSeqFile(filepath.Join(t.TempDir(), "other.seq"))); err == nil {
		t.Fatal("the same sender context with a second sequence file was accepted")
	}
	var wg sync.WaitGroup
	for _, o := range []*coap.OSCORE{o1, o2} {
		c := dial(t, dev.addr, nil, fastTx)
		c.UseOSCORE(o)
		wg.Go(func() { send(t, c, 150) })
	}
	wg.Wait()
	got := dev.received(t)
	if len(got) != 300 {
		t.Fatalf("%d distinct partial IVs for 300 requests", len(got))
	}
	// One process, one sequence: the numbers from 0 on, none skipped.
	if got[0] != 0 || got[len(got)-1] != 299 {
		t.Fatalf("partial IVs %d to %d", got[0], got[len(got)-1])
	}
	reserved := seqValueOf(t, path)
	if reserved != 512 {
		t.Fatalf("the sequence file holds %d after 300 numbers, want 512 (two blocks)", reserved)
	}
	if testing.Short() {
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperOSCORESender$", "-test.count=1")
	cmd.Env = append(os.Environ(), oscChildEnv+"="+path, oscChildAddr+"="+dev.addr, oscChildSalt+"="+string(p.MasterSalt))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	got = dev.received(t)
	if len(got) != 303 || !slices.Equal(got[300:], []uint64{reserved, reserved + 1, reserved + 2}) {
		t.Fatalf("the second process sent partial IVs %v, want %d on", got[300:], reserved)
	}
	if v := seqValueOf(t, path); v != reserved+256 {
		t.Fatalf("the sequence file holds %d after the second process, want %d", v, reserved+256)
	}
}

// TestOSCORESeqFileRewound: when the sequence file is found behind the
// numbers the context has used (removed, or restored from a backup while
// the bench ran), the next block still starts past every number used and
// the file covers the number about to be used, so that no later process
// can use it again.
func TestOSCORESeqFileRewound(t *testing.T) {
	p, dp := testContext(t)
	dev := newOSCOREDevice(t, dp)
	path := filepath.Join(t.TempDir(), "bench.seq")
	o, err := coap.NewOSCORE(p, coap.NewSeqFile(path))
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, dev.addr, nil, fastTx)
	c.UseOSCORE(o)
	send(t, c, 256) // the first block, used up
	for _, content := range []string{"0\n", ""} {
		if content == "" {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		} else if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		send(t, c, 1)
		got := dev.received(t)
		last := got[len(got)-1]
		if v := seqValueOf(t, path); v <= last {
			t.Fatalf("file rewound to %q: partial IV %d used with %d in the file", content, last, v)
		}
		send(t, c, 255) // the rest of the block
	}
}

// TestOSCORESenderKeyShared: contexts for two devices that differ only in
// the Recipient ID share the bench's Sender Key, hence its nonces: they
// are two contexts, but draw Partial IVs from one sequence, kept in one
// default file.
func TestOSCORESenderKeyShared(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	pA, dA := testContext(t)
	pB := pA
	pB.RecipientID = []byte{0x07}
	dB := swapped(pB)
	if fa, fb := coap.DefaultSeqFile(pA), coap.DefaultSeqFile(pB); fa != fb {
		t.Fatalf("default sequence files %s and %s for one Sender Key", fa, fb)
	}
	var clients []*coap.Client
	var devs []*oscoreDevice
	var ctxs []*coap.OSCORE
	for i, pair := range [][2]oscore.Params{{pA, dA}, {pB, dB}} {
		o, err := coap.NewOSCORE(pair[0], nil)
		if err != nil {
			t.Fatal(err)
		}
		ctxs = append(ctxs, o)
		devs = append(devs, newOSCOREDevice(t, pair[1]))
		c := dial(t, devs[i].addr, nil, fastTx)
		c.UseOSCORE(o)
		clients = append(clients, c)
	}
	if ctxs[0] == ctxs[1] {
		t.Fatal("one context for two recipients")
	}
	for range 5 {
		for _, c := range clients {
			send(t, c, 1)
		}
	}
	a, b := devs[0].received(t), devs[1].received(t)
	if len(a) != 5 || len(b) != 5 {
		t.Fatalf("partial IVs %v and %v", a, b)
	}
	for _, piv := range a {
		if slices.Contains(b, piv) {
			t.Fatalf("partial IV %d used towards both devices under one Sender Key: %v and %v", piv, a, b)
		}
	}
	if v := seqValueOf(t, coap.DefaultSeqFile(pA)); v != 256 {
		t.Fatalf("the default sequence file holds %d, want one block", v)
	}
}
