package openocd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/openocd"
)

func newProbe(t *testing.T, cfg openocd.Config) *openocd.Probe {
	t.Helper()
	p, err := openocd.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// programCmd splits "program {PATH} WORDS... ADDR".
func programCmd(t *testing.T, cmd string) (path string, words []string, addr string) {
	t.Helper()
	rest, ok := strings.CutPrefix(cmd, "program {")
	if !ok {
		t.Fatalf("not a program command: %q", cmd)
	}
	path, rest, ok = strings.Cut(rest, "} ")
	if !ok {
		t.Fatalf("no braced path: %q", cmd)
	}
	f := strings.Fields(rest)
	return path, f[:len(f)-1], f[len(f)-1]
}

func TestFlash(t *testing.T) {
	image := make([]byte, 10000)
	for i := range image {
		image[i] = byte(i * 7)
	}
	image[0] = 0 // not a signature OpenOCD's loader knows
	tests := []struct {
		name      string
		program   string
		reply     func(c *fakeConn)
		wantWords []string
		wantErr   error
		wantMsg   string
	}{
		{name: "ok", reply: func(c *fakeConn) { c.reply(0, "") }, wantWords: []string{"verify"}},
		{name: "preverify", program: "preverify", reply: func(c *fakeConn) { c.reply(0, "") }, wantWords: []string{"preverify", "verify"}},
		{
			name: "notifications around the reply",
			reply: func(c *fakeConn) {
				c.notify("type target_reset mode init")
				c.notify("type target_event event reset-init")
				c.reply(0, "")
				c.notify("type target_event event halted")
			},
			wantWords: []string{"verify"},
		},
		{
			name:    "unable to reset",
			reply:   func(c *fakeConn) { c.reply(1, "** Unable to reset target **") },
			wantErr: probes.ErrProbe,
			wantMsg: ": program at 0x08000000: ** Unable to reset target **",
		},
		{
			name:    "verify failed",
			reply:   func(c *fakeConn) { c.reply(1, "** Verify Failed **") },
			wantErr: probes.ErrVerify,
			wantMsg: ": program at 0x08000000: ** Verify Failed **",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []byte
			var path string
			var words []string
			var addr string
			var mu sync.Mutex // guards what the fake saw
			fake := startFake(t, func(c *fakeConn, cmd string) {
				if cmd == "version" {
					c.reply(0, "Open On-Chip Debugger 0.12.0")
					return
				}
				mu.Lock()
				path, words, addr = programCmd(t, cmd)
				var err error
				if got, err = os.ReadFile(path); err != nil {
					t.Errorf("fake: %v", err)
				}
				mu.Unlock()
				tt.reply(c)
			})
			var notes []string // Notify runs on the caller's goroutine
			p := newProbe(t, openocd.Config{Address: fake.addr, Program: tt.program, TempDir: t.TempDir(), Notify: func(s string) {
				notes = append(notes, s)
			}})
			var prog [][2]int
			err := p.Flash(context.Background(), 0x08000000, image, func(done, total int) { prog = append(prog, [2]int{done, total}) })
			mu.Lock()
			defer mu.Unlock()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.HasSuffix(err.Error(), tt.wantMsg) {
					t.Fatalf("err %v, want %v ending in %q", err, tt.wantErr, tt.wantMsg)
				}
				if want := "openocd:" + fake.addr + tt.wantMsg; err.Error() != want {
					t.Errorf("err %q, want %q", err, want)
				}
				var ce *openocd.CommandError
				if !errors.As(err, &ce) || ce.Code != 1 || !strings.HasPrefix(ce.Command, "program {") {
					t.Errorf("err %#v is no CommandError for program", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if want := [][2]int{{0, len(image)}, {len(image), len(image)}}; !slices.Equal(prog, want) {
					t.Errorf("progress %v, want %v", prog, want)
				}
				if !slices.Equal(words, tt.wantWords) {
					t.Errorf("program words %q, want %q", words, tt.wantWords)
				}
			}
			if !bytes.Equal(got, image) {
				t.Errorf("OpenOCD read %d bytes from the image file, want the %d-byte image", len(got), len(image))
			}
			if addr != "0x08000000" || !strings.HasSuffix(path, ".bin") {
				t.Errorf("program %q at %q, want a *.bin at 0x08000000", path, addr)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("image file %s left behind: %v", path, err)
			}
			// The notification after the reply is consumed before the
			// next reply, not taken for it.
			if v, err := p.Command(context.Background(), "version"); err != nil || v != "Open On-Chip Debugger 0.12.0" {
				t.Errorf("version after program = %q, %v", v, err)
			}
			if tt.name == "notifications around the reply" {
				want := []string{"type target_reset mode init", "type target_event event reset-init", "type target_event event halted"}
				if !slices.Equal(notes, want) {
					t.Errorf("notifications %q, want %q", notes, want)
				}
			}
		})
	}
}

func TestFlashRefusals(t *testing.T) {
	fake := startFake(t, func(c *fakeConn, cmd string) { c.reply(0, "") })
	p := newProbe(t, openocd.Config{Address: fake.addr})
	tests := []struct {
		name string
		addr uint32
		data []byte
		want string
	}{
		{name: "elf", data: []byte("\x7fELF\x01\x01\x01\x00\x00\x00"), want: "starts like an ELF file"},
		{name: "ihex", data: []byte(":10000000FF"), want: "starts like an Intel HEX file"},
		{name: "srec", data: []byte("S00F0000FFFF"), want: "starts like an S-record file"},
		{name: "wraps", addr: 0xffffff00, data: make([]byte, 0x200), want: "pass the end of the 32-bit address space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.Flash(context.Background(), tt.addr, tt.data, nil)
			if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ErrProbe with %q", err, tt.want)
			}
		})
	}
	if err := p.Flash(context.Background(), 0, nil, nil); err != nil {
		t.Errorf("empty image: %v", err)
	}
	if cmds := fake.commands(); len(cmds) != 0 {
		t.Errorf("commands sent: %q", cmds)
	}
}

func TestCommands(t *testing.T) {
	tests := []struct {
		name    string
		cfg     openocd.Config
		call    func(p *openocd.Probe) error
		want    string // the command the server sees
		code    int
		msg     string
		wantErr string
	}{
		{name: "reset", call: func(p *openocd.Probe) error { return p.Reset(t.Context()) }, want: "reset run"},
		{name: "reset custom", cfg: openocd.Config{Reset: "reset halt; resume"}, call: func(p *openocd.Probe) error { return p.Reset(t.Context()) }, want: "reset halt; resume"},
		{name: "halt", call: func(p *openocd.Probe) error { return p.Halt(t.Context()) }, want: "reset halt"},
		{
			name: "erase_address", call: func(p *openocd.Probe) error { return p.Erase(t.Context(), 0x08004000, 0x4000) },
			want: "flash erase_address 0x08004000 0x4000",
		},
		{
			name: "erase_address unaligned", call: func(p *openocd.Probe) error { return p.Erase(t.Context(), 0x08004001, 0x10) },
			want: "flash erase_address 0x08004001 0x10", code: 1, msg: "",
			wantErr: ": flash erase_address at 0x08004001+0x10: failed without a message (the details are in OpenOCD's log)",
		},
		{name: "erase_sector", call: func(p *openocd.Probe) error { return p.EraseSector(t.Context(), 0, 2, 5) }, want: "flash erase_sector 0 2 5"},
		{
			name: "erase_sector refused", call: func(p *openocd.Probe) error { return p.EraseSector(t.Context(), 1, 0, 0) },
			want: "flash erase_sector 1 0 0", code: 1, msg: "flash bank 1 does not exist",
			wantErr: ": flash erase_sector bank 1 sectors 0..0: flash bank 1 does not exist",
		},
		{
			name: "reset refused", call: func(p *openocd.Probe) error { return p.Reset(t.Context()) },
			want: "reset run", code: 1, msg: `invalid command name "reset"`,
			wantErr: `: reset run: invalid command name "reset"`,
		},
		{
			name: "other tcl code", call: func(p *openocd.Probe) error { return p.Reset(t.Context()) },
			want: "reset run", code: 3, msg: "",
			wantErr: ": reset run: failed without a message (the details are in OpenOCD's log) (tcl code 3)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, func(c *fakeConn, cmd string) { c.reply(tt.code, tt.msg) })
			tt.cfg.Address = fake.addr
			p := newProbe(t, tt.cfg)
			err := tt.call(p)
			if tt.wantErr != "" {
				if !errors.Is(err, probes.ErrProbe) || err.Error() != "openocd:"+fake.addr+tt.wantErr {
					t.Fatalf("err %v, want ErrProbe %q", err, "openocd:"+fake.addr+tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if cmds := fake.commands(); !slices.Equal(cmds, []string{tt.want}) {
				t.Errorf("commands %q, want %q", cmds, tt.want)
			}
		})
	}
}

func TestEraseLocalChecks(t *testing.T) {
	fake := startFake(t, func(c *fakeConn, cmd string) { c.reply(0, "") })
	p := newProbe(t, openocd.Config{Address: fake.addr})
	if err := p.Erase(t.Context(), 0x1000, 0); err != nil {
		t.Errorf("erase of nothing: %v", err)
	}
	for _, args := range [][3]int{{-1, 0, 0}, {0, -1, 0}, {0, 3, 2}} {
		if err := p.EraseSector(t.Context(), args[0], args[1], args[2]); !errors.Is(err, probes.ErrProbe) {
			t.Errorf("EraseSector%v = %v, want ErrProbe", args, err)
		}
	}
	if err := p.Erase(t.Context(), 0xfffff000, 0x2000); !errors.Is(err, probes.ErrProbe) {
		t.Errorf("erase past 4 GiB: %v", err)
	}
	if cmds := fake.commands(); len(cmds) != 0 {
		t.Errorf("commands sent: %q", cmds)
	}
}

// memServer answers read_memory from mem at base as OpenOCD 0.12 does:
// a list of 0x.. values.
func memServer(t *testing.T, base uint32, mem []byte) *fakeServer {
	return startFake(t, func(c *fakeConn, cmd string) {
		var addr uint64
		var width, n int
		if _, err := fmt.Sscanf(cmd, "read_memory %v %d %d", &addr, &width, &n); err != nil || width != 8 {
			c.reply(1, "fake: bad command "+cmd)
			return
		}
		off := int(addr) - int(base)
		if off < 0 || off+n > len(mem) {
			c.reply(1, "read_memory: failed to read memory")
			return
		}
		vals := make([]string, n)
		for i := range n {
			vals[i] = "0x" + strconv.FormatUint(uint64(mem[off+i]), 16)
		}
		c.reply(0, strings.Join(vals, " "))
	})
}

func TestRead(t *testing.T) {
	mem := make([]byte, 10000)
	for i := range mem {
		mem[i] = byte(i*31 + i>>8)
	}
	fake := memServer(t, 0x20000000, mem)
	p := newProbe(t, openocd.Config{Address: fake.addr})
	got := make([]byte, len(mem))
	if err := p.Read(t.Context(), 0x20000000, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, mem) {
		t.Error("read back differs")
	}
	want := []string{"read_memory 0x20000000 8 4096", "read_memory 0x20001000 8 4096", "read_memory 0x20002000 8 1808"}
	if cmds := fake.commands(); !slices.Equal(cmds, want) {
		t.Errorf("commands %q, want %q", cmds, want)
	}
	err := p.Read(t.Context(), 0x20002700, make([]byte, 32))
	if want := "openocd:" + fake.addr + ": read_memory at 0x20002700 (32 bytes): read_memory: failed to read memory"; !errors.Is(err, probes.ErrProbe) || err.Error() != want {
		t.Errorf("err %v, want %q", err, want)
	}
}

func TestReadBadReplies(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		want  string
	}{
		{name: "short", reply: "0x1 0x2", want: "2 values, want 4"},
		{name: "too big", reply: "0x1 0x2 0x3 0x100", want: `"0x100" is no byte`},
		{name: "not numbers", reply: "a b c d", want: `"a" is no byte`},
		{name: "unbalanced", reply: "0x1 {0x2", want: "unmatched open brace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, func(c *fakeConn, cmd string) { c.raw("0 " + quoteTcl(tt.reply) + "\x1a") })
			p := newProbe(t, openocd.Config{Address: fake.addr})
			err := p.Read(t.Context(), 0, make([]byte, 4))
			if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want ErrProbe with %q", err, tt.want)
			}
		})
	}
}

// TestFraming covers replies in pieces, notifications, and a server that
// breaks the connection or the protocol.
func TestFraming(t *testing.T) {
	const version = "Open On-Chip Debugger 0.12.0"
	tests := []struct {
		name     string
		handle   func(c *fakeConn, cmd string)
		want     string
		wantErr  error
		wantText string
	}{
		{
			name:   "reply split across writes",
			handle: func(c *fakeConn, cmd string) { c.slowly("0 {"+version+"}\x1a", 3) },
			want:   version,
		},
		{
			name: "notifications split too",
			handle: func(c *fakeConn, cmd string) {
				c.slowly("type target_reset mode run\r\n\x1atype target_event event reset-end\r\n\x1a0 {"+version+"}\x1a", 5)
			},
			want: version,
		},
		{
			name:   "backslash quoting",
			handle: func(c *fakeConn, cmd string) { c.raw("0 a\\ \\{b\x1a") },
			want:   "a {b",
		},
		{
			name:     "closed before replying",
			handle:   func(c *fakeConn, cmd string) { c.close() },
			wantErr:  probes.ErrProbe,
			wantText: ": version: openocd closed the connection before replying; the command may have reached the target",
		},
		{
			name:     "closed mid-reply",
			handle:   func(c *fakeConn, cmd string) { c.raw("0 {Open On"); time.Sleep(10 * time.Millisecond); c.close() },
			wantErr:  probes.ErrProbe,
			wantText: `: version: openocd closed the connection mid-reply, after 10 bytes ("0 {Open On"); the command may have reached the target`,
		},
		{
			name:     "not a wrapped reply",
			handle:   func(c *fakeConn, cmd string) { c.raw("unmatched \"[\"\x1a") },
			wantErr:  probes.ErrProbe,
			wantText: `: version: probes: probe failed: unexpected reply "unmatched \"[\""`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, tt.handle)
			p := newProbe(t, openocd.Config{Address: fake.addr})
			got, err := p.Command(t.Context(), "version")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.HasPrefix(err.Error(), "openocd:"+fake.addr+tt.wantText) {
					t.Fatalf("err %v, want %v starting %q", err, tt.wantErr, "openocd:"+fake.addr+tt.wantText)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Command = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// TestReconnect: after OpenOCD drops the connection, mid-command or
// between commands, the next operation connects again.
func TestReconnect(t *testing.T) {
	var mu sync.Mutex
	n := 0
	fake := startFake(t, func(c *fakeConn, cmd string) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		switch k {
		case 1:
			c.raw("0 {par")
			c.close()
		case 2:
			c.reply(0, "")
			c.notify("type target_event event halted")
			c.close() // between commands, after a notification
		default:
			c.reply(0, "")
		}
	})
	var notes []string
	p := newProbe(t, openocd.Config{Address: fake.addr, Notify: func(s string) { notes = append(notes, s) }})
	if err := p.Reset(t.Context()); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "mid-reply") {
		t.Fatalf("first reset: %v", err)
	}
	if err := p.Reset(t.Context()); err != nil {
		t.Fatalf("second reset: %v", err)
	}
	time.Sleep(20 * time.Millisecond) // let the close arrive
	if err := p.Reset(t.Context()); err != nil {
		t.Fatalf("third reset: %v", err)
	}
	if c := fake.connections(); c != 3 {
		t.Errorf("%d connections, want 3", c)
	}
	if want := []string{"type target_event event halted"}; !slices.Equal(notes, want) {
		t.Errorf("notifications %q, want %q", notes, want)
	}
}

// TestStrayFrame: a frame that arrives while no command is pending is
// not taken for the next command's reply.
func TestStrayFrame(t *testing.T) {
	fake := startFake(t, func(c *fakeConn, cmd string) {
		if cmd == "first" {
			c.raw("0 one\x1a0 stray\x1a")
			return
		}
		c.reply(0, "two")
	})
	p := newProbe(t, openocd.Config{Address: fake.addr})
	if got, err := p.Command(t.Context(), "first"); err != nil || got != "one" {
		t.Fatalf("first = %q, %v", got, err)
	}
	time.Sleep(20 * time.Millisecond) // let the stray frame arrive
	if got, err := p.Command(t.Context(), "second"); err != nil || got != "two" {
		t.Fatalf("second = %q, %v; want two", got, err)
	}
}

func TestTimeouts(t *testing.T) {
	silent := func(c *fakeConn, cmd string) {}
	t.Run("own timeout", func(t *testing.T) {
		fake := startFake(t, silent)
		p := newProbe(t, openocd.Config{Address: fake.addr, Timeout: 100 * time.Millisecond})
		start := time.Now()
		err := p.Reset(t.Context())
		if !errors.Is(err, probes.ErrTimeout) || !strings.Contains(err.Error(), "reset run: no reply within 100ms") {
			t.Fatalf("err %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("ctx deadline", func(t *testing.T) {
		fake := startFake(t, silent)
		p := newProbe(t, openocd.Config{Address: fake.addr})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		err := p.Flash(ctx, 0x08000000, make([]byte, 64), nil)
		if !errors.Is(err, probes.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err %v, want ErrTimeout and DeadlineExceeded", err)
		}
	})
	t.Run("ctx cancel", func(t *testing.T) {
		fake := startFake(t, silent)
		p := newProbe(t, openocd.Config{Address: fake.addr})
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		err := p.Read(ctx, 0, make([]byte, 4))
		if !errors.Is(err, context.Canceled) || errors.Is(err, probes.ErrTimeout) {
			t.Fatalf("err %v, want Canceled", err)
		}
	})
	t.Run("notifications do not extend the wait", func(t *testing.T) {
		fake := startFake(t, func(c *fakeConn, cmd string) {
			for range 20 {
				c.notify("type target_event event halted")
				time.Sleep(20 * time.Millisecond)
			}
		})
		p := newProbe(t, openocd.Config{Address: fake.addr, Timeout: 100 * time.Millisecond})
		if err := p.Reset(t.Context()); !errors.Is(err, probes.ErrTimeout) {
			t.Fatalf("err %v, want ErrTimeout", err)
		}
	})
}

func TestClosed(t *testing.T) {
	fake := startFake(t, func(c *fakeConn, cmd string) { c.reply(0, "") })
	p := newProbe(t, openocd.Config{Address: fake.addr})
	if err := p.Reset(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := p.Reset(t.Context()); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "probe is closed") {
		t.Errorf("Reset after Close: %v", err)
	}
}

func TestConnectRefused(t *testing.T) {
	fake := startFake(t, func(c *fakeConn, cmd string) {})
	addr := fake.addr
	fake.ln.Close()
	p := newProbe(t, openocd.Config{Address: addr})
	err := p.Reset(t.Context())
	if !errors.Is(err, probes.ErrProbe) || !strings.HasPrefix(err.Error(), "openocd:"+addr+": connect: ") {
		t.Fatalf("err %v", err)
	}
}

func TestCommandRefusesUnsafe(t *testing.T) {
	fake := startFake(t, func(c *fakeConn, cmd string) { c.reply(0, "") })
	p := newProbe(t, openocd.Config{Address: fake.addr})
	for _, cmd := range []string{"echo {", "echo }", "echo \x1a", `echo \`} {
		if _, err := p.Command(t.Context(), cmd); !errors.Is(err, probes.ErrProbe) {
			t.Errorf("Command(%q) = %v, want ErrProbe", cmd, err)
		}
	}
	if cmds := fake.commands(); len(cmds) != 0 {
		t.Errorf("commands sent: %q", cmds)
	}
}
