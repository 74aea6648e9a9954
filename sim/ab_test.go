package sim

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim/flash"
)

// abConfig is a small board for the A/B tests: 32 KiB of 1 KiB sectors,
// write unit 8, instant flash.
func abConfig(s Strategy, confirm string) Config {
	return Config{Strategy: s, Confirm: confirm, FlashSize: 32 << 10, SectorSize: 1 << 10, WriteAlign: 8}
}

// settled waits until the board has booted more than after times and
// settled (app, recovery or halted), or lost power.
func settled(t testing.TB, b *Board, after uint32) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		b.mu.Lock()
		m, n, ch := b.mode, b.boots, b.changed
		b.mu.Unlock()
		if m == ModeOff || n > after && (m == ModeApp || m == ModeRecovery || m == ModeHalted) {
			return m
		}
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("board %s: not settled after boot %d: %s, %d boots", b.Name(), after, m, n)
		}
	}
}

// running names what the board runs: "new" (img), "old" (base),
// "halted", "recovery", or "other".
func running(b *Board, base, img []byte) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.mode == ModeHalted:
		return "halted"
	case b.mode == ModeRecovery:
		return "recovery"
	case b.mode != ModeApp || b.ram == nil:
		return "mode " + b.mode
	case b.ram.appDigest == sha256.Sum256(img):
		return "new"
	case b.ram.appDigest == sha256.Sum256(base):
		return "old"
	}
	return "other"
}

// upload sends img to /fw in plain Block1 blocks and waits for the
// board to settle after the reboot that follows.
func upload(t testing.TB, b *Board, img []byte, szx uint8) string {
	t.Helper()
	boots := b.Boots()
	if err := naiveUpload(t, b, img, szx); err != nil {
		t.Fatalf("upload: %v", err)
	}
	return settled(t, b, boots)
}

func TestABUpdate(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	img := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	for _, tc := range []struct {
		s       Strategy
		confirm string
		want    string
	}{
		{ABOverwrite, "", "new"},
		{ABSwap, "", "new"},
		{ABSwap, ConfirmNever, "old"},
		{ABDirect, "", "new"},
		{ABDirect, ConfirmNever, "old"},
	} {
		t.Run(string(tc.s)+"-"+tc.confirm, func(t *testing.T) {
			b := newBoard(t, abConfig(tc.s, tc.confirm), base)
			if m := upload(t, b, img, 6); m != ModeApp {
				t.Fatalf("after the update: %s", m)
			}
			if got := running(b, base, img); got != tc.want {
				t.Fatalf("runs %s, want %s", got, tc.want)
			}
			if runningDigest(t, b) != sha256.Sum256(map[string][]byte{"new": img, "old": base}[tc.want]) {
				t.Fatal("GET /fw/version digest is not the running image's")
			}
			// Settled: a power cycle boots the same image, and nothing is
			// pending any more.
			b.SetPower(false)
			powerOn(t, b, ModeApp)
			if got := running(b, base, img); got != tc.want {
				t.Fatalf("after a power cycle runs %s, want %s", got, tc.want)
			}
			ctr, _ := b.readCounter()
			if want := map[string]uint32{"new": 2, "old": 1}[tc.want]; ctr != want {
				t.Errorf("anti-rollback counter %d, want %d", ctr, want)
			}
			if tc.s == ABSwap {
				if _, _, ok := b.readSwapStatus(); ok {
					t.Error("swap status still valid")
				}
				pt := b.readTrailer(b.lay.Primary)
				if !pt.magic || !pt.imageOK {
					t.Errorf("primary trailer %s, want magic+image_ok", pt)
				}
			}
		})
	}
}

func TestABPrepareRefused(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	b := newBoard(t, abConfig(ABSwap, ""), base)
	c := dial(t, b)
	defer c.Close()
	d := sha256.Sum256(base)
	err := c.Prepare(context.Background(), fwproto.Prepare{Size: 100, Digest: d[:], SZX: 6, Tag: []byte{1}})
	var se *coap.StatusError
	if !errors.As(err, &se) || se.Code.String() != "NotFound" || !strings.Contains(err.Error(), "secondary slot") {
		t.Fatalf("prepare: %v", err)
	}
	// An image larger than the slot is refused at block 0 with its Size1.
	big := buildImage(t, "2.0.0", 2, b.Layout().AppSize()+1, 3)
	err = naiveUpload(t, b, big, 6)
	if !errors.As(err, &se) || se.Code.String() != "RequestEntityTooLarge" {
		t.Fatalf("oversized upload: %v", err)
	}
}

func TestABNeedsUniformLayout(t *testing.T) {
	_, err := New(Config{Name: "ab-f4", Strategy: ABSwap, Layout: "stm32f4", FlashSize: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "ab-f4") || !strings.Contains(err.Error(), "uniform") {
		t.Fatalf("stm32f4 A/B board: %v", err)
	}
	_, err = New(Config{Name: "x", Strategy: "ab-move"})
	if err == nil || !strings.Contains(err.Error(), "ab-overwrite, ab-swap or ab-direct") {
		t.Fatalf("unknown strategy: %v", err)
	}
}

// TestABDownloadCut cuts power in the middle of a download: the old
// image keeps running, and the next download succeeds.
func TestABDownloadCut(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	img := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	for _, s := range []Strategy{ABOverwrite, ABSwap, ABDirect} {
		t.Run(string(s), func(t *testing.T) {
			b := newBoard(t, abConfig(s, ""), base)
			fired := make(chan CutRecord, 1)
			b.ArmCut(200, func(r CutRecord) { fired <- r })
			if err := naiveUpload(t, b, img, 6); err == nil {
				t.Fatal("upload finished before the cut")
			}
			rec := <-fired
			if rec.Cause != "flash-op" || rec.Mode != ModeApp || rec.Block != 1 || rec.LastAcked != 0 {
				t.Errorf("cut record %+v, want block 1 being written in app mode", rec)
			}
			powerOn(t, b, ModeApp)
			if got := running(b, base, img); got != "old" {
				t.Fatalf("after a cut download runs %s", got)
			}
			if m := upload(t, b, img, 6); m != ModeApp || running(b, base, img) != "new" {
				t.Fatalf("retried download: %s, runs %s", m, running(b, base, img))
			}
		})
	}
}

// TestABDirectAlternates: ab-direct downloads into the slot it does not
// run from, so successive updates alternate between the slots; an image
// that fails its test is rejected and the other slot runs.
func TestABDirectAlternates(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	v2 := buildImage(t, "2.0.0", 2, 3<<10, 2)
	v3 := buildImage(t, "3.0.0", 3, 2<<10+7, 3)
	b := newBoard(t, abConfig(ABDirect, ""), base)
	upload(t, b, v2, 5)
	if got := running(b, base, v2); got != "new" || b.ram.slot != 1 {
		t.Fatalf("v2: runs %s from slot %d", got, b.ram.slot)
	}
	upload(t, b, v3, 6)
	if got := running(b, v2, v3); got != "new" || b.ram.slot != 0 {
		t.Fatalf("v3: runs %s from slot %d", got, b.ram.slot)
	}
	b.SetPower(false)
	powerOn(t, b, ModeApp)
	if ctr, _ := b.readCounter(); ctr != 3 {
		t.Errorf("counter %d after v3 confirmed, want 3", ctr)
	}
	// v2 left in slot B is below the counter now: never selectable.
	if _, _, err := b.validSlot(b.lay.Secondary); err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Errorf("slot B: %v, want a rollback refusal", err)
	}
}

func TestConfirmSetting(t *testing.T) {
	c, err := configFrom(t, t.TempDir(), benchWith("strategy: ab-swap", "confirm: never"))
	if err != nil || c.Strategy != ABSwap || c.Confirm != ConfirmNever {
		t.Fatalf("%+v %v", c, err)
	}
	if _, err := New(Config{Name: "c", Confirm: "sometimes"}); err == nil || !strings.Contains(err.Error(), "confirm") {
		t.Fatalf("bad confirm: %v", err)
	}
}

func TestLayoutAB(t *testing.T) {
	for _, s := range []Strategy{ABOverwrite, ABSwap, ABDirect} {
		lay, cfg, err := LayoutOf(Config{Name: "l", Strategy: s})
		if err != nil {
			t.Fatal(err)
		}
		ss := cfg.SectorSize
		p, q := lay.Primary, lay.Secondary
		if lay.BootEnd != 16<<10 || lay.Counter != 4 || p.First != 5 || p.Start != 5*ss || lay.AppStart != p.Start || lay.AppEnd != p.End {
			t.Errorf("%s: %+v", s, lay)
		}
		if p.Sectors != q.Sectors || p.Trailer != p.First+p.Sectors || q.First != p.Trailer+1 || q.Trailer != q.First+q.Sectors {
			t.Errorf("%s: slots %+v %+v", s, p, q)
		}
		used := q.Trailer + 1
		if s == ABSwap {
			if lay.Scratch != used || lay.Status != used+1 {
				t.Errorf("%s: scratch %d status %d", s, lay.Scratch, lay.Status)
			}
			used += 2
		} else if lay.Scratch != -1 || lay.Status != -1 {
			t.Errorf("%s: scratch %d status %d", s, lay.Scratch, lay.Status)
		}
		if n := cfg.FlashSize / ss; n-used > 1 || n < used {
			t.Errorf("%s: %d sectors used of %d", s, used, n)
		}
		t.Logf("%s: %d image sectors per slot of %d", s, p.Sectors, cfg.FlashSize/ss)
	}
	// The in-place layout is unchanged.
	lay, _, err := LayoutOf(Config{Name: "l"})
	if err != nil || lay.RecA != 4 || lay.RecB != 5 || lay.Journal != 6 || lay.Counter != 7 || lay.AppStart != 8<<12 || lay.AB() {
		t.Errorf("in-place layout %+v %v", lay, err)
	}
}

func TestFlashStatsAndCost(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	img := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	b := newBoard(t, abConfig(ABSwap, ""), base)
	before := b.FlashStats()
	upload(t, b, img, 6)
	st := b.FlashStats()
	var erases uint32
	for _, e := range st.Erases {
		erases += e
	}
	a := int64(b.Config().WriteAlign)
	if st.Ops != uint64(st.Programmed/a)+uint64(erases) || st.Erased != int64(erases)*1024 || st.Ops <= before.Ops {
		t.Errorf("stats %+v (erases %d)", st, erases)
	}
	if st.Erases[b.lay.Scratch] != 4 {
		t.Errorf("scratch erased %d times, want 4 (one per swapped sector)", st.Erases[b.lay.Scratch])
	}
	if in := b.Info(); in.Flash.Ops != st.Ops || in.Confirm != ConfirmBoot {
		t.Errorf("info %+v", in)
	}
	for _, tc := range []struct {
		s            Strategy
		space, cache int
	}{
		{InplaceRecovery, 4<<10 + 4<<10, (recBodyLen+7)/8*8 + 1},
		{NaiveInplace, 4<<10 + 1<<10, 0},
		{ABOverwrite, 2*(4<<10+1<<10) + 1<<10, 16 + 16},
		{ABDirect, 2*(4<<10+1<<10) + 1<<10, 16 + 16},
		{ABSwap, 2*(4<<10+1<<10) + 3<<10, 16 + 16 + 16 + 3*4*8},
	} {
		b, err := New(Config{Name: "cost", Strategy: tc.s, FlashSize: 32 << 10, SectorSize: 1 << 10, WriteAlign: 8, GDBAddr: "-"})
		if err != nil {
			t.Fatal(err)
		}
		got := b.UpdateCost(3<<10+100, 1024)
		b.Close()
		if got != (UpdateCost{tc.s, tc.space, tc.cache}) {
			t.Errorf("%s: cost %+v, want space %d cache %d", tc.s, got, tc.space, tc.cache)
		}
	}
}

// TestArmCutDisarm: a cut armed with ArmCut and not reached never fires
// after the board loses power another way, and disarming is idempotent.
func TestArmCutDisarm(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	img := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	b := newBoard(t, abConfig(ABOverwrite, ""), base)
	fired := make(chan CutRecord, 1)
	disarm := b.ArmCut(300, func(r CutRecord) { fired <- r })
	b.SetPower(false) // the power the cut was armed for is gone
	powerOn(t, b, ModeApp)
	if m := upload(t, b, img, 6); m != ModeApp || running(b, base, img) != "new" {
		t.Fatalf("update after a stale arm: %s, %s", m, running(b, base, img))
	}
	select {
	case r := <-fired:
		t.Fatalf("a cut armed before a power cycle fired: %+v", r)
	default:
	}
	disarm()
	disarm()
	// Disarmed before it is reached: no cut.
	disarm = b.ArmCut(2, func(r CutRecord) { fired <- r })
	disarm()
	b.SetPower(false)
	b.FactoryProgram(base)
	powerOn(t, b, ModeApp)
	upload(t, b, img, 6)
	for _, c := range b.Cuts() {
		if c.Cause != "power-input" {
			t.Fatalf("a disarmed cut fired: %+v", c)
		}
	}
	// Fired: notify gets the record; disarm afterwards is harmless.
	b.SetPower(false)
	b.FactoryProgram(base)
	powerOn(t, b, ModeApp)
	disarm = b.ArmCut(3, func(r CutRecord) { fired <- r })
	if err := naiveUpload(t, b, img, 6); err == nil {
		t.Fatal("upload finished before the cut")
	}
	select {
	case r := <-fired:
		if r.Cause != "flash-op" || r.Flash.Kind != flash.OpProgram || !r.Flash.Torn {
			t.Errorf("cut record %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("notify not called")
	}
	disarm()
	disarm()
}

// TestABConsole follows the bootloader's decisions on the console.
func TestABConsole(t *testing.T) {
	v2 := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{abConfig(ABOverwrite, ""), []string{
			"APP received 3172 bytes into the secondary slot; marked pending (test); rebooting",
			"BL overwrite: copying 4 sectors from the secondary slot (v2.0.0 seq=2)",
			"BL overwrite: done",
			"APP v2.0.0 seq=2 mode=app reset=software",
		}},
		{abConfig(ABSwap, ConfirmNever), []string{
			"APP received 3172 bytes into the secondary slot",
			"BL swap: test, 4 sectors (v2.0.0 seq=2 from the secondary slot)",
			"BL swap: test complete; primary trailer magic+copy_done",
			"APP v2.0.0 self-test failed: not confirming; resetting",
			"BL revert: v2.0.0 seq=2 was not confirmed; swapping back, 4 sectors",
			"BL swap: revert complete; primary trailer magic+image_ok",
			"APP v1.0.0 seq=1 mode=app",
		}},
		{abConfig(ABDirect, ""), []string{
			"APP received 3172 bytes into slot B; marked pending (test); rebooting",
			"BL direct-xip: booting slot B v2.0.0 (test)",
			"APP v2.0.0 confirmed (image_ok set in slot B)",
			"APP v2.0.0 seq=2 mode=app",
		}},
	} {
		t.Run(string(tc.cfg.Strategy), func(t *testing.T) {
			tc.cfg.Name = "con-" + string(tc.cfg.Strategy)
			b := newConsoleBoard(t, tc.cfg)
			r := openConsole(t, b, b.ConsoleLink())
			powerOn(t, b, ModeApp)
			r.expect(t, "APP v1.0.0")
			boots := b.Boots()
			if err := naiveUpload(t, b, v2, 6); err != nil {
				t.Fatal(err)
			}
			settled(t, b, boots)
			for _, l := range r.expect(t, tc.want...) {
				t.Log(l)
			}
		})
	}
}
