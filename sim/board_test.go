package sim

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
)

func buildImage(t testing.TB, version string, seq uint32, size int, seed int64) []byte {
	t.Helper()
	img, err := fwimage.Build(fwimage.Spec{Version: version, Seq: seq, Size: size, Seed: seed}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// newBoard makes a board with baseline, powered and running its app.
func newBoard(t testing.TB, cfg Config, baseline []byte) *Board {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "t-" + strings.ReplaceAll(t.Name(), "/", "-")
	}
	if cfg.DTLSAddr == "" {
		cfg.DTLSAddr = "-"
	}
	if cfg.GDBAddr == "" {
		cfg.GDBAddr = "-"
	}
	if cfg.UDPAddrs == nil {
		cfg.UDPAddrs = []string{"127.0.0.1:0"}
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.FactoryProgram(baseline); err != nil {
		t.Fatal(err)
	}
	powerOn(t, b, ModeApp)
	return b
}

func powerOn(t testing.TB, b *Board, want ...string) string {
	t.Helper()
	b.SetPower(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := b.WaitMode(ctx, ModeApp, ModeRecovery, ModeHalted)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) > 0 && m != want[0] {
		t.Fatalf("board booted into %s, want %s; cuts %+v", m, want[0], b.Cuts())
	}
	return m
}

var fastTx = coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 2}

func dial(t testing.TB, b *Board) *fwclient.Client {
	t.Helper()
	udp, _ := b.Endpoints()
	c, err := fwclient.Dial(context.Background(), udp[0], nil, fastTx)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cutCtx is cancelled when the board loses power, as a bench's session is
// told by its power switch.
func cutCtx(b *Board) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	go func() {
		if _, err := b.WaitMode(ctx, ModeOff); err == nil {
			cancel()
		}
	}()
	return ctx, cancel
}

// resumable runs (or resumes) the resumable update of img on b until the
// new image runs, the board loses power, or something fails. It reports
// where the recovery bootloader asked to resume, per attempt.
func resumable(t testing.TB, b *Board, img []byte, szx uint8, tag []byte) (resumedAt []uint32, err error) {
	ctx, cancel := cutCtx(b)
	defer cancel()
	c := dial(t, b)
	defer c.Close()
	digest := sha256.Sum256(img)
	p := fwproto.Prepare{Size: uint32(len(img)), Digest: digest[:], SZX: szx, Tag: tag}
	if b.Mode() == ModeApp {
		v, err := c.Version(ctx)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(v.Digest, digest[:]) {
			return nil, nil // already running
		}
		boots := b.Boots()
		if err := c.Prepare(ctx, p); err != nil {
			return nil, err
		}
		if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeRecovery {
			return nil, fmt.Errorf("after prepare: %s, %v", m, err)
		}
	}
	st, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	if !fwproto.SameTransfer(st, p) {
		return nil, fmt.Errorf("recovery reports another transfer: %+v", st)
	}
	resumedAt = append(resumedAt, st.Next)
	n := fwproto.Blocks(p.Size, szx)
	boots := b.Boots()
	for num := st.Next; num < n; num++ {
		_, err := c.SendBlock(ctx, fwproto.PathFW, img, num, szx, tag)
		var rs *fwclient.ResyncError
		if errors.As(err, &rs) {
			num = rs.State.Next - 1
			resumedAt = append(resumedAt, rs.State.Next)
			continue
		}
		if err != nil {
			return resumedAt, err
		}
	}
	m, err := b.WaitBoot(ctx, boots)
	if err != nil {
		return resumedAt, err
	}
	if m != ModeApp {
		return resumedAt, fmt.Errorf("board in %s after the last block", m)
	}
	return resumedAt, nil
}

func runningDigest(t testing.TB, b *Board) [32]byte {
	t.Helper()
	c := dial(t, b)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := c.Version(ctx)
	if err != nil {
		t.Fatalf("version: %v", err)
	}
	var d [32]byte
	copy(d[:], v.Digest)
	return d
}

func TestResumableUpdateNoCut(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	img := buildImage(t, "2.0.0", 2, 20<<10+123, 2)
	b := newBoard(t, Config{}, base)
	at, err := resumable(t, b, img, 6, []byte{7})
	if err != nil {
		t.Fatal(err)
	}
	if len(at) != 1 || at[0] != 0 {
		t.Errorf("resumed at %v, want [0]", at)
	}
	if runningDigest(t, b) != sha256.Sum256(img) {
		t.Fatal("new image not running")
	}
	ctr, _ := b.readCounter()
	if ctr != 2 {
		t.Errorf("anti-rollback counter %d, want 2", ctr)
	}
}

// TestPowerCutSweep cuts power at every flash operation of a whole
// update, in the manner of MCUboot's simulator, and checks after each cut
// that the recovery bootloader resumes at the first block not durably
// written and that the new image finally runs. It never bricks.
func TestPowerCutSweep(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		size   int
		szx    uint8
		stride int // 1: every operation
		random int // extra random cut points
	}{
		{"small-every-op", Config{}, 1024, 4, 1, 0},
		{"stm32f4-align8-erased0", Config{Layout: "stm32f4", FlashSize: 1 << 20, WriteAlign: 8, ErasedZero: true}, 1024, 3, 3, 0},
		{"large-stride", Config{}, 96 << 10, 6, 997, 24},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.stride == 1 {
				t.Skip("every-op sweep skipped in -short")
			}
			base := buildImage(t, "1.0.0", 1, 4<<10, 1)
			img := buildImage(t, "2.0.0", 2, tc.size, 2)
			tag := []byte{0xA1, 0x05}
			b := newBoard(t, tc.cfg, base)
			bs := fwproto.BlockSize(tc.szx)
			nblocks := fwproto.Blocks(uint32(len(img)), tc.szx)

			// Count the operations of one whole update.
			ops0 := b.Flash().Ops()
			if _, err := resumable(t, b, img, tc.szx, tag); err != nil {
				t.Fatal(err)
			}
			total := b.Flash().Ops() - ops0
			t.Logf("one update of %d bytes in %d-byte blocks: %d flash operations", len(img), bs, total)

			points := []uint64{}
			for k := uint64(1); k <= total; k += uint64(tc.stride) {
				points = append(points, k)
			}
			rng := rand.New(rand.NewPCG(42, uint64(len(img))))
			for i := 0; i < tc.random; i++ {
				points = append(points, 1+rng.Uint64N(total))
			}
			resumes := 0
			for _, k := range points {
				b.SetPower(false)
				if err := b.FactoryProgram(base); err != nil {
					t.Fatal(err)
				}
				powerOn(t, b, ModeApp)
				start := b.Flash().Ops()
				b.CutAtFlashOp(start + k)
				_, err := resumable(t, b, img, tc.szx, tag)
				if err == nil && b.Powered() {
					b.CutAtFlashOp(0)
					if b.Flash().Ops()-start < k {
						t.Fatalf("op %d: update finished in %d ops without reaching the cut", k, b.Flash().Ops()-start)
					}
					continue // the cut point was after the last useful op
				}
				cuts := b.Cuts()
				cut := cuts[len(cuts)-1]
				for attempt := 0; ; attempt++ {
					if attempt > 3 {
						t.Fatalf("op %d: update not finished after %d attempts", k, attempt)
					}
					mode := powerOn(t, b)
					if mode == ModeHalted {
						t.Fatalf("op %d: inplace-recovery bricked (cut %+v)", k, cut)
					}
					if mode == ModeRecovery {
						// Resume point: every block below next is in flash,
						// and no acknowledged block is asked for again.
						c := dial(t, b)
						st, err := c.State(context.Background())
						c.Close()
						if err != nil {
							t.Fatalf("op %d: state: %v", k, err)
						}
						if int64(st.Next) < cut.LastAcked+1 {
							t.Fatalf("op %d: resumes at %d but block %d was acknowledged", k, st.Next, cut.LastAcked)
						}
						if cut.Block >= 0 && int64(st.Next) > cut.Block+1 {
							t.Fatalf("op %d: resumes at %d, beyond block %d being written at the cut", k, st.Next, cut.Block)
						}
						durable := min(int(st.Next)*bs, len(img))
						got := make([]byte, durable)
						b.Flash().Read(b.Layout().AppStart, got)
						if !bytes.Equal(got, img[:durable]) {
							t.Fatalf("op %d: next=%d but blocks below it are not in flash", k, st.Next)
						}
						resumes++
					}
					if _, err := resumable(t, b, img, tc.szx, tag); err != nil {
						t.Fatalf("op %d: after cut %+v: %v", k, cut, err)
					}
					break
				}
				if runningDigest(t, b) != sha256.Sum256(img) {
					t.Fatalf("op %d: new image not running", k)
				}
			}
			t.Logf("%d cut points over %d blocks, %d resumed in recovery, zero bricks", len(points), nblocks, resumes)
			if resumes == 0 {
				t.Fatal("no cut landed in recovery: the sweep did not exercise resume")
			}
		})
	}
}

// TestCutAfterBlockResumesNext cuts power right after block N is
// acknowledged, from the power input as a bench would: the recovery
// bootloader must ask for N+1, so nothing is sent twice.
func TestCutAfterBlockResumesNext(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 4<<10, 1)
	img := buildImage(t, "2.0.0", 2, 16<<10, 3)
	b := newBoard(t, Config{}, base)
	c := dial(t, b)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := sha256.Sum256(img)
	tag := []byte{1}
	boots := b.Boots()
	if err := c.Prepare(ctx, fwproto.Prepare{Size: uint32(len(img)), Digest: d[:], SZX: 5, Tag: tag}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.WaitBoot(ctx, boots); m != ModeRecovery {
		t.Fatal(m, err)
	}
	for n := uint32(0); n <= 9; n++ {
		if _, err := c.SendBlock(ctx, fwproto.PathFW, img, n, 5, tag); err != nil {
			t.Fatal(err)
		}
	}
	b.SetPower(false)
	cut := b.Cuts()[0]
	if cut.LastAcked != 9 || cut.Block != -1 || cut.Flash.Kind != "idle" {
		t.Errorf("board's cut record %+v, want last acked 9, idle", cut)
	}
	powerOn(t, b, ModeRecovery)
	c.Close()
	c = dial(t, b) // a bench reconnects after a power cycle
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Next != 10 {
		t.Fatalf("resume at %d, want 10", st.Next)
	}
	// A block above next gets 4.08 with the state; one below is
	// acknowledged again without a rewrite.
	if _, err := c.SendBlock(ctx, fwproto.PathFW, img, 12, 5, tag); !errors.Is(err, fwclient.ErrResync) {
		t.Errorf("block ahead: %v", err)
	}
	wear := b.Flash().Wear()
	if _, err := c.SendBlock(ctx, fwproto.PathFW, img, 3, 5, tag); err != nil {
		t.Errorf("block already written: %v", err)
	}
	if _, err := c.SendBlock(ctx, fwproto.PathFW, img, 10, 5, []byte{9}); !errors.Is(err, fwclient.ErrResync) {
		t.Errorf("wrong tag: %v", err)
	}
	if fmt.Sprint(wear) != fmt.Sprint(b.Flash().Wear()) {
		t.Error("re-acknowledging an old block erased flash")
	}
}

func TestBadImageNeverBoots(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 4<<10, 1)
	good := buildImage(t, "2.0.0", 2, 4<<10, 3)
	t.Run("signature", func(t *testing.T) {
		b := newBoard(t, Config{}, base)
		bad := append([]byte(nil), good...)
		bad[len(bad)-1] ^= 1 // payload changed after signing
		_, err := resumable(t, b, bad, 4, []byte{1})
		var se *coap.StatusError
		if !errors.As(err, &se) {
			t.Fatalf("err %v, want a device error", err)
		}
		if b.Mode() != ModeRecovery {
			t.Fatalf("mode %s", b.Mode())
		}
		// Stays in recovery across power cycles: never boots the bad image.
		b.SetPower(false)
		powerOn(t, b, ModeRecovery)
		c := dial(t, b)
		defer c.Close()
		st, _ := c.State(context.Background())
		if st.State != fwproto.StateFailed {
			t.Errorf("state %q", st.State)
		}
		// A good image recovers it.
		if _, err := resumable(t, b, good, 4, []byte{2}); err == nil {
			t.Fatal("recovery accepted blocks without a new prepare")
		}
		c2 := dial(t, b)
		defer c2.Close()
		d := sha256.Sum256(good)
		boots := b.Boots()
		if err := c2.Prepare(context.Background(), fwproto.Prepare{Size: uint32(len(good)), Digest: d[:], SZX: 4, Tag: []byte{2}}); err != nil {
			t.Fatal(err)
		}
		if m, err := b.WaitBoot(context.Background(), boots); m != ModeRecovery {
			t.Fatal(m, err)
		}
		if _, err := resumable(t, b, good, 4, []byte{2}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("rollback", func(t *testing.T) {
		b := newBoard(t, Config{}, buildImage(t, "3.0.0", 3, 4<<10, 1))
		old := buildImage(t, "2.0.0", 2, 4<<10, 3)
		_, err := resumable(t, b, old, 4, []byte{1})
		if err == nil || !strings.Contains(err.Error(), "rollback") {
			t.Fatalf("rollback accepted: %v", err)
		}
	})
	t.Run("too big", func(t *testing.T) {
		b := newBoard(t, Config{}, base)
		c := dial(t, b)
		defer c.Close()
		d := sha256.Sum256(good)
		err := c.Prepare(context.Background(), fwproto.Prepare{Size: 1 << 20, Digest: d[:], SZX: 6, Tag: []byte{1}})
		var se *coap.StatusError
		if !errors.As(err, &se) || se.Code.String() != "RequestEntityTooLarge" {
			t.Fatalf("oversized prepare: %v", err)
		}
	})
}

// TestTornWritesDetected: the bootloader must never boot a torn image. Cut
// a naive update at many points and check that every boot is either the
// old image intact... which naive cannot keep: halted, never a torn boot.
func TestTornWritesDetected(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	img := buildImage(t, "2.0.0", 2, 8<<10, 5)
	b := newBoard(t, Config{Strategy: NaiveInplace}, base)
	for _, k := range []uint64{1, 2, 3, 50, 500, 1000, 2047} {
		b.SetPower(false)
		b.FactoryProgram(base)
		powerOn(t, b, ModeApp)
		b.CutAtFlashOp(b.Flash().Ops() + k)
		err := naiveUpload(t, b, img, 6)
		if err == nil && b.Powered() {
			t.Fatalf("op %d: upload finished before the cut", k)
		}
		m := powerOn(t, b)
		if m == ModeApp {
			t.Fatalf("op %d: a torn image booted", k)
		}
		if m != ModeHalted {
			t.Fatalf("op %d: mode %s", k, m)
		}
	}
}

func naiveUpload(t testing.TB, b *Board, img []byte, szx uint8) error {
	ctx, cancel := cutCtx(b)
	defer cancel()
	c := dial(t, b)
	defer c.Close()
	n := fwproto.Blocks(uint32(len(img)), szx)
	for num := uint32(0); num < n; num++ {
		if _, err := c.SendBlock(ctx, fwproto.PathFW, img, num, szx, nil); err != nil {
			return err
		}
	}
	return nil
}

// gdbFlash is a minimal GDB RSP client: erase, write and reset over the
// board's probe port, as a bench's probe driver does.
func gdbFlash(t testing.TB, addr string, base uint32, img []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(conn)
	cmd := func(body []byte) string {
		var sum byte
		for _, c := range body {
			sum += c
		}
		fmt.Fprintf(conn, "$%s#%02x", body, sum)
		for {
			c, err := r.ReadByte()
			if err != nil {
				t.Fatalf("gdb: %v", err)
			}
			if c == '$' {
				break
			}
		}
		reply, err := r.ReadString('#')
		if err != nil {
			t.Fatal(err)
		}
		r.Discard(2)
		conn.Write([]byte("+"))
		return strings.TrimSuffix(reply, "#")
	}
	if rep := cmd([]byte("QStartNoAckMode")); rep != "OK" {
		t.Fatalf("no-ack: %q", rep)
	}
	r.Discard(r.Buffered())
	if rep := cmd(fmt.Appendf(nil, "vFlashErase:%x,%x", base, (len(img)+4095)/4096*4096)); rep != "OK" {
		t.Fatalf("vFlashErase: %q", rep)
	}
	for off := 0; off < len(img); off += 1024 {
		chunk := img[off:min(off+1024, len(img))]
		var esc []byte
		for _, c := range chunk {
			if c == '#' || c == '$' || c == '}' || c == '*' {
				esc = append(esc, '}', c^0x20)
			} else {
				esc = append(esc, c)
			}
		}
		if rep := cmd(append(fmt.Appendf(nil, "vFlashWrite:%x:", base+uint32(off)), esc...)); rep != "OK" {
			t.Fatalf("vFlashWrite at %#x: %q", off, rep)
		}
	}
	if rep := cmd([]byte("vFlashDone")); rep != "OK" {
		t.Fatalf("vFlashDone: %q", rep)
	}
	hexReset := fmt.Sprintf("%x", "reset")
	rep := cmd([]byte("qRcmd," + hexReset))
	for strings.HasPrefix(rep, "O") && rep != "OK" {
		rep = cmd(nil)
	}
}

// TestNaiveBricksAndReflash: a cut mid-write bricks a naive-inplace board
// (no console app line, no CoAP), and reflashing over the GDB port brings
// it back.
func TestNaiveBricksAndReflash(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	img := buildImage(t, "2.0.0", 2, 16<<10, 5)
	b := newBoard(t, Config{Strategy: NaiveInplace, GDBAddr: "127.0.0.1:0", FlashBase: 0x08000000}, base)
	b.CutAtFlashOp(b.Flash().Ops() + 900)
	if err := naiveUpload(t, b, img, 6); err == nil {
		t.Fatal("upload finished before the cut")
	}
	powerOn(t, b, ModeHalted)
	udp, _ := b.Endpoints()
	c, _ := fwclient.Dial(context.Background(), udp[0], nil, coap.Transmission{AckTimeout: 50 * time.Millisecond, MaxRetransmit: 1})
	if _, err := c.Boot(context.Background()); err == nil {
		t.Fatal("a bricked board answered CoAP")
	}
	c.Close()
	gdbFlash(t, b.GDBAddr(), 0x08000000+uint32(b.Layout().AppStart), img)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.WaitMode(ctx, ModeApp); err != nil {
		t.Fatal(err)
	}
	if runningDigest(t, b) != sha256.Sum256(img) {
		t.Fatal("reflashed image not running")
	}
	// Naive update without a cut works end to end.
	img3 := buildImage(t, "3.0.0", 3, 12<<10, 7)
	boots := b.Boots()
	if err := naiveUpload(t, b, img3, 4); err != nil {
		t.Fatal(err)
	}
	if m, err := b.WaitBoot(ctx, boots); m != ModeApp {
		t.Fatal(m, err)
	}
	if runningDigest(t, b) != sha256.Sum256(img3) {
		t.Fatal("naive update did not boot")
	}
}
