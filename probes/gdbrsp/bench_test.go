package gdbrsp_test

import (
	"context"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/probes/gdbrsp"
	"github.com/fudbench/fudbench/sim"
)

// BenchmarkSimFlash flashes 64 KiB into the simulated board (instant flash
// timing) with each verification method, to show the protocol's cost.
func BenchmarkSimFlash(b *testing.B) {
	for _, verify := range []string{gdbrsp.VerifyNone, gdbrsp.VerifyCRC, gdbrsp.VerifyRead} {
		b.Run(verify, func(b *testing.B) {
			board, err := sim.New(sim.Config{Name: "bench", GDBAddr: "127.0.0.1:0", DTLSAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}, FlashBase: flashBase})
			if err != nil {
				b.Fatal(err)
			}
			defer board.Close()
			board.SetPower(true)
			p, err := gdbrsp.New(gdbrsp.Config{Address: board.GDBAddr(), Verify: verify})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			data := testData(64 << 10)
			addr := uint32(flashBase + board.Layout().AppStart)
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				if err := p.Flash(context.Background(), addr, data, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBaselineRestore restores a board's baseline between power-cut
// cycles as the bench does: Erase from the records to the end of flash,
// then Flash a 16 KiB image. Before each restore an update has touched 8
// sectors (a 20 KiB image in the app slot; a record, the journal and the
// counter). The board is nRF52-like (124 sectors of 4 KiB after the
// bootloader) at a tenth of real flash timing; erase-all is the driver
// without the blank-sector skip.
func BenchmarkBaselineRestore(b *testing.B) {
	for _, skip := range []bool{true, false} {
		name := "skip-blank"
		if !skip {
			name = "erase-all"
		}
		b.Run(name, func(b *testing.B) {
			board, err := sim.New(sim.Config{Name: "bench", GDBAddr: "127.0.0.1:0", DTLSAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}, FlashBase: flashBase, TimeScale: 0.1})
			if err != nil {
				b.Fatal(err)
			}
			defer board.Close()
			board.SetPower(true)
			p, err := gdbrsp.New(gdbrsp.Config{Address: board.GDBAddr()})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			gdbrsp.SkipBlank(p, skip)
			ctx := context.Background()
			baseline, err := fwimage.Build(fwimage.Spec{Version: "1.0.0", Seq: 1, Size: 16 << 10, Seed: 1}, fwimage.DevKey())
			if err != nil {
				b.Fatal(err)
			}
			update, err := fwimage.Build(fwimage.Spec{Version: "2.0.0", Seq: 2, Size: 20 << 10, Seed: 2}, fwimage.DevKey())
			if err != nil {
				b.Fatal(err)
			}
			fl, lay := board.Flash(), board.Layout()
			app := uint32(flashBase + lay.AppStart)
			from := uint32(flashBase + lay.BootEnd)
			length := uint32(fl.Size() - lay.BootEnd)
			sectors := fl.Config().Sectors
			var took time.Duration
			var erased uint64
			n := 0
			for b.Loop() {
				b.StopTimer()
				if err := p.Flash(ctx, app, update, nil); err != nil {
					b.Fatal(err)
				}
				for _, idx := range []int{lay.RecA, lay.Journal, lay.Counter} {
					off := 0
					for _, s := range sectors[:idx] {
						off += s
					}
					if err := fl.Program(off, []byte{0x5a, 0x5a, 0x5a, 0x5a}); err != nil {
						b.Fatal(err)
					}
				}
				before := fl.Wear()
				b.StartTimer()

				start := time.Now()
				if err := p.Erase(ctx, from, length); err != nil {
					b.Fatal(err)
				}
				if err := p.Flash(ctx, app, baseline, nil); err != nil {
					b.Fatal(err)
				}
				took += time.Since(start)

				b.StopTimer()
				for i, w := range fl.Wear() {
					erased += uint64(w - before[i])
				}
				n++
				b.StartTimer()
			}
			b.ReportMetric(took.Seconds()*1000/float64(n), "ms/restore")
			b.ReportMetric(float64(erased)/float64(n), "sectors-erased/restore")
		})
	}
}
