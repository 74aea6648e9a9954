package probetest_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/probetest"
)

func TestFlasher(t *testing.T) {
	boom := errors.New("boom")
	data := bytes.Repeat([]byte{0xa5}, 3000)
	tests := []struct {
		name     string
		f        *probetest.Flasher
		addr     uint32
		ctx      func() (context.Context, context.CancelFunc)
		wantErr  error
		wantProg []int
		wantMem  []byte // at addr after the call, len(data) bytes
	}{
		{name: "ok", f: &probetest.Flasher{}, addr: 0x100, wantProg: []int{1024, 2048, 3000}, wantMem: data},
		{name: "chunk", f: &probetest.Flasher{Chunk: 2000}, addr: 0, wantProg: []int{2000, 3000}, wantMem: data},
		{name: "flash error", f: &probetest.Flasher{FlashErr: boom}, wantErr: boom, wantMem: bytes.Repeat([]byte{0xff}, 3000)},
		{name: "out of range", f: &probetest.Flasher{Size: 2048}, wantErr: probes.ErrProbe},
		{name: "below base", f: &probetest.Flasher{Base: 0x1000}, addr: 0x800, wantErr: probes.ErrProbe},
		{
			name: "dies mid-write", f: &probetest.Flasher{FailAfter: 1500}, wantErr: probes.ErrProbe, wantProg: []int{1024, 1500},
			wantMem: append(bytes.Repeat([]byte{0xa5}, 1500), bytes.Repeat([]byte{0xff}, 1500)...),
		},
		{
			name: "corrupt", f: &probetest.Flasher{Corrupt: true, ErasedZero: true}, wantErr: probes.ErrVerify, wantProg: []int{1024, 2048, 3000},
			wantMem: append([]byte{0xa4}, data[1:]...),
		},
		{
			name: "deadline", f: &probetest.Flasher{Delay: time.Hour}, wantErr: probes.ErrTimeout,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 10*time.Millisecond)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx()
			}
			defer cancel()
			var prog []int
			err := tt.f.Flash(ctx, tt.addr, data, func(done, total int) {
				if total != len(data) {
					t.Errorf("total %d", total)
				}
				prog = append(prog, done)
			})
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Flash: %v, want %v", err, tt.wantErr)
			}
			if !slices.Equal(prog, tt.wantProg) {
				t.Errorf("progress %v, want %v", prog, tt.wantProg)
			}
			if tt.wantMem != nil && !bytes.Equal(tt.f.Memory(tt.addr, len(data)), tt.wantMem) {
				t.Errorf("memory after Flash differs")
			}
			calls := tt.f.Calls()
			if len(calls) != 1 || calls[0].Op != "flash" || calls[0].Addr != tt.addr || calls[0].Len != len(data) || !errors.Is(calls[0].Err, tt.wantErr) {
				t.Errorf("calls %+v", calls)
			}
		})
	}
}

func TestFlasherOtherCalls(t *testing.T) {
	ctx := context.Background()
	f := &probetest.Flasher{Name: "x", Base: 0x08000000, BlockSize: 1024}
	if f.String() != "fake:x" {
		t.Errorf("String() = %q", f)
	}
	if err := f.Flash(ctx, 0x08000000, bytes.Repeat([]byte{1}, 4096), nil); err != nil {
		t.Fatal(err)
	}
	// Erase rounds to whole blocks.
	if err := f.Erase(ctx, 0x08000400+10, 20); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if err := f.Read(ctx, 0x08000000, got); err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte{1}, 4096)
	copy(want[1024:2048], bytes.Repeat([]byte{0xff}, 1024))
	if !bytes.Equal(got, want) {
		t.Error("Erase did not erase exactly the covering block")
	}
	if err := f.Halt(ctx); err != nil || !f.Halted() {
		t.Errorf("Halt: %v, halted %v", err, f.Halted())
	}
	if err := f.Reset(ctx); err != nil || f.Halted() {
		t.Errorf("Reset: %v, halted %v", err, f.Halted())
	}
	f.ResetErr = errors.New("stuck")
	if err := f.Reset(ctx); err == nil {
		t.Error("ResetErr not returned")
	}
	if err := f.Read(ctx, 0x09000000, got); !errors.Is(err, probes.ErrProbe) {
		t.Errorf("Read out of range: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	want2 := []string{"flash", "erase", "read", "halt", "reset", "reset", "read", "close"}
	if got := f.Ops(); !slices.Equal(got, want2) {
		t.Errorf("Ops() = %v, want %v", got, want2)
	}
}
