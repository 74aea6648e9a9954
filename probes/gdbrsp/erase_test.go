package gdbrsp_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/gdbrsp"
	"github.com/fudbench/fudbench/sim"
)

// TestEraseSkipsBlank: Erase asks qCRC for each block and erases only the
// blocks that differ from blank, consecutive ones in one command per
// region; a server that cannot tell gets every block erased, as before.
func TestEraseSkipsBlank(t *testing.T) {
	// twoRegionMap: 0x1000+0x1000 in 0x400 blocks, 0x2000+0x4000 in 0x1000
	// blocks; the range covers 4 + 4 blocks.
	const addr, length = 0x1000, 0x5000
	all := []string{"vFlashErase:1000,1000", "vFlashErase:2000,4000", "vFlashDone"}
	reply := func(rep string) func(f *fakeServer) {
		return func(f *fakeServer) {
			f.hook = func(pkt string) ([]string, bool, bool) {
				if strings.HasPrefix(pkt, "qCRC:") {
					return []string{rep}, true, false
				}
				return nil, false, false
			}
		}
	}
	tests := []struct {
		name      string
		setup     func(f *fakeServer)
		cfg       gdbrsp.Config
		noSkip    bool
		dirty     []uint32 // bytes written before the erase
		want      []string // vFlash packets
		wantCRCs  int      // qCRC packets
		wantStats gdbrsp.EraseStats
	}{
		{
			name:     "all blank: nothing to do",
			wantCRCs: 8, wantStats: gdbrsp.EraseStats{Blocks: 8, Skipped: 8},
		},
		{
			name:  "dirty blocks, joined within a region, split at its border",
			dirty: []uint32{0x1000, 0x1bff, 0x1c00, 0x2000, 0x4fff},
			want:  []string{"vFlashErase:1000,400", "vFlashErase:1800,800", "vFlashErase:2000,1000", "vFlashErase:4000,1000", "vFlashDone"},
			// 0x1400, 0x3000 and 0x5000 are blank.
			wantCRCs: 8, wantStats: gdbrsp.EraseStats{Blocks: 8, Skipped: 3, Commands: 4},
		},
		{
			name:     "flash erased to 0x00",
			setup:    func(f *fakeServer) { f.erased = 0x00 },
			cfg:      gdbrsp.Config{ErasedZero: true},
			dirty:    []uint32{0x3abc},
			want:     []string{"vFlashErase:3000,1000", "vFlashDone"},
			wantCRCs: 8, wantStats: gdbrsp.EraseStats{Blocks: 8, Skipped: 7, Commands: 1},
		},
		{
			name:     "flash erased to 0x00, probe told 0xff: no block looks blank",
			setup:    func(f *fakeServer) { f.erased = 0x00 },
			want:     all,
			wantCRCs: 8, wantStats: gdbrsp.EraseStats{Blocks: 8, Commands: 2},
		},
		{
			name:     "wrong CRCs: no block looks blank",
			setup:    func(f *fakeServer) { f.badCRC = true },
			want:     all,
			wantCRCs: 8, wantStats: gdbrsp.EraseStats{Blocks: 8, Commands: 2},
		},
		{
			name:     "no qCRC: everything",
			setup:    func(f *fakeServer) { f.noCRC = true },
			want:     all,
			wantCRCs: 1, wantStats: gdbrsp.EraseStats{Blocks: 8, Commands: 2},
		},
		{
			name:     "qCRC refused: everything",
			setup:    reply("E01"),
			want:     all,
			wantCRCs: 1, wantStats: gdbrsp.EraseStats{Blocks: 8, Commands: 2},
		},
		{
			name:     "qCRC malformed: everything",
			setup:    reply("C12345678x"),
			want:     all,
			wantCRCs: 1, wantStats: gdbrsp.EraseStats{Blocks: 8, Commands: 2},
		},
		{
			name:     "skipping turned off",
			noSkip:   true,
			want:     all,
			wantCRCs: 0, wantStats: gdbrsp.EraseStats{Blocks: 8, Commands: 2},
		},
		{
			name:     "no memory map: the whole range",
			setup:    func(f *fakeServer) { f.memoryMap = "" },
			want:     []string{"vFlashErase:1000,5000", "vFlashDone"},
			wantCRCs: 0, wantStats: gdbrsp.EraseStats{Commands: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, func(f *fakeServer) {
				f.memoryMap = twoRegionMap
				if tt.setup != nil {
					tt.setup(f)
				}
			})
			for _, a := range tt.dirty {
				f.store(a, []byte{0x5a})
			}
			cfg := tt.cfg
			cfg.Address = f.addr
			p := newProbe(t, cfg)
			gdbrsp.SkipBlank(p, !tt.noSkip)
			if err := p.Erase(testCtx(t), addr, length); err != nil {
				t.Fatal(err)
			}
			var got []string
			crcs := 0
			for _, pkt := range f.Packets() {
				switch {
				case strings.HasPrefix(pkt, "vFlash"):
					got = append(got, pkt)
				case strings.HasPrefix(pkt, "qCRC:"):
					crcs++
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("packets %v, want %v", got, tt.want)
			}
			if crcs != tt.wantCRCs {
				t.Errorf("%d qCRC packets, want %d", crcs, tt.wantCRCs)
			}
			if st := p.LastErase(); st != tt.wantStats {
				t.Errorf("LastErase %+v, want %+v", st, tt.wantStats)
			}
			mem := f.memory(addr, length)
			if i := slices.IndexFunc(mem, func(b byte) bool { return b != f.erased }); i >= 0 {
				t.Errorf("byte at %#x is %#02x after Erase, want %#02x", addr+i, mem[i], f.erased)
			}
		})
	}
}

// TestSimEraseSkipsBlank erases records, journal, counter and the app slot
// of a simulated board through its GDB stub: only the sectors that hold
// data are erased (their wear counters move, the blank ones' do not) and
// the whole range reads erased afterwards.
func TestSimEraseSkipsBlank(t *testing.T) {
	// Sectors are named relative to the layout: the app slot's first
	// sector is app+0.
	type sector struct {
		name string
		off  int // byte within the sector to write
	}
	tests := []struct {
		name         string
		board        sim.Config
		settings     probes.MapSettings
		dirty        []sector
		wantCommands int
		wantAll      bool // every sector is erased
	}{
		{
			name:  "0xff flash",
			dirty: []sector{{"recA", 0}, {"journal", 100}, {"app+1", 4092}, {"app+2", 0}, {"last", 8}},
			// recA; journal; app+1..app+2; last.
			wantCommands: 4,
		},
		{
			name:         "0xff flash, all blank",
			wantCommands: 0,
		},
		{
			name:         "0x00 flash, erased: 0x00",
			board:        sim.Config{ErasedZero: true},
			settings:     probes.MapSettings{"erased": 0x00},
			dirty:        []sector{{"recB", 40}, {"counter", 0}, {"app+0", 0}, {"app+7", 2000}},
			wantCommands: 3,
		},
		{
			name:         "0x00 flash, erased left at 0xff: every sector",
			board:        sim.Config{ErasedZero: true},
			dirty:        []sector{{"app+3", 0}},
			wantCommands: 1, wantAll: true,
		},
		{
			// 16 KiB records, 64 KiB counter, 128 KiB app sectors: a
			// 128 KiB sector takes two qCRCs; data in its second half
			// must be seen.
			name:         "stm32f4 layout, data past the first 64 KiB of a sector",
			board:        sim.Config{Layout: "stm32f4"},
			dirty:        []sector{{"journal", 0}, {"app+1", 100 << 10}},
			wantCommands: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			b := newSimBoard(t, tt.board)
			b.SetPower(true)
			if m, err := b.WaitMode(ctx, sim.ModeHalted, sim.ModeRecovery); err != nil {
				t.Fatalf("empty board: mode %s: %v", m, err)
			}
			fl, lay := b.Flash(), b.Layout()
			erased := fl.Config().Erased
			appSec, _, _, err := fl.Sector(lay.AppStart)
			if err != nil {
				t.Fatal(err)
			}
			index := map[string]int{"recA": lay.RecA, "recB": lay.RecB, "journal": lay.Journal, "counter": lay.Counter, "last": fl.NumSectors() - 1}
			for i := appSec; i < fl.NumSectors(); i++ {
				index[fmt.Sprintf("app+%d", i-appSec)] = i
			}
			dirty := map[int]bool{}
			for _, d := range tt.dirty {
				idx, ok := index[d.name]
				if !ok {
					t.Fatalf("no sector %s", d.name)
				}
				if err := fl.Program(sectorStart(fl.Config().Sectors, idx)+d.off, []byte{0x5a, 0xa5, 0x01, 0x80}); err != nil {
					t.Fatal(err)
				}
				dirty[idx] = true
			}

			s := probes.MapSettings{"address": b.GDBAddr(), "timeout": "5s"}
			for k, v := range tt.settings {
				s[k] = v
			}
			f, err := probes.Open(gdbrsp.Driver, s)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			p := f.(*gdbrsp.Probe)

			before := fl.Wear()
			if err := p.Erase(ctx, flashBase+uint32(lay.BootEnd), uint32(fl.Size()-lay.BootEnd)); err != nil {
				t.Fatalf("Erase: %v", err)
			}
			after := fl.Wear()
			first, _, _, _ := fl.Sector(lay.BootEnd)
			blocks := fl.NumSectors() - first
			for i := range after {
				want := before[i]
				if i >= first && (tt.wantAll || dirty[i]) {
					want++
				}
				if after[i] != want {
					t.Errorf("sector %d: wear %d after Erase, want %d (dirty %v)", i, after[i], want, dirty[i])
				}
			}
			wantSkipped := blocks - len(dirty)
			if tt.wantAll {
				wantSkipped = 0
			}
			want := gdbrsp.EraseStats{Blocks: blocks, Skipped: wantSkipped, Commands: tt.wantCommands}
			if st := p.LastErase(); st != want {
				t.Errorf("LastErase %+v, want %+v", st, want)
			}
			rest := make([]byte, fl.Size()-lay.BootEnd)
			if err := fl.Read(lay.BootEnd, rest); err != nil {
				t.Fatal(err)
			}
			if i := slices.IndexFunc(rest, func(c byte) bool { return c != erased }); i >= 0 {
				t.Errorf("byte at %#x is %#02x after Erase, want %#02x", lay.BootEnd+i, rest[i], erased)
			}
		})
	}
}

// sectorStart is the offset of sector idx.
func sectorStart(sectors []int, idx int) int {
	off := 0
	for _, s := range sectors[:idx] {
		off += s
	}
	return off
}
