package sim

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwproto"
)

// sweeper cuts power at one flash operation of an update's last stage —
// from the moment the last block is sent until the new image runs — and
// classifies what the board runs once powered again, in the manner of
// MCUboot's simulator.
type sweeper struct {
	t         *testing.T
	b         *Board
	base, img []byte
	szx       uint8
	tag       []byte
	// pending is the flash right after the last block was taken, for the
	// strategies whose bootloader does the rest (nil: the whole sweep goes
	// over CoAP).
	pending []byte
}

// trace runs fn and returns how many flash operations it made, the
// numbers (from 1) of those that were erases, and the number of the first
// operation of each boot that made any.
func (sw *sweeper) trace(fn func()) (ops uint64, erases, boots []uint64) {
	b := sw.b
	var mu sync.Mutex
	start := b.fl.Ops()
	var callOps uint64
	var callErased int64
	lastBoot := b.Boots()
	b.fl.OnBusy(func(on bool) {
		st := b.fl.Stats()
		n := b.Boots()
		mu.Lock()
		defer mu.Unlock()
		if on {
			callOps, callErased = st.Ops, st.Erased
			if n != lastBoot {
				boots, lastBoot = append(boots, st.Ops+1-start), n
			}
		} else if st.Erased > callErased {
			erases = append(erases, callOps+1-start)
		}
	})
	fn()
	b.fl.OnBusy(func(on bool) {
		if b.busyPin != nil {
			b.busyPin.set(on)
		}
	})
	mu.Lock()
	defer mu.Unlock()
	return b.fl.Ops() - start, erases, boots
}

// points are the operations a sweep cuts at: every one from full on
// (0: from the first), and before that, or everywhere in -short, every
// 7th and every erase.
func points(total uint64, erases []uint64, full uint64) []uint64 {
	var ps []uint64
	for k := uint64(1); k <= total; k++ {
		sparse := testing.Short() || full == 0 || k < full
		if !sparse || k%7 == 1 || slices.Contains(erases, k) {
			ps = append(ps, k)
		}
	}
	return ps
}

// ready factory-programs the baseline, boots it and sends every block
// but the last (inplace-recovery: after preparing the transfer). It
// returns the last block's number.
func (sw *sweeper) ready() uint32 {
	t, b := sw.t, sw.b
	b.SetPower(false)
	if err := b.FactoryProgram(sw.base); err != nil {
		t.Fatal(err)
	}
	powerOn(t, b, ModeApp)
	ctx, cancel := cutCtx(b)
	defer cancel()
	c := dial(t, b)
	defer c.Close()
	n := fwproto.Blocks(uint32(len(sw.img)), sw.szx)
	if b.cfg.Strategy == InplaceRecovery {
		d := sha256.Sum256(sw.img)
		boots := b.Boots()
		if err := c.Prepare(ctx, fwproto.Prepare{Size: uint32(len(sw.img)), Digest: d[:], SZX: sw.szx, Tag: sw.tag}); err != nil {
			t.Fatal(err)
		}
		if m, err := b.WaitBoot(ctx, boots); m != ModeRecovery {
			t.Fatal(m, err)
		}
	}
	for num := uint32(0); num < n-1; num++ {
		if _, err := c.SendBlock(ctx, fwproto.PathFW, sw.img, num, sw.szx, sw.tag); err != nil {
			t.Fatalf("block %d: %v", num, err)
		}
	}
	return n - 1
}

// sendLast sends the last block with a cut armed k operations on (0:
// none) and waits for the board to settle or lose power.
func (sw *sweeper) sendLast(last uint32, k uint64) (cut *CutRecord) {
	t, b := sw.t, sw.b
	ctx, cancel := cutCtx(b)
	defer cancel()
	c := dial(t, b)
	defer c.Close()
	boots := b.Boots()
	fired := make(chan CutRecord, 1)
	if k > 0 {
		disarm := b.ArmCut(k, func(r CutRecord) { fired <- r })
		defer disarm()
	}
	c.SendBlock(ctx, fwproto.PathFW, sw.img, last, sw.szx, sw.tag)
	if settled(t, b, boots) != ModeOff {
		return nil
	}
	select {
	case r := <-fired:
		return &r
	case <-time.After(5 * time.Second):
		t.Fatalf("op %d: the board lost power but notify was not called", k)
	}
	return nil
}

// bootPending restores the flash to sw.pending and powers on with a cut
// armed k operations on (0: none).
func (sw *sweeper) bootPending(k uint64) (cut *CutRecord) {
	return sw.bootFrom(sw.pending, k)
}

func (sw *sweeper) bootFrom(image []byte, k uint64) (cut *CutRecord) {
	t, b := sw.t, sw.b
	b.SetPower(false)
	if err := b.fl.Load(0, image); err != nil {
		t.Fatal(err)
	}
	boots := b.Boots()
	fired := make(chan CutRecord, 1)
	if k > 0 {
		disarm := b.ArmCut(k, func(r CutRecord) { fired <- r })
		defer disarm()
	}
	b.SetPower(true)
	if settled(t, b, boots) != ModeOff {
		return nil
	}
	select {
	case r := <-fired:
		return &r
	case <-time.After(5 * time.Second):
		t.Fatalf("op %d: the board lost power but notify was not called", k)
	}
	return nil
}

// outcome powers the board on after a cut, lets it settle and names what
// runs; a board in recovery is resumed (inplace-recovery) and named by
// what runs then.
func (sw *sweeper) outcome() string {
	t, b := sw.t, sw.b
	boots := b.Boots()
	b.SetPower(true)
	settled(t, b, boots)
	got := running(b, sw.base, sw.img)
	if got == "recovery" {
		if _, err := resumable(t, b, sw.img, sw.szx, sw.tag); err != nil {
			t.Fatalf("resuming: %v", err)
		}
		got = "resumed: " + running(b, sw.base, sw.img)
	}
	return got
}

// pendingState is the flash a finished download leaves for the
// bootloader: the baseline booted once (counter 1) and the new image in
// the secondary slot marked pending — or, for naive-inplace, the new
// image over the app slot.
func (sw *sweeper) pendingState() []byte {
	t, b := sw.t, sw.b
	b.SetPower(false)
	lay := b.lay
	first := sw.base
	if b.cfg.Strategy == NaiveInplace {
		first = sw.img
	}
	if err := b.FactoryProgram(first); err != nil {
		t.Fatal(err)
	}
	load := func(off int, p []byte) {
		if err := b.fl.Load(off, p); err != nil {
			t.Fatal(err)
		}
	}
	load(lay.counterOff, counterEntry(1, b.cfg.WriteAlign, b.fl.Config().Erased))
	if lay.AB() {
		load(lay.Secondary.Start, sw.img)
		load(lay.Secondary.TrailerOff, trailerMagic[:])
	}
	return b.fl.Bytes()
}

type tally map[string]int

func (c tally) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return strings.Join(parts, ", ")
}

// TestABPowerCutSweep cuts power at every flash operation from the moment
// the last block is sent until the new image runs — the app's write of
// that block and its pending mark, the bootloader's copy, swap or
// finalize, the app's confirmation — then powers the board on, lets it
// settle and classifies: new image, old image, halted. The A/B strategies
// never halt; ab-swap ends on the new or the old image only, and with
// confirm: never always on the old one (cuts during the revert swap
// included); naive-inplace halts; inplace-recovery never does.
func TestABPowerCutSweep(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	img := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	for _, tc := range []struct {
		name    string
		s       Strategy
		confirm string
		allowed []string // outcomes allowed; nil: any
	}{
		{"ab-overwrite", ABOverwrite, "", []string{"new", "old"}},
		{"ab-swap", ABSwap, "", []string{"new", "old"}},
		{"ab-swap-confirm-never", ABSwap, ConfirmNever, []string{"old"}},
		{"ab-direct", ABDirect, "", []string{"new", "old"}},
		{"naive-inplace", NaiveInplace, "", nil},
		{"inplace-recovery", InplaceRecovery, "", []string{"new", "resumed: new"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := abConfig(tc.s, tc.confirm)
			b := newBoard(t, cfg, base)
			sw := &sweeper{t: t, b: b, base: base, img: img, szx: 6, tag: []byte{0x5c}}

			// Dry runs: the whole stage over CoAP, then (bootloader
			// strategies) the bootloader's part alone from the pending
			// state, which must end in the same flash.
			last := sw.ready()
			total, erasesA, _ := sw.trace(func() {
				if sw.sendLast(last, 0) != nil {
					t.Fatal("cut in the dry run")
				}
			})
			want := "new"
			if tc.confirm == ConfirmNever {
				want = "old"
			}
			if got := running(b, base, img); got != want {
				t.Fatalf("dry run: runs %s, want %s", got, want)
			}
			endCoAP := b.fl.Bytes()
			var opsB uint64
			var erasesB, bootsB []uint64
			if tc.s != InplaceRecovery {
				sw.pending = sw.pendingState()
				opsB, erasesB, bootsB = sw.trace(func() {
					if sw.bootPending(0) != nil {
						t.Fatal("cut in the dry run")
					}
				})
				if !bytes.Equal(b.fl.Bytes(), endCoAP) {
					t.Fatal("the pending state does not lead where the download does")
				}
			}
			outcomes := tally{}
			var opsA uint64
			// Stage A, over CoAP: the cut lands while the app takes the
			// last block (for inplace-recovery: anywhere).
			for _, k := range points(total, erasesA, 1) {
				sw.ready()
				cut := sw.sendLast(last, k)
				if cut == nil {
					break // past the last operation
				}
				if sw.pending != nil && cut.Mode != ModeApp {
					break // in the bootloader: stage B's
				}
				opsA = k
				outcomes[sw.outcome()]++
			}
			if sw.pending != nil && !testing.Short() && opsA+opsB != total {
				t.Fatalf("the app's %d operations and the bootloader's %d make %d, the stage has %d", opsA, opsB, opsA+opsB, total)
			}
			// Stage B, from the pending state: the bootloader and the
			// app's confirmation. With confirm: never, the test swap's
			// operations are those the ab-swap sweep cuts at every one of;
			// here every 7th and every erase, and every one of the revert.
			full := uint64(1)
			if tc.confirm == ConfirmNever {
				if len(bootsB) != 2 {
					t.Fatalf("confirm: never: flash written in %d boots, want 2 (test swap, revert)", len(bootsB))
				}
				full = bootsB[1]
			}
			for _, k := range points(opsB, erasesB, full) {
				if sw.bootPending(k) == nil {
					t.Fatalf("op %d of %d: no cut", k, opsB)
				}
				outcomes[sw.outcome()]++
			}
			swept := 0
			for _, n := range outcomes {
				swept += n
			}
			how := fmt.Sprintf("every one from op %d of those", full)
			if testing.Short() {
				how = "-short: every 7th and every erase"
			}
			t.Logf("%s: %d of %d operations swept (%d in the app, %d in the bootloader and confirm; %s): %s", tc.name, swept, total, total-opsB, opsB, how, outcomes)
			for o := range outcomes {
				if tc.allowed != nil && !slices.Contains(tc.allowed, o) {
					t.Errorf("outcome %q (want only %v)", o, tc.allowed)
				}
			}
			if tc.s == NaiveInplace && outcomes["halted"] == 0 {
				t.Error("naive-inplace never halted")
			}
		})
	}
}

// TestABSwapDoubleFault cuts power during an ab-swap update, then again at
// every Nth operation of the resumed swap: the board still ends on the
// new or the old image, never halted.
func TestABSwapDoubleFault(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 2<<10, 1)
	img := buildImage(t, "2.0.0", 2, 3<<10+100, 2)
	for _, confirm := range []string{ConfirmBoot, ConfirmNever} {
		t.Run(confirm, func(t *testing.T) {
			b := newBoard(t, abConfig(ABSwap, confirm), base)
			sw := &sweeper{t: t, b: b, base: base, img: img, szx: 6}
			sw.pending = sw.pendingState()
			opsB, _, _ := sw.trace(func() { sw.bootPending(0) })
			first, second := uint64(149), uint64(41)
			if testing.Short() {
				first, second = 151, 47
			}
			outcomes := tally{}
			cases := 0
			for k1 := uint64(1); k1 <= opsB; k1 += first {
				if sw.bootPending(k1) == nil {
					t.Fatalf("op %d: no cut", k1)
				}
				cut := b.fl.Bytes()
				resumed, _, _ := sw.trace(func() {
					if sw.bootFrom(cut, 0) != nil {
						t.Fatal("cut in a dry run")
					}
				})
				for k2 := uint64(1); k2 <= resumed; k2 += second {
					if sw.bootFrom(cut, k2) == nil {
						t.Fatalf("ops %d then %d: no second cut", k1, k2)
					}
					o := sw.outcome()
					outcomes[o]++
					cases++
					if o != "new" && o != "old" {
						t.Fatalf("ops %d then %d of the resumed run: %s", k1, k2, o)
					}
				}
			}
			t.Logf("ab-swap confirm=%s: %d double cuts (first cut every %d operations of %d, second every %d operations of the resumed run): %s", confirm, cases, first, opsB, second, outcomes)
		})
	}
}
