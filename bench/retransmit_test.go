package bench_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/sim"
)

// dropOnce relays datagrams between the bench and a device and drops the
// first datagram from the bench that contains mark.
type dropOnce struct {
	conn    *net.UDPConn
	up      *net.UDPConn
	mark    []byte
	mu      sync.Mutex
	client  *net.UDPAddr
	dropped atomic.Bool
}

func startDropOnce(t *testing.T, device string, mark []byte) *dropOnce {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ua, err := net.ResolveUDPAddr("udp", device)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	p := &dropOnce{conn: conn, up: up, mark: mark}
	t.Cleanup(func() { conn.Close(); up.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.client = from
			p.mu.Unlock()
			if bytes.Contains(buf[:n], p.mark) && p.dropped.CompareAndSwap(false, true) {
				continue
			}
			_, _ = up.Write(buf[:n])
		}
	}()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP "port unreachable" while the device reboots
			}
			p.mu.Lock()
			to := p.client
			p.mu.Unlock()
			if to != nil {
				_, _ = conn.WriteToUDP(buf[:n], to)
			}
		}
	}()
	return p
}

// TestRetransmissionsOnTheTimeline: a block whose first copy is lost is
// sent again after the acknowledgement timeout, and the timeline holds a
// block.retry event for that block.
func TestRetransmissionsOnTheTimeline(t *testing.T) {
	base, up := img(t, "1.0.0", 1, 4<<10, 1), img(t, "2.0.0", 2, 8<<10, 2)
	_, b, mem := simBoard(t, sim.Config{}, base)
	const lost = 3 // block 3 of 1024-byte blocks
	p := startDropOnce(t, b.Endpoint.Addr, up[lost*1024:lost*1024+32])
	b.Endpoint.Addr = p.conn.LocalAddr().String()
	res := b.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 6, RecoveryTimeout: 5 * time.Second})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if !p.dropped.Load() {
		t.Fatal("the proxy never saw block 3")
	}
	retries := mem.OfKind(results.BlockRetry)
	if len(retries) != 1 || retries[0].Block != lost || retries[0].Text != "retransmission 1" {
		t.Fatalf("block.retry events %+v: want one for block %d", retries, lost)
	}
	if res.BlocksResent != 0 {
		t.Errorf("a retransmission counted as a re-sent block: %d", res.BlocksResent)
	}
}
