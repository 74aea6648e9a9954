package gdbrsp_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/gdbrsp"
)

// prefixes reduces packets to their command names, for sequence checks.
func prefixes(pkts []string) []string {
	var out []string
	for _, p := range pkts {
		name := p
		if i := strings.IndexAny(p, ":,"); i > 0 {
			name = p[:i]
		}
		switch {
		case strings.HasPrefix(name, "m") && name != "m":
			name = "m"
		case strings.HasPrefix(name, "X"):
			name = "X"
		case strings.HasPrefix(name, "M"):
			name = "M"
		}
		if n := len(out); n > 0 && out[n-1] == name {
			continue
		}
		out = append(out, name)
	}
	return out
}

// TestFlashPaths checks which packets each kind of server gets, and that
// the data lands.
func TestFlashPaths(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(f *fakeServer)
		verify  string
		addr    uint32
		n       int
		wantSeq []string
	}{
		{
			name:  "vFlash inside flash, qCRC",
			setup: func(f *fakeServer) { f.memoryMap = twoRegionMap },
			addr:  0x1100, n: 0x300,
			wantSeq: []string{"qSupported", "qXfer", "vFlashErase", "vFlashWrite", "vFlashDone", "qCRC"},
		},
		{
			name: "no memory map: X",
			addr: 0x1100, n: 1000,
			wantSeq: []string{"qSupported", "X", "qCRC"},
		},
		{
			name:  "X empty: M, no qCRC: read back",
			setup: func(f *fakeServer) { f.noX, f.noCRC = true, true },
			addr:  0x20000000, n: 700,
			wantSeq: []string{"qSupported", "X", "M", "qCRC", "m"},
		},
		{
			name:   "ram region of a map: X; verify read",
			setup:  func(f *fakeServer) { f.memoryMap = twoRegionMap },
			verify: gdbrsp.VerifyRead,
			addr:   0x20000010, n: 500,
			wantSeq: []string{"qSupported", "qXfer", "X", "m"},
		},
		{
			name:   "no-ack server",
			setup:  func(f *fakeServer) { f.supported = "PacketSize=100;QStartNoAckMode+" },
			verify: gdbrsp.VerifyNone,
			addr:   0x40, n: 300,
			wantSeq: []string{"qSupported", "QStartNoAckMode", "X"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.setup)
			p := newProbe(t, gdbrsp.Config{Address: f.addr, Verify: tt.verify})
			data := testData(tt.n)
			if err := p.Flash(testCtx(t), tt.addr, data, nil); err != nil {
				t.Fatalf("Flash: %v", err)
			}
			if got := prefixes(f.Packets()); !slices.Equal(got, tt.wantSeq) {
				t.Errorf("packets %v, want %v", got, tt.wantSeq)
			}
			if got := f.memory(tt.addr, tt.n); !bytes.Equal(got, data) {
				t.Error("server memory differs from the data")
			}
		})
	}
}

// TestFlashEraseRounding: vFlashErase is rounded to each region's block
// size, per region, and vFlashWrite packets fit the packet size.
func TestFlashEraseRounding(t *testing.T) {
	f := startFake(t, func(f *fakeServer) { f.memoryMap = twoRegionMap })
	p := newProbe(t, gdbrsp.Config{Address: f.addr})
	data := testData(0x1500)
	var progress []int
	if err := p.Flash(testCtx(t), 0x1a10, data, func(done, total int) {
		if total != len(data) {
			t.Errorf("progress total %d, want %d", total, len(data))
		}
		progress = append(progress, done)
	}); err != nil {
		t.Fatal(err)
	}
	var erases []string
	for _, pkt := range f.Packets() {
		if strings.HasPrefix(pkt, "vFlashErase:") {
			erases = append(erases, pkt)
		}
		// PacketSize=190 hex: the frame ("$" + payload + "#cs") must fit.
		if len(pkt)+4 > 0x190 {
			t.Errorf("packet of %d bytes over PacketSize 0x190: %.30q", len(pkt), pkt)
		}
	}
	// 0x1a10..0x1fff in 0x400 blocks: 0x1800+0x800; 0x2000..0x2f10 in 0x1000 blocks: 0x2000+0x1000.
	if want := []string{"vFlashErase:1800,800", "vFlashErase:2000,1000"}; !slices.Equal(erases, want) {
		t.Errorf("erases %v, want %v", erases, want)
	}
	if len(progress) < 4 || progress[len(progress)-1] != len(data) || !slices.IsSorted(progress) {
		t.Errorf("progress %v", progress)
	}
	if !bytes.Equal(f.memory(0x1a10, len(data)), data) {
		t.Error("server memory differs")
	}
}

// TestLineErrors: NAKs and corrupt replies are retried within bounds.
func TestLineErrors(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(f *fakeServer)
		wantErr  error
		wantText string
		minNaks  int
	}{
		{name: "a few NAKs", setup: func(f *fakeServer) { f.nakPackets = 3 }},
		{name: "endless NAKs", setup: func(f *fakeServer) { f.nakPackets = 1000 }, wantErr: probes.ErrProbe, wantText: "refused"},
		{name: "a few corrupt replies", setup: func(f *fakeServer) { f.corruptReplies = 3 }, minNaks: 3},
		{name: "endless corrupt replies", setup: func(f *fakeServer) { f.corruptReplies = 1000 }, wantErr: probes.ErrProbe, wantText: "checksum"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.setup)
			p := newProbe(t, gdbrsp.Config{Address: f.addr})
			err := p.Flash(testCtx(t), 0x100, testData(600), nil)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("Flash: %v", err)
				}
				if !bytes.Equal(f.memory(0x100, 600), testData(600)) {
					t.Error("server memory differs")
				}
			} else if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantText) {
				t.Fatalf("Flash: %v, want %v mentioning %q", err, tt.wantErr, tt.wantText)
			}
			f.mu.Lock()
			naks := f.naks
			f.mu.Unlock()
			if naks < tt.minNaks {
				t.Errorf("client sent %d NAKs, want at least %d", naks, tt.minNaks)
			}
		})
	}
}

// TestReplyErrors: E replies are ReplyErrors naming the command and the
// address; qCRC mismatch is ErrVerify.
func TestReplyErrors(t *testing.T) {
	failOn := func(prefix, reply string, nth int) func(f *fakeServer) {
		return func(f *fakeServer) {
			f.memoryMap = twoRegionMap
			seen := 0
			f.hook = func(pkt string) ([]string, bool, bool) {
				if strings.HasPrefix(pkt, prefix) {
					if seen++; seen == nth {
						return []string{reply}, true, false
					}
				}
				return nil, false, false
			}
		}
	}
	tests := []struct {
		name      string
		setup     func(f *fakeServer)
		addr      uint32
		wantErr   error
		wantReply string
		wantText  string
	}{
		{name: "vFlashErase E03", setup: failOn("vFlashErase", "E03", 1), addr: 0x1000, wantErr: probes.ErrProbe, wantReply: "E03", wantText: "vFlashErase at 0x00001000+0x400"},
		{name: "vFlashWrite E.memtype", setup: failOn("vFlashWrite", "E.memtype", 2), addr: 0x1000, wantErr: probes.ErrProbe, wantReply: "E.memtype", wantText: "vFlashWrite at 0x0000"},
		{name: "vFlashDone E05", setup: failOn("vFlashDone", "E05", 1), addr: 0x1000, wantErr: probes.ErrProbe, wantReply: "E05", wantText: "vFlashDone"},
		{name: "X E0e", setup: failOn("X", "E0e", 1), addr: 0x20000000, wantErr: probes.ErrProbe, wantReply: "E0e", wantText: "X at 0x20000000"},
		{name: "qCRC mismatch", setup: func(f *fakeServer) { f.badCRC = true }, addr: 0x1000, wantErr: probes.ErrVerify, wantText: "verify at 0x00001000"},
		{name: "qCRC error", setup: failOn("qCRC", "E01", 1), addr: 0x1000, wantErr: probes.ErrProbe, wantReply: "E01", wantText: "qCRC at 0x00001000"},
		{name: "garbage to m", setup: func(f *fakeServer) {
			f.noCRC = true
			f.hook = func(pkt string) ([]string, bool, bool) {
				if strings.HasPrefix(pkt, "m") {
					return []string{"zz"}, true, false
				}
				return nil, false, false
			}
		}, addr: 0x1000, wantErr: probes.ErrProbe, wantText: "m at 0x00001000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.setup)
			p := newProbe(t, gdbrsp.Config{Address: f.addr})
			err := p.Flash(testCtx(t), tt.addr, testData(0x300), nil)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Flash: %v, want %v", err, tt.wantErr)
			}
			var re *gdbrsp.ReplyError
			if tt.wantReply != "" && (!errors.As(err, &re) || re.Reply != tt.wantReply) {
				t.Errorf("error %v: want a ReplyError with reply %q", err, tt.wantReply)
			}
			if !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), p.String()) {
				t.Errorf("error %q does not contain %q and the probe's name", err, tt.wantText)
			}
			// The connection is still good after an error reply.
			if err := p.Read(testCtx(t), 0x1000, make([]byte, 4)); err != nil && tt.name != "garbage to m" {
				t.Errorf("Read after the error: %v", err)
			}
		})
	}
}

// TestServerDies: a server that hangs up mid-vFlashWrite gives an error
// naming the server and the address, and the next operation reconnects.
func TestServerDies(t *testing.T) {
	f := startFake(t, func(f *fakeServer) {
		f.memoryMap = twoRegionMap
		writes := 0
		f.hook = func(pkt string) ([]string, bool, bool) {
			if strings.HasPrefix(pkt, "vFlashWrite:") {
				if writes++; writes == 3 {
					return nil, true, true
				}
			}
			return nil, false, false
		}
	})
	p := newProbe(t, gdbrsp.Config{Address: f.addr})
	err := p.Flash(testCtx(t), 0x2000, testData(0x1000), nil)
	if !errors.Is(err, probes.ErrProbe) {
		t.Fatalf("Flash: %v, want ErrProbe", err)
	}
	want := fmt.Sprintf("gdb server at %s closed the connection during vFlashWrite at 0x00002", f.addr)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if err := p.Flash(testCtx(t), 0x2000, testData(0x1000), nil); err != nil {
		t.Fatalf("Flash after reconnect: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns != 2 {
		t.Errorf("%d connections, want 2", f.conns)
	}
}

// TestReconnectBetweenOperations: a server that closed an idle connection
// is reconnected to without an error.
func TestReconnectBetweenOperations(t *testing.T) {
	f := startFake(t, nil)
	p := newProbe(t, gdbrsp.Config{Address: f.addr})
	ctx := testCtx(t)
	for i := range 3 {
		if err := p.Read(ctx, 0x10, make([]byte, 8)); err != nil {
			t.Fatalf("Read %d: %v", i, err)
		}
		f.kick()
		// Let the hang-up reach the client, as between two jobs.
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns != 3 {
		t.Errorf("%d connections, want 3", f.conns)
	}
}

// TestMonitor: Reset collects O-packets; an E reply is an error with the
// output; a server without qRcmd says so.
func TestMonitor(t *testing.T) {
	f := startFake(t, nil)
	ctx := testCtx(t)
	p := newProbe(t, gdbrsp.Config{Address: f.addr})
	if err := p.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if got := p.Output(); got != "resetting\ndone\n" {
		t.Errorf("output %q", got)
	}
	h := newProbe(t, gdbrsp.Config{Address: f.addr, Halt: "stop please"})
	p.Close()
	err := h.Halt(ctx)
	var re *gdbrsp.ReplyError
	if !errors.Is(err, probes.ErrProbe) || !errors.As(err, &re) || re.Reply != "E04" || !strings.Contains(err.Error(), "what?") {
		t.Errorf("Halt with an unknown command: %v", err)
	}
	f2 := startFake(t, func(f *fakeServer) {
		f.hook = func(pkt string) ([]string, bool, bool) {
			if strings.HasPrefix(pkt, "qRcmd") {
				return []string{""}, true, false
			}
			return nil, false, false
		}
	})
	p2 := newProbe(t, gdbrsp.Config{Address: f2.addr})
	if err := p2.Reset(ctx); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "does not support") {
		t.Errorf("Reset on a server without qRcmd: %v", err)
	}
}

// TestTimeouts: a silent server is ErrTimeout after the configured
// timeout; an ended ctx wins over it.
func TestTimeouts(t *testing.T) {
	f := startFake(t, func(f *fakeServer) { f.silent = true })
	p := newProbe(t, gdbrsp.Config{Address: f.addr, Timeout: 100 * time.Millisecond})
	start := time.Now()
	err := p.Reset(testCtx(t))
	if !errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("Reset: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	p2 := newProbe(t, gdbrsp.Config{Address: f.addr, Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err = p2.Reset(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, probes.ErrTimeout) {
		t.Fatalf("Reset with a cancelled ctx: %v, want context.Canceled", err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := p2.Reset(ctx); !errors.Is(err, probes.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Reset past the ctx deadline: %v", err)
	}
}

// TestConnectErrors: nobody listening is a clear ErrProbe naming the
// probe, at use, not at New.
func TestConnectErrors(t *testing.T) {
	f := startFake(t, nil)
	addr := f.addr
	f.ln.Close()
	p := newProbe(t, gdbrsp.Config{Address: addr})
	err := p.Reset(testCtx(t))
	if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "gdbrsp:"+addr) {
		t.Fatalf("Reset with nobody listening: %v", err)
	}
	p.Close()
	if err := p.Reset(testCtx(t)); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Reset after Close: %v", err)
	}
}

// TestEraseBadRanges: a range that passes the end of flash, is not on
// block boundaries or is not flash is refused before any command.
func TestEraseBadRanges(t *testing.T) {
	f := startFake(t, func(f *fakeServer) { f.memoryMap = twoRegionMap })
	p := newProbe(t, gdbrsp.Config{Address: f.addr})
	ctx := testCtx(t)
	for _, bad := range []struct{ addr, n uint32 }{{0x1c00, 0x1800}, {0x1c01, 0x3ff}, {0x20000000, 0x100}} {
		if err := p.Erase(ctx, bad.addr, bad.n); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), fmt.Sprintf("%#08x", bad.addr)) {
			t.Errorf("Erase(%#x, %#x): %v", bad.addr, bad.n, err)
		}
	}
	for _, pkt := range f.Packets() {
		if strings.HasPrefix(pkt, "vFlash") || strings.HasPrefix(pkt, "qCRC") {
			t.Errorf("packet %q for a refused range", pkt)
		}
	}
}
