package coap_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim"
)

// The bench's OSCORE client against a simulated board's OSCORE endpoint:
// the Echo recovery after a boot (RFC 8613 Appendix B.1.2, RFC 9175), a
// request sent again after a power cut, the device's nonces, and a plain
// request refused.

// oscoreBoard is a simulated board with an OSCORE endpoint, powered and
// running its application, and the bench's side of its context.
type oscoreBoard struct {
	*sim.Board
	osc *coap.OSCORE
}

// newOSCOREBoard makes a board with the development OSCORE context, under
// a master salt of this test's own (and this run's, for -count): every
// test has its own Sender Key and sequence file (in t.TempDir), and a
// process has one sequence file for a Sender Key.
func newOSCOREBoard(t *testing.T, cfg sim.Config) *oscoreBoard {
	t.Helper()
	p := sim.DevOSCORE()
	p.MasterSalt = fmt.Appendf(p.MasterSalt, "/%s/%d", t.Name(), saltRuns.Add(1))
	cfg.OSCORE = &p
	cfg.Name = "oscore-" + filepath.Base(t.Name())
	cfg.GDBAddr, cfg.DTLSAddr, cfg.UDPAddrs = "-", "-", []string{"127.0.0.1:0"}
	b, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	img, err := fwimage.Build(fwimage.Spec{Version: "1.0.0", Seq: 1, Size: 4096, Seed: 1}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.FactoryProgram(img); err != nil {
		t.Fatal(err)
	}
	ob := &oscoreBoard{Board: b}
	ob.powerOn(t, sim.ModeApp)
	bench := p
	bench.SenderID, bench.RecipientID = p.RecipientID, p.SenderID
	if ob.osc, err = coap.NewOSCORE(bench, coap.NewSeqFile(filepath.Join(t.TempDir(), "bench.seq"))); err != nil {
		t.Fatal(err)
	}
	return ob
}

// powerOn powers the board and waits for its next boot to settle in want.
func (b *oscoreBoard) powerOn(t *testing.T, want string) {
	t.Helper()
	boots := b.Boots()
	b.SetPower(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != want {
		t.Fatalf("board booted into %s (%v), want %s", m, err, want)
	}
}

// powerCycle cuts the board's power and brings it back.
func (b *oscoreBoard) powerCycle(t *testing.T, want string) {
	t.Helper()
	b.SetPower(false)
	b.powerOn(t, want)
}

// client dials the board's OSCORE endpoint and reports its nonces and
// Echo challenges to log.
func (b *oscoreBoard) client(t *testing.T, log *nonceLog) *coap.Client {
	t.Helper()
	c := dial(t, b.OSCOREAddr(), nil, fastTx)
	c.UseOSCORE(b.osc)
	if log != nil {
		log.watch(c)
	}
	return c
}

// getBoot reads the boot report through c.
func getBoot(t *testing.T, c *coap.Client) fwproto.Boot {
	t.Helper()
	r, err := c.Get(context.Background(), fwproto.PathBoot)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != codes.Content {
		t.Fatalf("GET %s: %v %q", fwproto.PathBoot, r.Code, r.Payload)
	}
	boot, err := fwproto.DecodeBoot(r.Payload)
	if err != nil {
		t.Fatal(err)
	}
	return boot
}

// TestOSCOREEchoAfterBoot: the first request after the board's boot is
// challenged with Echo and Do answers it (OnEcho once); the requests
// after it go straight through; every response verifies and is reported
// with a nonce of its own.
func TestOSCOREEchoAfterBoot(t *testing.T) {
	b := newOSCOREBoard(t, sim.Config{})
	var log nonceLog
	c := b.client(t, &log)
	for i := range 4 {
		boot := getBoot(t, c)
		if boot.Mode != sim.ModeApp || boot.Version != "1.0.0" {
			t.Fatalf("request %d: boot report %+v", i, boot)
		}
		if log.echoes != 1 {
			t.Fatalf("after request %d: OnEcho fired %d times, want once (the first request after boot)", i, log.echoes)
		}
	}
	// Four answers and the 4.01 Echo challenge, which the device protects
	// under a Partial IV of its own.
	if len(log.nonces) != 5 {
		t.Fatalf("OnNonce fired %d times, want 5", len(log.nonces))
	}
	log.distinct(t)
}

// TestOSCOREReplayAfterPowerCut captures a request, cuts the board's
// power and sends the request again byte for byte from new clients: a
// board that challenges after a boot asks for Echo instead of acting on
// it, and once a fresh request has set its replay window refuses it; a
// board with the ReplayAccept bug acts on it once (its replay window
// starts empty), then refuses it like any request it has seen.
func TestOSCOREReplayAfterPowerCut(t *testing.T) {
	for _, tc := range []struct {
		mode       string
		echoes     int    // OnEcho of the new client's first request
		beforeNext string // the replay before that request ("": none)
		afterNext  string // the replay after it
	}{
		{sim.ReplayChallenge, 1, coap.ReplayChallenged, coap.ReplayRejected},
		{sim.ReplayAccept, 0, "", coap.ReplayAccepted},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			b := newOSCOREBoard(t, sim.Config{ReplayAfterBoot: tc.mode})
			ctx := context.Background()
			c := b.client(t, nil)
			getBoot(t, c)
			getBoot(t, c)
			cp := c.Capture()
			if cp == nil {
				t.Fatal("nothing captured")
			}
			c.Close()

			b.powerCycle(t, sim.ModeApp)
			// Each replay comes from a client of its own, from another
			// port: the board's CoAP layer answers a copy of a message it
			// has answered from the same endpoint with the same answer,
			// acting on nothing, as RFC 7252 §4.5 has it.
			replay := func(when, want string) {
				t.Helper()
				got, err := b.client(t, nil).Replay(ctx, cp, time.Second)
				if err != nil || got != want {
					t.Fatalf("replay of %v %s: %q, %v; want %q", cp, when, got, err, want)
				}
			}
			if tc.beforeNext != "" {
				replay("right after the boot", tc.beforeNext)
			}
			var log nonceLog
			c2 := b.client(t, &log)
			if boot := getBoot(t, c2); boot.Boots != 2 {
				t.Fatalf("boot report %+v after one power cycle", boot)
			}
			if log.echoes != tc.echoes {
				t.Fatalf("the new client's first request: OnEcho fired %d times, want %d", log.echoes, tc.echoes)
			}
			replay("after a fresh request", tc.afterNext)
			replay("once more", coap.ReplayRejected)
			// The client goes on as before.
			getBoot(t, c2)
			if log.echoes != tc.echoes {
				t.Fatalf("OnEcho fired %d times, want %d", log.echoes, tc.echoes)
			}
			log.distinct(t)
		})
	}
}

// TestOSCOREReplayWithoutContext: a request captured from an OSCORE
// client and sent again by a client that was given no OSCORE context is
// still classified (with the captured request's context), not a crash.
func TestOSCOREReplayWithoutContext(t *testing.T) {
	b := newOSCOREBoard(t, sim.Config{ReplayAfterBoot: sim.ReplayAccept})
	c := b.client(t, nil)
	getBoot(t, c)
	cp := c.Capture()
	b.powerCycle(t, sim.ModeApp)
	plain := dial(t, b.OSCOREAddr(), nil, fastTx)
	got, err := plain.Replay(context.Background(), cp, time.Second)
	if err != nil || got != coap.ReplayAccepted {
		t.Fatalf("replay: %q, %v; want %q", got, err, coap.ReplayAccepted)
	}
}

// TestOSCORESSNPersistNone: a board whose recovery bootloader restores
// the sender sequence number cached at prepare (SSNPersist "none") and
// persists nothing answers the Echo challenge of each boot in recovery
// under the same Partial IV, over a new Echo value: OnNonce shows one
// nonce over two ciphertexts. With the default "window" it never does.
func TestOSCORESSNPersistNone(t *testing.T) {
	for _, tc := range []struct {
		persist string
		reuse   bool
	}{
		{sim.SSNWindow, false},
		{sim.SSNNone, true},
	} {
		t.Run(tc.persist, func(t *testing.T) {
			b := newOSCOREBoard(t, sim.Config{SSNPersist: tc.persist})
			ctx := context.Background()
			var log nonceLog
			c := b.client(t, &log)
			img := randomBytes(8<<10, 3)
			digest := sha256.Sum256(img)
			body := fwproto.MustMarshal(fwproto.Prepare{Size: uint32(len(img)), Digest: digest[:], SZX: 6, Tag: []byte{7}})
			boots := b.Boots()
			r, err := c.Do(ctx, coap.Request{Code: codes.POST, Path: fwproto.PathPrepare, Payload: body, ContentFormat: int(fwproto.MediaTypeCBOR)})
			if err != nil || r.Code != codes.Changed {
				t.Fatalf("prepare: %v %v", r, err)
			}
			c.Close()
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if m, err := b.WaitBoot(wctx, boots); err != nil || m != sim.ModeRecovery {
				t.Fatalf("after prepare: %s, %v", m, err)
			}
			for i := range 2 {
				if i > 0 {
					b.powerCycle(t, sim.ModeRecovery)
				}
				c := b.client(t, &log)
				r, err := c.Get(ctx, fwproto.PathState)
				if err != nil || r.Code != codes.Content {
					t.Fatalf("boot %d in recovery: GET state: %v %v", i, r, err)
				}
				c.Close()
			}
			if log.echoes != 3 {
				t.Fatalf("OnEcho fired %d times, want 3 (one a boot)", log.echoes)
			}
			reused := ""
			seen := map[string]uint64{}
			for _, n := range log.nonces {
				k := string(n.KeyFP[:]) + string(n.Nonce)
				if h, ok := seen[k]; ok && h != n.CTHash {
					reused = n.Label
				}
				seen[k] = n.CTHash
			}
			if got := reused != ""; got != tc.reuse {
				t.Fatalf("nonce reused over another ciphertext: %v (%s), want %v", got, reused, tc.reuse)
			}
		})
	}
}

// TestOSCOREPlainRequestRefused: the OSCORE endpoint answers a request
// without OSCORE 4.01 Unauthorized, without an Echo to retry with.
func TestOSCOREPlainRequestRefused(t *testing.T) {
	b := newOSCOREBoard(t, sim.Config{})
	c := dial(t, b.OSCOREAddr(), nil, fastTx)
	echoes := 0
	c.OnEcho = func() { echoes++ }
	r, err := c.Get(context.Background(), fwproto.PathBoot)
	if err != nil {
		t.Fatal(err)
	}
	if r.Code != codes.Unauthorized || r.Echo != nil || echoes != 0 {
		t.Fatalf("plain GET %s: %v, Echo %x, OnEcho %d; want 4.01 without Echo", fwproto.PathBoot, r.Code, r.Echo, echoes)
	}
}
