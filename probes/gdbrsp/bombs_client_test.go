package gdbrsp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/gdbrsp"
)

// TestBombsServer: servers that never end what they send. A memory map of
// 2 MiB served through qXfer ('m' chunk after 'm' chunk) is refused once
// the client holds 256 KiB of it; a monitor command answered with
// 'O' packets of console output, 400 KiB of it, is refused once the
// output passes 64 KiB. The whole process, fake server included, stays
// within 16 MiB.
func TestBombsServer(t *testing.T) {
	const budget = 16 << 20
	t.Run("memory map of 2 MiB", func(t *testing.T) {
		f := startFake(t, func(f *fakeServer) {
			f.supported = "PacketSize=4000;qXfer:memory-map:read+"
			f.memoryMap = "<memory-map>" + strings.Repeat(" ", 2<<20)
		})
		p := newProbe(t, gdbrsp.Config{Address: f.addr})
		var err error
		c := alloccheck.Bound(t, "memory map", 0, 0, budget, func() { _, err = p.MemoryMap(testCtx(t)) })
		alloccheck.Log(t, "memory map of 2 MiB", 2<<20, c, err)
		if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "no end (a memory map may have 262144)") {
			t.Fatalf("MemoryMap: %v", err)
		}
	})
	t.Run("monitor output of 400 KiB", func(t *testing.T) {
		out := "O" + strings.Repeat("41", 2000) // 2000 bytes of output a packet
		f := startFake(t, func(f *fakeServer) {
			f.hook = func(pkt string) ([]string, bool, bool) {
				if !strings.HasPrefix(pkt, "qRcmd,") {
					return nil, false, false
				}
				reps := make([]string, 200)
				for i := range reps {
					reps[i] = out
				}
				return append(reps, "OK"), true, false
			}
		})
		p := newProbe(t, gdbrsp.Config{Address: f.addr})
		var err error
		c := alloccheck.Bound(t, "monitor", 0, 0, budget, func() { err = p.Reset(testCtx(t)) })
		alloccheck.Log(t, "monitor output of 400 KiB", 400<<10, c, err)
		if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "more than 65536 bytes of output and no end") {
			t.Fatalf("Reset: %v", err)
		}
		if n := len(p.Output()); n > 64<<10 {
			t.Errorf("kept %d bytes of output", n)
		}
	})
}
