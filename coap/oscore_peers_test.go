package coap_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/coap/oscore"
	peerbuild "github.com/fudbench/fudbench/internal/peers"
)

// libcoap 4.3.5 (built with OSCORE by .ci/run) as the server: someone
// else's OSCORE, Echo recovery (RFC 8613 Appendix B.1.2) and inner
// block-wise transfer against the bench's client.

// peerOSCORE is the bench's side of the context the libcoap peers use:
// the one of ../shared/peers/README.md, with which libcoap was checked by
// hand.
func peerOSCORE() oscore.Params {
	return oscore.Params{
		MasterSecret: []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		MasterSalt:   []byte{0x9e, 0x7c, 0xa9, 0x22, 0x23, 0x78, 0x63, 0x40},
		SenderID:     []byte{0x01},
		RecipientID:  []byte{},
		ReplayWindow: 30,
		AEAD:         oscore.AlgAESCCM16_64_128,
		HKDF:         oscore.AlgHKDFSHA256,
	}
}

// swapped is the other endpoint's side of p.
func swapped(p oscore.Params) oscore.Params {
	p.SenderID, p.RecipientID = p.RecipientID, p.SenderID
	return p
}

// oscoreServer is a running libcoap 4.3.5 coap-server with an OSCORE
// context and dynamic resources.
type oscoreServer struct {
	lc     peerbuild.Libcoap
	addr   string
	conf   string // the client's conf for coap-client
	seq    string // the client's sequence file: the bench's and coap-client's
	stderr *syncBuffer
}

// syncBuffer collects a process's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startOSCOREServer starts `coap-server -E srv.conf,srv.seq -d 10` on a
// free port (libcoap also takes port+1 for DTLS) and waits until it
// answers a plain GET, which leaves its OSCORE state untouched.
func startOSCOREServer(t *testing.T, p oscore.Params) *oscoreServer {
	t.Helper()
	lc := peerbuild.NeedLibcoap(t)
	dir := t.TempDir()
	s := &oscoreServer{lc: lc, conf: filepath.Join(dir, "cli.conf"), seq: filepath.Join(dir, "cli.seq"), stderr: &syncBuffer{}}
	srvConf := filepath.Join(dir, "srv.conf")
	for f, q := range map[string]oscore.Params{s.conf: p, srvConf: swapped(p)} {
		if err := os.WriteFile(f, q.MarshalConf(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePorts(t)
	s.addr = fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(lc.Server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "10", "-v", "4",
		"-E", srvConf+","+filepath.Join(dir, "srv.seq"))
	cmd.Stdout, cmd.Stderr = s.stderr, s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("coap-server's log:\n%s", s.stderr)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := exec.Command(lc.Client, "-B", "1", "-m", "get", "coap://"+s.addr+"/").Run()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("coap-server not answering on %s: %v", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// coapClient runs libcoap 4.3.5's coap-client with the client's context
// and its sequence file, and returns what it wrote to its output file.
func (s *oscoreServer) coapClient(t *testing.T, args ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append([]string{"-B", "20", "-E", s.conf + "," + s.seq, "-o", out}, args...)
	b, err := exec.CommandContext(ctx, s.lc.Client, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("coap-client %q: %v\n%s", args, err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("coap-client %q wrote no output: %v\n%s", args, err, b)
	}
	return got
}

// nonceLog records what OnNonce and OnEcho report.
type nonceLog struct {
	nonces []coap.NonceSeen
	echoes int
}

func (l *nonceLog) watch(c *coap.Client) {
	c.OnNonce = func(n coap.NonceSeen) { l.nonces = append(l.nonces, n) }
	c.OnEcho = func() { l.echoes++ }
}

// distinct fails t when two reported nonces are equal under one key.
func (l *nonceLog) distinct(t *testing.T) {
	t.Helper()
	seen := map[string]string{}
	for _, n := range l.nonces {
		if n.Proto != "oscore" || len(n.Nonce) != 13 {
			t.Fatalf("nonce report %+v", n)
		}
		k := string(n.KeyFP[:]) + string(n.Nonce)
		if prev, ok := seen[k]; ok {
			t.Fatalf("the device used one nonce twice under one key: %s and %s", prev, n.Label)
		}
		seen[k] = n.Label
	}
}

var peerRuns atomic.Int64

// TestLibcoapOSCOREServer puts an image of ~20 KB with inner Block1 (RFC
// 8613 §4.1.3.4), block by block, to libcoap's coap-server in 64- and
// 1024-byte blocks under OSCORE, and reads each back with libcoap's
// coap-client under the same context (its own process, continuing from
// the bench's sequence file).
func TestLibcoapOSCOREServer(t *testing.T) {
	p := peerOSCORE()
	if run := peerRuns.Add(1); run > 1 {
		// A process has one sequence file for a Sender Key, and every
		// run (-count) has a file and a server of its own.
		p.MasterSalt = fmt.Appendf(p.MasterSalt, "%d", run)
	}
	s := startOSCOREServer(t, p)
	seq := coap.NewSeqFile(s.seq)
	o, err := coap.NewOSCORE(p, seq)
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.addr, nil, coap.Transmission{AckTimeout: 500 * time.Millisecond})
	c.UseOSCORE(o)
	var log nonceLog
	log.watch(c)
	ctx := context.Background()

	img := randomBytes(20<<10+123, 85)
	sizes := []uint8{2, 6} // 64 and 1024 bytes
	requests := 0
	for _, szx := range sizes {
		path := fmt.Sprintf("/osc%d", coap.BlockSize(szx))
		n := (len(img) + coap.BlockSize(szx) - 1) / coap.BlockSize(szx)
		for num := range n {
			r, err := c.SendBlock(ctx, path, img, uint32(num), szx, nil)
			if err != nil {
				t.Fatalf("%s block %d: %v", path, num, err)
			}
			requests++
			last := num == n-1
			switch {
			case !last && r.Code != codes.Continue, last && r.Code != codes.Created && r.Code != codes.Changed:
				t.Fatalf("%s block %d: %v", path, num, r.Code)
			}
			if r.Block1 == nil || r.Block1.Num != uint32(num) {
				t.Fatalf("%s block %d: answered with Block1 %+v", path, num, r.Block1)
			}
		}
	}
	// A fresh coap-server's recipient context has no replay window: its
	// first request is answered 4.01 with Echo (Appendix B.1.2), which
	// Do answered once, and never again.
	if log.echoes != 1 {
		t.Errorf("OnEcho fired %d times, want once (the server's first request)", log.echoes)
	}
	// Its own, small resource comes back in one response.
	r, err := c.Get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	requests++
	if r.Code != codes.Content || !bytes.Contains(r.Payload, []byte("libcoap")) {
		t.Fatalf("GET /: %v %q", r.Code, r.Payload)
	}
	// Every verified response was reported, the Echo challenge included
	// (libcoap protects it under a Partial IV of its own), and no nonce
	// came twice.
	if want := requests + log.echoes; len(log.nonces) != want {
		t.Errorf("OnNonce fired %d times for %d verified responses", len(log.nonces), want)
	}
	log.distinct(t)

	// The GET sent again byte for byte: libcoap's replay window has its
	// Partial IV.
	cp := c.Capture()
	if got, err := c.Replay(ctx, cp, time.Second); err != nil || got != coap.ReplayRejected {
		t.Errorf("replay of %v: %q, %v; want %q", cp, got, err, coap.ReplayRejected)
	}

	// coap-client reads each image back (Block2 inside OSCORE) in its own
	// process: it starts at the number in the sequence file, past every
	// number the bench reserved, so the server takes it as fresh.
	benchEnd := seqValueOf(t, s.seq)
	if benchEnd < uint64(requests+log.echoes) || benchEnd%256 != 0 {
		t.Fatalf("sequence file holds %d after %d requests, want the end of a reserved block", benchEnd, requests+log.echoes)
	}
	for _, szx := range sizes {
		path := fmt.Sprintf("/osc%d", coap.BlockSize(szx))
		got := s.coapClient(t, "-m", "get", "coap://"+s.addr+path)
		if !bytes.Equal(got, img) {
			t.Fatalf("%s read back %d bytes, not identical to the %d put", path, len(got), len(img))
		}
	}
	after := seqValueOf(t, s.seq)
	if after <= benchEnd {
		t.Errorf("coap-client left the sequence file at %d, the bench's end was %d", after, benchEnd)
	}
	t.Logf("%d requests, %d Echo challenge(s), %d nonces; sequence file %d after the bench, %d after coap-client", requests, log.echoes, len(log.nonces), benchEnd, after)
	// Reading with the bench's client (GET with Block2) is not
	// implemented: its uploads are Block1 only.
}
