package stm32uart

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/probes"
)

// fakePort replays a device's bytes and records the host's. Once the
// replay is used up, reads fail as an unplugged port does.
type fakePort struct {
	in  *[]byte // shared by reopenings
	out *[]byte
}

func (f *fakePort) Read(p []byte) (int, error) {
	if len(*f.in) == 0 {
		return 0, io.EOF
	}
	n := copy(p, *f.in)
	*f.in = (*f.in)[n:]
	return n, nil
}

func (f *fakePort) Write(p []byte) (int, error) {
	*f.out = append(*f.out, p...)
	return len(p), nil
}

func (f *fakePort) SetReadTimeout(time.Duration) error { return nil }
func (f *fakePort) ResetInputBuffer() error            { return nil }
func (f *fakePort) Close() error                       { return nil }

func fakeProbe(t testing.TB, in []byte) (*Probe, *[]byte) {
	p, err := New(Config{Port: "fake", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rest, out := slices.Clone(in), new([]byte)
	p.open = func(string, *serial.Mode) (port, error) { return &fakePort{in: &rest, out: out}, nil }
	return p, out
}

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

var (
	ack       = []byte{bACK}
	getReply  = []byte{bACK, 9, 0x22, 0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x43, 0x73, 0x92, bACK}
	getReplyX = []byte{bACK, 9, 0x22, 0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x44, 0x73, 0x92, bACK}
	idReply   = []byte{bACK, 1, 0x04, 0x10, bACK}
)

// TestTranscript pins the bytes on the wire for one small flash.
func TestTranscript(t *testing.T) {
	tests := []struct {
		name   string
		device []byte
		eraseF []byte // erase command and frame
	}{
		{"erase", cat(ack, getReply, idReply), []byte{0x43, 0xBC, 0x00, 0x00, 0x00}},
		{"extended erase", cat(ack, getReplyX, idReply), []byte{0x44, 0xBB, 0x00, 0x00, 0x00, 0x00, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			device := cat(tt.device,
				[]byte{bACK, bACK},       // erase
				[]byte{bACK, bACK, bACK}, // write
				[]byte{bACK, bACK, bACK, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6}, // read back
			)
			p, out := fakeProbe(t, device)
			var prog [][2]int
			err := p.Flash(t.Context(), flashBase+2, []byte{1, 2, 3, 4, 5, 6}, func(d, n int) { prog = append(prog, [2]int{d, n}) })
			if err != nil {
				t.Fatal(err)
			}
			want := cat(
				[]byte{0x7F},                // sync
				[]byte{0x00, 0xFF},          // get
				[]byte{0x02, 0xFD},          // get id
				tt.eraseF,                   // page 0
				[]byte{0x31, 0xCE},          // write memory
				[]byte{0x08, 0, 0, 0, 0x08}, // address + xor
				[]byte{0x07, 0xFF, 0xFF, 1, 2, 3, 4, 5, 6, 0x00}, // N-1, padded data, xor
				[]byte{0x11, 0xEE},          // read memory
				[]byte{0x08, 0, 0, 0, 0x08}, // address + xor
				[]byte{0x07, 0xF8},          // N-1, complement
			)
			if !bytes.Equal(*out, want) {
				t.Errorf("host sent\n% x\nwant\n% x", *out, want)
			}
			if !slices.Equal(prog, [][2]int{{6, 6}}) {
				t.Errorf("progress %v", prog)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		get     []byte
		wantCmd []byte
		wantErr bool
	}{
		{name: "f1", get: getReply[1:12], wantCmd: []byte{0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x43, 0x73, 0x92}},
		{name: "version only", get: []byte{0, 0x31}, wantCmd: []byte{}},
		{name: "empty", get: nil, wantErr: true},
		{name: "short", get: []byte{3, 0x22, 0}, wantErr: true},
		{name: "long", get: []byte{0, 0x22, 0, 1}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := parseGet(tt.get)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if err == nil && (!slices.Equal(g.cmds, tt.wantCmd) || g.version != tt.get[1]) {
				t.Errorf("got %+v", g)
			}
		})
	}
	for _, tt := range []struct {
		in   []byte
		want uint16
		ok   bool
	}{
		{[]byte{1, 0x04, 0x10}, 0x410, true},
		{[]byte{3, 0x04, 0x13, 0xAA, 0xBB}, 0x413, true},
		{[]byte{0, 0x04}, 0, false},
		{[]byte{1, 0x04}, 0, false},
		{nil, 0, false},
	} {
		pid, err := parseID(tt.in)
		if (err == nil) != tt.ok || pid != tt.want {
			t.Errorf("parseID(% x) = %#x, %v", tt.in, pid, err)
		}
	}
}

func TestEraseFrame(t *testing.T) {
	tests := []struct {
		ext     bool
		pages   []uint32
		want    []byte
		wantErr string
	}{
		{false, []uint32{0, 1, 2}, []byte{2, 0, 1, 2, 2 ^ 1 ^ 2}, ""},
		{true, []uint32{0x100, 0x101}, []byte{0, 1, 1, 0, 1, 1, 0}, ""},
		{false, []uint32{256}, nil, "use extended erase"},
		{false, make([]uint32, 256), nil, "at most 255"},
		{true, []uint32{0x10000}, nil, "does not fit"},
		{true, nil, nil, "no pages"},
	}
	for _, tt := range tests {
		got, err := eraseFrame(tt.ext, tt.pages)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("eraseFrame(%v, %v): err %v, want %q", tt.ext, tt.pages, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("eraseFrame(%v, %v) = % x, %v; want % x", tt.ext, tt.pages, got, err, tt.want)
		}
	}
}

func TestSectorPartRefused(t *testing.T) {
	p, _ := fakeProbe(t, cat(ack, getReplyX, []byte{bACK, 1, 0x04, 0x13, bACK}))
	err := p.Flash(t.Context(), flashBase, make([]byte, 4), nil)
	if err == nil || !strings.Contains(err.Error(), "STM32F40xxx/41xxx (product id 0x413) has flash sectors") || !errors.Is(err, probes.ErrProbe) {
		t.Fatalf("err %v", err)
	}
}

func TestClosed(t *testing.T) {
	p, _ := fakeProbe(t, nil)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := p.Reset(t.Context()); err == nil || !strings.Contains(err.Error(), "probe is closed") {
		t.Errorf("Reset after Close: %v", err)
	}
}

// FuzzFrames feeds arbitrary device bytes to the driver's reply parsing:
// every operation must return, without panic, and progress stays within
// its total.
func FuzzFrames(f *testing.F) {
	// Small images keep seeds short: the fuzzer's minimizer is
	// quadratic in the input's length.
	ff := func(n int) []byte { return bytes.Repeat([]byte{0xFF}, n) }
	session := cat(ack, getReply, idReply,
		[]byte{bACK, bACK},               // erase page 0
		[]byte{bACK, bACK, bACK},         // write 12 bytes
		[]byte{bACK, bACK, bACK}, ff(12), // verify
		[]byte{bACK, bACK, bACK}, ff(20), // Read 20
		[]byte{bACK, bACK}, // Erase
		[]byte{bACK, bACK}, // Reset
	)
	f.Add(session)
	f.Add(bytes.ReplaceAll(session, getReply, getReplyX))
	f.Add(cat(ack, getReply, idReply, []byte{bNACK}))
	f.Add(cat([]byte{0x55, 0xAA, bNACK}, getReply, []byte{bACK, 0xFF}))
	f.Add(cat(ack, []byte{bBusy, bBusy, bACK, 0xFF, 0x22}))
	f.Add(cat(ack, []byte{bACK, 0}, idReply))
	f.Add([]byte{bACK, bACK, 0, 0, bACK, bACK, 2, 4, 0x13, 0, bACK})
	// Bounded: a session allocates at most 16 bytes a byte of device input
	// (what is kept of a frame is at most 257 bytes, of noise 64) plus
	// 64 KiB and alloccheck.FuzzSlack: the host's own frames and errors.
	f.Fuzz(func(t *testing.T, in []byte) {
		alloccheck.Bound(t, "session", len(in), 16, 64<<10+alloccheck.FuzzSlack, func() { fuzzSession(t, in) })
	})
}

func fuzzSession(t *testing.T, in []byte) {
	parseGet(in)
	parseID(in)
	p, _ := fakeProbe(t, in)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	img := bytes.Repeat([]byte{0xFF}, 10)
	p.Flash(ctx, flashBase+2, img, func(done, total int) {
		if done < 0 || done > total || total != len(img) {
			t.Fatalf("progress %d/%d", done, total)
		}
	})
	p.Read(ctx, flashBase, make([]byte, 20))
	p.Erase(ctx, flashBase, 1024)
	p.Reset(ctx)
	p.Close()
}
