package smp

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"

	wire "github.com/fudbench/fudbench/internal/smp"
	"github.com/fudbench/fudbench/probes"
)

// fakePort answers each request written to it with what answer returns.
type fakePort struct {
	mu     sync.Mutex
	answer func(req wire.Packet) []byte
	out    []byte
	lines  wire.LineBuffer
	dec    wire.Decoder
	readFn func() error // an error to return from Read, if set
}

func (f *fakePort) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lines.Feed(p, func(line []byte) error {
		pkt, err := f.dec.Line(line)
		if err != nil || pkt == nil {
			return nil
		}
		req, _ := wire.ParsePacket(pkt)
		f.out = append(f.out, f.answer(req)...)
		return nil
	})
	return len(p), nil
}

func (f *fakePort) Read(p []byte) (int, error) {
	f.mu.Lock()
	if f.readFn != nil {
		err := f.readFn()
		f.mu.Unlock()
		return 0, err
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	f.mu.Unlock()
	if n == 0 {
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

func (f *fakePort) SetReadTimeout(time.Duration) error { return nil }
func (f *fakePort) ResetInputBuffer() error            { return nil }
func (f *fakePort) Close() error                       { return nil }

func fakeProbe(t *testing.T, fp *fakePort) *Probe {
	t.Helper()
	p, err := New(Config{Port: "/dev/fake", Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.open = func(string, *serial.Mode) (port, error) { return fp, nil }
	return p
}

func reply(req wire.Packet, body any) []byte {
	h := req.Header
	h.Op++
	return wire.Encode(wire.Packet{Header: h, Body: wire.Marshal(body)}.Marshal())
}

func TestSMPSilentDeviceTimesOut(t *testing.T) {
	p := fakeProbe(t, &fakePort{answer: func(wire.Packet) []byte { return nil }})
	start := time.Now()
	_, err := p.Echo(context.Background(), "x")
	if !errors.Is(err, probes.ErrTimeout) || !strings.Contains(err.Error(), "smp:/dev/fake: echo: no answer within 200ms") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestSMPGarbageIsAnError(t *testing.T) {
	p := fakeProbe(t, &fakePort{answer: func(wire.Packet) []byte {
		return []byte("BL some console text\r\n\x06\x09!!not base64!!\n\x06\x09AAAAAAAA\n")
	}})
	_, err := p.Echo(context.Background(), "x")
	if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "garbage") {
		t.Fatalf("err = %v", err)
	}
}

func TestSMPVanishingPort(t *testing.T) {
	fp := &fakePort{answer: func(wire.Packet) []byte { return nil }, readFn: func() error { return errors.New("read /dev/fake: input/output error") }}
	p := fakeProbe(t, fp)
	_, err := p.ImageList(context.Background())
	if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "port failed") {
		t.Fatalf("err = %v", err)
	}
	if p.port != nil {
		t.Fatal("a failed port stays open")
	}
}

// The driver follows the offset the device answers with, and stale
// answers to earlier requests are skipped.
func TestSMPFollowsDeviceOffset(t *testing.T) {
	var got []byte
	data := make([]byte, 3000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	var expect uint32
	drops := 0
	fp := &fakePort{}
	fp.answer = func(req wire.Packet) []byte {
		switch req.ID {
		case wire.IDImageUpload:
			u, err := wire.ParseUploadReq(req.Body)
			if err != nil {
				return reply(req, wire.RcRsp{Rc: wire.RcEInval})
			}
			if u.Off == expect {
				if u.Off > 0 && drops == 0 {
					drops++ // drop this chunk: the device asks for it again
					return append(reply(wire.Packet{Header: wire.Header{Op: wire.OpWrite, Seq: req.Seq - 1, ID: req.ID, Group: req.Group}}, wire.UploadRsp{Off: 0}), reply(req, wire.UploadRsp{Off: expect})...)
				}
				got = append(got, u.Data...)
				expect += uint32(len(u.Data))
			}
			return reply(req, wire.UploadRsp{Off: expect})
		case wire.IDImageState:
			sum, _, _ := ImageHash(data)
			return reply(req, wire.ImageStateRsp{Images: []wire.ImageSlot{{Slot: 0, Version: "1.0.0", Hash: sum[:]}}})
		}
		return reply(req, wire.RcRsp{Rc: wire.RcENotSup})
	}
	p := fakeProbe(t, fp)
	if err := p.Flash(context.Background(), 0x10000, data, nil); err != nil {
		t.Fatal(err)
	}
	if string(got) != string(data) || drops != 1 {
		t.Fatalf("device got %d bytes, %d drops", len(got), drops)
	}
	// A device reporting another hash: ErrVerify naming both.
	data[0] ^= 1
	expect, got = 0, nil
	fp.answer = func(req wire.Packet) []byte {
		if req.ID == wire.IDImageState {
			return reply(req, wire.ImageStateRsp{Images: []wire.ImageSlot{{Slot: 0, Version: "1.0.0", Hash: make([]byte, 32)}}})
		}
		u, _ := wire.ParseUploadReq(req.Body)
		return reply(req, wire.UploadRsp{Off: u.Off + uint32(len(u.Data))})
	}
	if err := p.Flash(context.Background(), 0, data, nil); !errors.Is(err, probes.ErrVerify) || !strings.Contains(err.Error(), "smp:/dev/fake") {
		t.Fatalf("hash mismatch: %v", err)
	}
}

func TestSMPOpenSettings(t *testing.T) {
	for _, tt := range []struct {
		s       probes.MapSettings
		wantErr string
	}{
		{s: probes.MapSettings{"port": "/dev/ttyACM0", "baud": 115200, "mtu": 1024, "timeout": "2s", "reset": "none", "line_delay": "20ms"}},
		{s: probes.MapSettings{"port": "p", "line_delay": "soon"}, wantErr: `line_delay: "soon"`},
		{s: probes.MapSettings{"port": "p", "line_delay": "2s"}, wantErr: "line_delay: 2s out of range"},
		{s: probes.MapSettings{}, wantErr: "port: required"},
		{s: probes.MapSettings{"port": "p", "mtu": 64}, wantErr: "mtu: 64 out of range"},
		{s: probes.MapSettings{"port": "p", "reset": "dtr"}, wantErr: `reset: "dtr"`},
		{s: probes.MapSettings{"port": "p", "slot": 1}, wantErr: `unknown key "slot"`},
	} {
		f, err := probes.Open(Driver, tt.s)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: err %v, want %q", tt.s, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if f.String() != "smp:/dev/ttyACM0" {
			t.Errorf("String() = %q", f)
		}
		f.Close()
	}
}
