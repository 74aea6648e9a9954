package esprom_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/esprom"
	simesp "github.com/fudbench/fudbench/sim/esprom"
)

func img(n int) []byte {
	rng := rand.New(rand.NewPCG(5, 6))
	b := make([]byte, n)
	for i := range b {
		if i/256%2 == 0 {
			b[i] = byte(rng.Uint32())
		}
	}
	return b
}

func open(t *testing.T, d *simesp.Device, extra map[string]any) probes.Flasher {
	t.Helper()
	s := probes.MapSettings{"port": d.Path(), "reset": "none", "timeout": "1s"}
	for k, v := range extra {
		s[k] = v
	}
	p, err := probes.Open("esprom", s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestFlashSim flashes the emulated ROM over a pty, compressed and not,
// with a baud change, and resets it with FLASH_END.
func TestFlashSim(t *testing.T) {
	for _, compress := range []bool{true, false} {
		d, err := simesp.New(simesp.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d.Load(0x20000, make([]byte, 8192))
		p := open(t, d, map[string]any{"compress": compress, "flash_baud": 921600})
		data := img(256 << 10)
		start := time.Now()
		calls := 0
		if err := p.Flash(context.Background(), 0x10000, data, func(done, total int) { calls++ }); err != nil {
			t.Fatal(err)
		}
		t.Logf("compress=%v: 256 KiB in %v (pty: the baud rate does not limit it)", compress, time.Since(start))
		if !bytes.Equal(d.Flash()[0x10000:0x10000+len(data)], data) {
			t.Fatalf("compress=%v: flash differs", compress)
		}
		if calls == 0 || d.Baud() != 921600 {
			t.Errorf("progress calls %d, baud %d", calls, d.Baud())
		}
		hasDefl := bytes.Contains(d.Ops(), []byte{0x11})
		if hasDefl != compress {
			t.Errorf("compress=%v but FLASH_DEFL_DATA sent: %v", compress, hasDefl)
		}
		if err := p.Reset(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !d.Running() {
			t.Error("FLASH_END reboot did not start the firmware")
		}
	}
}

// TestFlashWrongMD5: a flash whose MD5 differs is refused, naming the
// port.
func TestFlashWrongMD5(t *testing.T) {
	off := 100
	d, err := simesp.New(simesp.Options{CorruptMD5: &off})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	p := open(t, d, nil)
	err = p.Flash(context.Background(), 0, img(4096), nil)
	if !errors.Is(err, probes.ErrVerify) || !strings.Contains(err.Error(), d.Path()) {
		t.Fatalf("want a verify error naming %s, got %v", d.Path(), err)
	}
}

// TestFlashNoAnswer: a silent device and one answering garbage are
// errors within the timeout.
func TestFlashNoAnswer(t *testing.T) {
	for _, o := range []simesp.Options{{Silent: true}, {Garbage: bytes.Repeat([]byte{0xC0, 0x01, 0x08, 0xDB}, 64)}} {
		d, err := simesp.New(o)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		p := open(t, d, nil)
		start := time.Now()
		err = p.Flash(context.Background(), 0, img(1024), nil)
		if !errors.Is(err, probes.ErrTimeout) && !errors.Is(err, probes.ErrProbe) {
			t.Fatalf("want an error, got %v", err)
		}
		if el := time.Since(start); el > 3*time.Second {
			t.Errorf("took %v", el)
		}
		t.Logf("%v after %v", err, time.Since(start))
	}
}

// TestFlashPortGone: a vanished port is an error, not a hang.
func TestFlashPortGone(t *testing.T) {
	d, err := simesp.New(simesp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p := open(t, d, nil)
	if err := p.Flash(context.Background(), 0, img(1024), nil); err != nil {
		t.Fatal(err)
	}
	d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Flash(ctx, 0, img(64<<10), nil); err == nil {
		t.Fatal("flash to a closed port passed")
	} else {
		t.Log(err)
	}
}

func TestSettings(t *testing.T) {
	for _, s := range []probes.MapSettings{{}, {"port": "/dev/x", "reset": "maybe"}, {"port": "/dev/x", "bogus": 1}} {
		if _, err := probes.Open("esprom", s); err == nil {
			t.Errorf("%v accepted", s)
		}
	}
}

// linesPort is a pseudo-terminal port whose modem lines drive the
// emulated board's auto-reset circuit: what a USB-serial adapter's DTR and
// RTS do on an ESP32 dev board.
type linesPort struct {
	serial.Port
	d        *simesp.Device
	mu       sync.Mutex
	dtr, rts bool
	seq      []string
}

func (p *linesPort) set(dtr, rts *bool, name string, v bool) error {
	p.mu.Lock()
	if dtr != nil {
		p.dtr = *dtr
	}
	if rts != nil {
		p.rts = *rts
	}
	p.seq = append(p.seq, fmt.Sprintf("%s=%v", name, v))
	d, r := p.dtr, p.rts
	p.mu.Unlock()
	p.d.Lines(d, r)
	return nil
}

func (p *linesPort) SetDTR(v bool) error { return p.set(&v, nil, "DTR", v) }
func (p *linesPort) SetRTS(v bool) error { return p.set(nil, &v, "RTS", v) }

// TestFlashAutoReset: a board running its firmware (GPIO0 high at
// power-on) answers no SYNC; with reset: none the probe says so. With
// reset: dtr-rts the classic sequence (EN low, then EN rising with GPIO0
// low) puts it in its loader through the dev board's circuit, the flash is
// written, and the probe's reset (an RTS pulse with DTR released) boots the
// firmware.
func TestFlashAutoReset(t *testing.T) {
	d, err := simesp.New(simesp.Options{Running: true})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	data := img(16 << 10)
	p := open(t, d, nil)
	if err := p.Flash(context.Background(), 0x10000, data, nil); !errors.Is(err, probes.ErrTimeout) || !strings.Contains(err.Error(), "no answer to SYNC") {
		t.Fatalf("reset none on a running board: %v, want no answer to SYNC", err)
	}
	p.Close()

	var port *linesPort
	defer esprom.SetOpenPort(func(path string, m *serial.Mode) (serial.Port, error) {
		sp, err := serial.Open(path, m)
		if err != nil {
			return nil, err
		}
		port = &linesPort{Port: sp, d: d}
		return port, nil
	})()
	p = open(t, d, map[string]any{"reset": "dtr-rts"})
	if err := p.Flash(context.Background(), 0x10000, data, nil); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.Flash()[0x10000:0x10000+len(data)], data) {
		t.Fatal("flash differs")
	}
	port.mu.Lock()
	seq := strings.Join(port.seq, " ")
	port.mu.Unlock()
	if !strings.HasPrefix(seq, "DTR=false RTS=true DTR=true RTS=false DTR=false RTS=false") {
		t.Errorf("modem lines %s: want the classic reset into the loader first", seq)
	}
	if err := p.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * simesp.ENDelay)
	if !d.Running() {
		t.Error("the RTS pulse did not boot the firmware")
	}
}
