package sim

import (
	"context"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/smp"
)

// FuzzServeSMP hands the serial recovery of a halted board any SMP packet
// (header and body): no panic, and the board stays halted or resets as
// asked.
func FuzzServeSMP(f *testing.F) {
	pkt := func(op uint8, group uint16, id uint8, body any) []byte {
		return smp.Packet{Header: smp.Header{Op: op, Group: group, ID: id}, Body: smp.Marshal(body)}.Marshal()
	}
	f.Add(pkt(smp.OpWrite, smp.GroupDefault, smp.IDEcho, smp.EchoReq{D: "hi"}))
	f.Add(pkt(smp.OpRead, smp.GroupImage, smp.IDImageState, struct{}{}))
	f.Add(pkt(smp.OpWrite, smp.GroupImage, smp.IDImageState, smp.ImageStateReq{Hash: make([]byte, 32), Confirm: true}))
	f.Add(pkt(smp.OpWrite, smp.GroupImage, smp.IDImageUpload, smp.UploadReq{Off: 0, Len: 300, Data: make([]byte, 100)}))
	f.Add(pkt(smp.OpWrite, smp.GroupImage, smp.IDImageUpload, smp.UploadReq{Off: 100, Data: make([]byte, 13)}))
	f.Add(pkt(smp.OpWrite|0x08, smp.GroupImage, smp.IDImageErase, struct{}{}))
	b, err := New(Config{Name: "fuzz-smp", Strategy: NaiveInplace, FlashSize: 64 << 10, SectorSize: 4 << 10,
		DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	b.SetPower(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitSerialRecovery(ctx); err != nil {
		f.Fatal(err)
	}
	var up smpUpload
	f.Fuzz(func(t *testing.T, p []byte) {
		r, err := smp.ParsePacket(p)
		if err == nil && r.Group == smp.GroupDefault && r.ID == smp.IDReset {
			return // a reset reboots the board: the next input would race its boot
		}
		b.serveSMP(p, &up)
		if m := b.Mode(); m != ModeHalted {
			t.Fatalf("board in %s after %x", m, p)
		}
	})
}
