package sim

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwproto"
)

// BenchmarkUpdate256KiB runs one whole resumable update of a 256 KiB image
// per iteration (prepare, reboot into recovery, every block over real UDP
// CoAP with the bench's client, verify, boot the new app) with flash times
// at zero, so it measures the protocol and the board, not a modelled part.
func BenchmarkUpdate256KiB(b *testing.B) {
	base := buildImage(b, "1.0.0", 1, 4<<10, 1)
	// Two images with the same seq so alternating them never trips the
	// anti-rollback counter, and every iteration really updates.
	imgs := [2][]byte{
		buildImage(b, "2.0.0-a", 2, 256<<10, 10),
		buildImage(b, "2.0.0-b", 2, 256<<10, 11),
	}
	for _, szx := range []uint8{6, 2} {
		b.Run(fmt.Sprintf("block%d", fwproto.BlockSize(szx)), func(b *testing.B) {
			board := newBoard(b, Config{}, base)
			tag := []byte{0xB0, szx}
			blocks := fwproto.Blocks(uint32(len(imgs[0])), szx)
			n := 0
			for b.Loop() {
				img := imgs[n%2]
				at, err := resumable(b, board, img, szx, tag)
				if err != nil {
					b.Fatal(err)
				}
				if len(at) != 1 || at[0] != 0 {
					b.Fatalf("iteration %d: resumed at %v, want one full transfer from 0", n, at)
				}
				n++
			}
			sec := b.Elapsed().Seconds()
			b.ReportMetric(float64(n*len(imgs[0]))/sec/1e6, "MB/s")
			b.ReportMetric(sec*1e6/float64(n*int(blocks)), "µs/block")
		})
	}
}

// BenchmarkIdleBoards64 starts 64 boards with the default configuration
// (UDP on IPv4 and IPv6, DTLS, GDB port, console pty), boots them into
// their apps and reports what an idle board costs in heap and goroutines.
// Each iteration starts and closes the whole set; ns/op is that cycle.
func BenchmarkIdleBoards64(b *testing.B) {
	const boards = 64
	var heap, gor float64
	for b.Loop() {
		heap, gor = idleBoards(b, boards)
	}
	b.ReportMetric(heap/boards, "bytes/board")
	b.ReportMetric(gor/boards, "goroutines/board")
}

func idleBoards(b *testing.B, n int) (heap, goroutines float64) {
	heap0, gor0 := heapAndGoroutines()
	cfgs := make([]Config, n)
	for i := range cfgs {
		cfgs[i] = Config{Name: fmt.Sprintf("idle-%02d", i)}
	}
	s, err := Start(cfgs, true, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, bd := range s.Boards {
		if _, err := bd.WaitMode(ctx, ModeApp); err != nil {
			s.Close()
			b.Fatal(err)
		}
	}
	heap1, gor1 := heapAndGoroutines()
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	// Closed boards must give their goroutines back; waiting here also
	// keeps the next iteration's baseline honest.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > gor0 {
		if time.Now().After(deadline) {
			b.Fatalf("%d goroutines left after closing %d boards (%d before)", runtime.NumGoroutine(), n, gor0)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return float64(heap1) - float64(heap0), float64(gor1 - gor0)
}

func heapAndGoroutines() (uint64, int) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, runtime.NumGoroutine()
}
