package gdbrsp_test

import (
	"context"
	"testing"

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
