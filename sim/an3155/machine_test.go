package an3155

import (
	"bytes"
	"slices"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// Frame builders, as a host sends them.

func cmd(c byte) []byte { return []byte{c, ^c} }

func addr(a uint32) []byte {
	b := []byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}
	return append(b, xor(b))
}

func data(d ...byte) []byte {
	out := append([]byte{byte(len(d) - 1)}, d...)
	return append(out, xor(out))
}

func pages43(p ...byte) []byte {
	out := append([]byte{byte(len(p) - 1)}, p...)
	return append(out, xor(out))
}

func pages44(p ...uint16) []byte {
	n := len(p) - 1
	out := []byte{byte(n >> 8), byte(n)}
	for _, v := range p {
		out = append(out, byte(v>>8), byte(v))
	}
	return append(out, xor(out))
}

func cat(parts ...[]byte) []byte { return slices.Concat(parts...) }

func run(m *machine, in []byte) []byte {
	var out []byte
	for _, b := range in {
		out = append(out, m.feed(b)...)
	}
	return out
}

func TestMachine(t *testing.T) {
	getList := []byte{ACK, 9, Version, 0x00, 0x01, 0x02, 0x11, 0x21, 0x31, 0x43, 0x73, 0x92, ACK}
	getListExt := slices.Clone(getList)
	getListExt[9] = 0x44
	ff4 := []byte{0xFF, 0xFF, 0xFF, 0xFF}
	tests := []struct {
		name  string
		ext   bool
		load  []byte // flash content from FlashBase before the input
		nack  func(Command) bool
		in    []byte // after the sync
		want  []byte // after the sync's ACK
		check func(t *testing.T, m *machine)
	}{
		{name: "get", in: cmd(CmdGet), want: getList},
		{name: "get extended", ext: true, in: cmd(CmdGet), want: getListExt},
		{name: "get version", in: cmd(CmdGetVersion), want: []byte{ACK, Version, 0, 0, ACK}},
		{name: "get id", in: cmd(CmdGetID), want: []byte{ACK, 1, 0x04, 0x10, ACK}},
		{name: "bad complement", in: []byte{0x00, 0x00}, want: []byte{NACK}},
		{name: "unsupported command", in: cmd(0x63), want: []byte{NACK}},
		{name: "extended erase not offered", in: cmd(CmdExtendedErase), want: []byte{NACK}},
		{name: "erase not offered", ext: true, in: cmd(CmdErase), want: []byte{NACK}},
		{name: "second sync is half a command", in: []byte{Sync}, want: nil},
		{name: "two more syncs draw a nack", in: []byte{Sync, Sync}, want: []byte{NACK}},
		{name: "resync then command", in: cat([]byte{Sync, Sync}, cmd(CmdGetID)), want: []byte{NACK, ACK, 1, 0x04, 0x10, ACK}},
		{
			name: "read flash", load: []byte{1, 2, 3, 4, 5},
			in: cat(cmd(CmdRead), addr(FlashBase+1), []byte{3, ^byte(3)}), want: []byte{ACK, ACK, ACK, 2, 3, 4, 5},
		},
		{name: "read 256", in: cat(cmd(CmdRead), addr(FlashBase), []byte{0xFF, 0x00}), want: cat([]byte{ACK, ACK, ACK}, bytes.Repeat([]byte{0xFF}, 256))},
		{name: "read bad address checksum", in: cat(cmd(CmdRead), []byte{0x08, 0, 0, 0, 0}), want: []byte{ACK, NACK}},
		{name: "read unmapped", in: cat(cmd(CmdRead), addr(0x30000000)), want: []byte{ACK, NACK}},
		{name: "read bad length complement", in: cat(cmd(CmdRead), addr(FlashBase), []byte{3, 3}), want: []byte{ACK, ACK, NACK}},
		{name: "read past flash end", in: cat(cmd(CmdRead), addr(FlashBase+FlashSize-4), []byte{7, ^byte(7)}), want: []byte{ACK, ACK, NACK}},
		{name: "read option bytes", in: cat(cmd(CmdRead), addr(OptionBase), []byte{3, ^byte(3)}), want: []byte{ACK, ACK, ACK, 0xA5, 0x5A, 0xFF, 0x00}},
		{name: "read flash size register", in: cat(cmd(CmdRead), addr(flashSizeReg), []byte{1, ^byte(1)}), want: []byte{ACK, ACK, ACK, 128, 0}},
		{name: "read ram", in: cat(cmd(CmdRead), addr(RAMBase+RAMSize-2), []byte{1, ^byte(1)}), want: []byte{ACK, ACK, ACK, 0, 0}},
		{
			name: "write flash", in: cat(cmd(CmdWrite), addr(FlashBase+8), data(0x11, 0x22, 0x33, 0x44)), want: []byte{ACK, ACK, ACK},
			check: func(t *testing.T, m *machine) { wantFlash(t, m, 8, []byte{0x11, 0x22, 0x33, 0x44}) },
		},
		{
			name: "write clears bits only", load: []byte{0xF0, 0x0F, 0xFF, 0x00},
			in: cat(cmd(CmdWrite), addr(FlashBase), data(0x0F, 0xF0, 0xAA, 0xFF)), want: []byte{ACK, ACK, ACK},
			check: func(t *testing.T, m *machine) { wantFlash(t, m, 0, []byte{0x00, 0x00, 0xAA, 0x00}) },
		},
		{name: "write bad checksum", in: cat(cmd(CmdWrite), addr(FlashBase), []byte{3, 1, 2, 3, 4, 0}), want: []byte{ACK, ACK, NACK}},
		{name: "write unaligned flash", in: cat(cmd(CmdWrite), addr(FlashBase+2), data(1, 2, 3, 4)), want: []byte{ACK, ACK, NACK}},
		{name: "write partial word to flash", in: cat(cmd(CmdWrite), addr(FlashBase), data(1, 2, 3)), want: []byte{ACK, ACK, NACK}},
		{
			name: "write odd bytes to ram", in: cat(cmd(CmdWrite), addr(RAMBase+1), data(1, 2, 3)), want: []byte{ACK, ACK, ACK},
			check: func(t *testing.T, m *machine) {
				if !bytes.Equal(m.ram[1:4], []byte{1, 2, 3}) {
					t.Errorf("ram % x", m.ram[:4])
				}
			},
		},
		{name: "write past flash end", in: cat(cmd(CmdWrite), addr(FlashBase+FlashSize-4), data(1, 2, 3, 4, 5, 6, 7, 8)), want: []byte{ACK, ACK, NACK}},
		{name: "write option bytes refused", in: cat(cmd(CmdWrite), addr(OptionBase)), want: []byte{ACK, NACK}},
		{name: "write system memory refused", in: cat(cmd(CmdWrite), addr(SystemBase)), want: []byte{ACK, NACK}},
		{
			name: "erase pages", load: bytes.Repeat([]byte{0}, 3*PageSize),
			in: cat(cmd(CmdErase), pages43(0, 2)), want: []byte{ACK, ACK},
			check: func(t *testing.T, m *machine) {
				wantFlash(t, m, 0, ff4)
				wantFlash(t, m, PageSize, []byte{0, 0, 0, 0})
				wantFlash(t, m, 3*PageSize-4, ff4)
				wantLast(t, m, Command{Code: CmdErase, Pages: []int{0, 2}})
			},
		},
		{
			name: "erase global", load: []byte{0, 0, 0, 0},
			in: cat(cmd(CmdErase), []byte{0xFF, 0x00}), want: []byte{ACK, ACK},
			check: func(t *testing.T, m *machine) {
				wantFlash(t, m, 0, ff4)
				wantLast(t, m, Command{Code: CmdErase, Special: 0xFF})
			},
		},
		{name: "erase global bad checksum", in: cat(cmd(CmdErase), []byte{0xFF, 0x01}), want: []byte{ACK, NACK}},
		{name: "erase page beyond flash", in: cat(cmd(CmdErase), pages43(128)), want: []byte{ACK, NACK}},
		{name: "erase bad checksum", in: cat(cmd(CmdErase), []byte{0, 1, 0}), want: []byte{ACK, NACK}},
		{
			name: "extended erase pages", ext: true, load: bytes.Repeat([]byte{0}, 8*PageSize),
			in: cat(cmd(CmdExtendedErase), pages44(5, 6)), want: []byte{ACK, ACK},
			check: func(t *testing.T, m *machine) {
				wantFlash(t, m, 5*PageSize, ff4)
				wantFlash(t, m, 7*PageSize-4, ff4)
				wantFlash(t, m, 7*PageSize, []byte{0, 0, 0, 0})
				wantLast(t, m, Command{Code: CmdExtendedErase, Pages: []int{5, 6}})
			},
		},
		{
			name: "extended erase global", ext: true, load: []byte{0, 0, 0, 0},
			in: cat(cmd(CmdExtendedErase), []byte{0xFF, 0xFF, 0x00}), want: []byte{ACK, ACK},
			check: func(t *testing.T, m *machine) {
				wantFlash(t, m, 0, ff4)
				wantLast(t, m, Command{Code: CmdExtendedErase, Special: 0xFFFF})
			},
		},
		{name: "extended erase bank 1", ext: true, in: cat(cmd(CmdExtendedErase), []byte{0xFF, 0xFE, 0x01}), want: []byte{ACK, ACK}},
		{name: "extended erase bank 2 missing", ext: true, in: cat(cmd(CmdExtendedErase), []byte{0xFF, 0xFD, 0x02}), want: []byte{ACK, NACK}},
		{name: "extended erase reserved code", ext: true, in: cat(cmd(CmdExtendedErase), []byte{0xFF, 0xF0, 0x0F}), want: []byte{ACK, NACK}},
		{name: "extended erase bad checksum", ext: true, in: cat(cmd(CmdExtendedErase), []byte{0xFF, 0xFF, 0x01}), want: []byte{ACK, NACK}},
		{name: "extended erase page beyond flash", ext: true, in: cat(cmd(CmdExtendedErase), pages44(1, 128)), want: []byte{ACK, NACK}},
		{
			name: "go runs firmware", in: cat(cmd(CmdGo), addr(FlashBase), cmd(CmdGet), []byte{Sync}), want: []byte{ACK, ACK},
			check: func(t *testing.T, m *machine) {
				if m.st != stRunning {
					t.Errorf("state %d after Go, want running", m.st)
				}
				wantLast(t, m, Command{Code: CmdGo, Addr: FlashBase})
			},
		},
		{name: "go nowhere", in: cat(cmd(CmdGo), addr(0)), want: []byte{ACK, NACK}},
		{
			name: "write unprotect resets", in: cat(cmd(CmdWriteUnprotect), cmd(CmdGet), []byte{Sync}), want: []byte{ACK, ACK, ACK},
		},
		{
			name: "readout unprotect erases and resets", load: []byte{0, 0, 0, 0},
			in: cat(cmd(CmdReadoutUnprotect), []byte{Sync}, cmd(CmdGetID)), want: []byte{ACK, ACK, ACK, ACK, 1, 0x04, 0x10, ACK},
			check: func(t *testing.T, m *machine) { wantFlash(t, m, 0, ff4) },
		},
		{
			name: "injected nack",
			nack: func(c Command) bool { return c.Code == CmdWrite && c.Addr == FlashBase+0x400 },
			in:   cat(cmd(CmdWrite), addr(FlashBase), data(1, 2, 3, 4), cmd(CmdWrite), addr(FlashBase+0x400), data(1, 2, 3, 4)),
			want: []byte{ACK, ACK, ACK, ACK, ACK, NACK},
			check: func(t *testing.T, m *machine) {
				wantFlash(t, m, 0x400, ff4)
				wantLast(t, m, Command{Code: CmdWrite, Addr: FlashBase + 0x400, Len: 4, NACK: true})
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMachine(tt.ext, tt.nack)
			copy(m.flash, tt.load)
			if got := run(m, []byte{0x00, 0x55, Sync}); !bytes.Equal(got, []byte{ACK}) {
				t.Fatalf("sync: got % x, want 79", got)
			}
			if got := run(m, tt.in); !bytes.Equal(got, tt.want) {
				t.Errorf("got  % x\nwant % x", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, m)
			}
		})
	}
}

func wantFlash(t *testing.T, m *machine, off int, want []byte) {
	t.Helper()
	if got := m.flash[off : off+len(want)]; !bytes.Equal(got, want) {
		t.Errorf("flash at %#x: % x, want % x", off, got, want)
	}
}

func wantLast(t *testing.T, m *machine, want Command) {
	t.Helper()
	if len(m.log) == 0 {
		t.Fatal("no command recorded")
	}
	got := m.log[len(m.log)-1]
	if got.String() != want.String() || !slices.Equal(got.Pages, want.Pages) {
		t.Errorf("last command %v, want %v", got, want)
	}
}

func TestCommandString(t *testing.T) {
	tests := []struct {
		c    Command
		want string
	}{
		{Command{Code: Sync}, "sync"},
		{Command{Code: Sync, NACK: true}, "0x7f NACK"},
		{Command{Code: CmdWrite, Addr: FlashBase, Len: 256}, "0x31 at 0x08000000 len 256"},
		{Command{Code: CmdGo, Addr: FlashBase}, "0x21 at 0x08000000"},
		{Command{Code: CmdExtendedErase, Special: 0xFFFF}, "0x44 special 0xffff"},
		{Command{Code: CmdErase, Pages: []int{0, 1}, NACK: true}, "0x43 pages [0 1] NACK"},
	}
	for _, tt := range tests {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("%#v: %q, want %q", tt.c, got, tt.want)
		}
	}
}

// FuzzFrames feeds arbitrary bytes to the bootloader: it must neither
// panic nor answer one byte with more than a full read, and flash keeps
// its size.
func FuzzFrames(f *testing.F) {
	f.Add(false, []byte{Sync, 0x00, 0xFF, 0x01, 0xFE, 0x02, 0xFD})
	f.Add(false, cat([]byte{Sync}, cmd(CmdRead), addr(FlashBase), []byte{0xFF, 0x00}))
	f.Add(false, cat([]byte{Sync}, cmd(CmdWrite), addr(FlashBase), data(1, 2, 3, 4)))
	f.Add(false, cat([]byte{Sync}, cmd(CmdErase), pages43(0, 1, 2)))
	f.Add(true, cat([]byte{Sync}, cmd(CmdExtendedErase), pages44(0, 1, 2)))
	f.Add(true, cat([]byte{Sync}, cmd(CmdExtendedErase), []byte{0xFF, 0xFF, 0x00}))
	f.Add(true, cat([]byte{Sync}, cmd(CmdExtendedErase), []byte{0xFF, 0xEF}))
	f.Add(false, cat([]byte{Sync}, cmd(CmdGo), addr(RAMBase)))
	f.Add(false, cat([]byte{Sync}, cmd(CmdReadoutUnprotect), []byte{Sync, Sync, Sync}))
	// Bounded: beyond the machine's memory (newMachine, outside the
	// measure), at most 128 bytes allocated a byte fed plus 16 KiB and
	// alloccheck.FuzzSlack. The worst is a stream of refused two-byte
	// commands: each adds a 64-byte log entry (twice that as the log
	// grows, until MaxLog) and a reply, about 90 bytes a byte.
	f.Fuzz(func(t *testing.T, ext bool, in []byte) {
		m := newMachine(ext, nil)
		alloccheck.Bound(t, "feed", len(in), 128, 16<<10+alloccheck.FuzzSlack, func() {
			for i, b := range in {
				if out := m.feed(b); len(out) > 1+maxData {
					t.Fatalf("byte %d: %d bytes of reply", i, len(out))
				}
			}
		})
		if len(m.flash) != FlashSize || len(m.ram) != RAMSize {
			t.Fatalf("memory resized: flash %d, ram %d", len(m.flash), len(m.ram))
		}
	})
}
