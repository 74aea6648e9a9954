package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/fudbench/fudbench/internal/peers"
	"github.com/fudbench/fudbench/internal/smp"
)

// brickedBoard is a naive-inplace board bricked by a cut in the middle of
// an update: halted, serving SMP serial recovery on its console.
func brickedBoard(t *testing.T, cfg Config) *Board {
	t.Helper()
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	cfg.Strategy = NaiveInplace
	b := newBoard(t, cfg, base)
	b.CutAtFlashOp(b.Flash().Ops() + 900)
	if err := naiveUpload(t, b, buildImage(t, "1.5.0", 2, 16<<10, 3), 6); err == nil {
		t.Fatal("upload finished before the cut")
	}
	powerOn(t, b, ModeHalted)
	return b
}

func mcumgr(t *testing.T, bin, port string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--conntype", "serial", "--connstring", "dev=" + port + ",baud=115200", "-t", "5"}, args...)
	out, err := exec.CommandContext(ctx, bin, all...).CombinedOutput()
	if err != nil {
		t.Fatalf("mcumgr %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The mcumgr CLI brings a bricked board back through its serial recovery:
// echo, image list, upload (window 1 and the default 5), test, confirm,
// an unsupported command, reset; the board then runs the uploaded image.
func TestSMPSerialRecoveryMcumgr(t *testing.T) {
	bin := peers.NeedMcumgr(t)
	for _, window := range []string{"1", "5"} {
		t.Run("window"+window, func(t *testing.T) {
			b := brickedBoard(t, Config{})
			port := b.ConsoleLink()
			if out := mcumgr(t, bin, port, "echo", "hello"); strings.TrimSpace(out) != "hello" {
				t.Fatalf("echo: %q", out)
			}
			if out := mcumgr(t, bin, port, "image", "list"); !strings.Contains(out, "Images:") || strings.Contains(out, "slot=") {
				t.Fatalf("image list of a torn slot: %q", out)
			}
			img := buildImage(t, "2.0.0", 3, 12<<10, 9)
			file := filepath.Join(t.TempDir(), "app.img")
			if err := os.WriteFile(file, img, 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if out := mcumgr(t, bin, port, "image", "upload", "-w", window, file); !strings.Contains(out, "Done") || strings.Contains(out, "Error") {
				t.Fatalf("upload: %q", out)
			}
			t.Logf("mcumgr -w %s: %d bytes in %v", window, len(img), time.Since(start).Round(time.Millisecond))
			sum := sha256.Sum256(img)
			h := hex.EncodeToString(sum[:])
			out := mcumgr(t, bin, port, "image", "list")
			if !strings.Contains(out, "image=0 slot=0") || !strings.Contains(out, "version: 2.0.0") || !strings.Contains(out, "hash: "+h) {
				t.Fatalf("image list after upload: %q", out)
			}
			for _, cmd := range []string{"test", "confirm"} {
				if out := mcumgr(t, bin, port, "image", cmd, h); strings.Contains(out, "Error") {
					t.Fatalf("image %s: %q", cmd, out)
				}
			}
			// Without a hash the CLI sends "hash": null, which MCUboot
			// refuses (rc 3); the simulated bootloader takes it as slot 0.
			if out := mcumgr(t, bin, port, "image", "confirm"); strings.Contains(out, "Error") {
				t.Fatalf("image confirm without a hash: %q", out)
			}
			if out := mcumgr(t, bin, port, "image", "test", strings.Repeat("00", 32)); !strings.Contains(out, "Error: 5") {
				t.Fatalf("image test of an unknown hash: %q", out)
			}
			if out := mcumgr(t, bin, port, "image", "erase"); !strings.Contains(out, "Error: 8") {
				t.Fatalf("image erase: %q", out)
			}
			boots := b.Boots()
			if out := mcumgr(t, bin, port, "reset"); !strings.Contains(out, "Done") {
				t.Fatalf("reset: %q", out)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if m, err := b.WaitBoot(ctx, boots); m != ModeApp {
				t.Fatalf("after reset: %s %v", m, err)
			}
			if runningDigest(t, b) != sum {
				t.Fatal("the uploaded image is not running")
			}
		})
	}
}

// smpClient is a minimal SMP client on the board's console.
type smpClient struct {
	t     testing.TB
	port  serial.Port
	lines smp.LineBuffer
	dec   smp.Decoder
	seq   uint8
	op    uint8 // the last answer's op byte
}

func openSMP(t testing.TB, b *Board) *smpClient {
	t.Helper()
	p, err := serial.Open(b.ConsoleLink(), &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &smpClient{t: t, port: p}
}

var errNoAnswer = errors.New("no answer")

// call sends a request and returns the body of its answer.
func (c *smpClient) call(op uint8, group uint16, id uint8, req any, wait time.Duration) ([]byte, error) {
	c.seq++
	h := smp.Header{Op: op, Group: group, ID: id, Seq: c.seq}
	if _, err := c.port.Write(smp.Encode(smp.Packet{Header: h, Body: smp.Marshal(req)}.Marshal())); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 4096)
	var got []byte
	for time.Now().Before(deadline) {
		c.port.SetReadTimeout(20 * time.Millisecond)
		n, err := c.port.Read(buf)
		if err != nil {
			return nil, err
		}
		c.lines.Feed(buf[:n], func(line []byte) error {
			pkt, _ := c.dec.Line(line)
			if p, err := smp.ParsePacket(pkt); pkt != nil && err == nil && p.Seq == h.Seq && p.Response() {
				got, c.op = bytes.Clone(p.Body), p.Op
			}
			return nil
		})
		if got != nil {
			return got, smp.Check(got)
		}
	}
	return nil, errNoAnswer
}

// upload sends img in 256-byte chunks, following the offsets answered.
func (c *smpClient) upload(img []byte) error {
	off := uint32(0)
	for off < uint32(len(img)) {
		req := smp.UploadReq{Off: off, Data: img[off:min(int(off)+256, len(img))]}
		if off == 0 {
			req.Len = uint32(len(img))
		}
		body, err := c.call(smp.OpWrite, smp.GroupImage, smp.IDImageUpload, req, 2*time.Second)
		if err != nil {
			return err
		}
		var rsp smp.UploadRsp
		if err := smp.Unmarshal(body, &rsp); err != nil {
			return err
		}
		off = rsp.Off
	}
	return nil
}

// A cut in the middle of an SMP upload leaves the slot torn: the board is
// still halted at the next power-on, and a full upload brings it back.
func TestSMPSerialRecoveryCutMidUpload(t *testing.T) {
	b := brickedBoard(t, Config{ProgramTime: 41 * time.Microsecond, EraseTime: 85 * time.Millisecond, TimeScale: 0.05})
	img := buildImage(t, "2.0.0", 3, 24<<10, 9)
	c := openSMP(t, b)
	b.CutAtFlashOp(b.Flash().Ops() + 2000)
	if err := c.upload(img); err == nil {
		t.Fatal("the upload finished before the cut")
	}
	if cuts := b.Cuts(); len(cuts) == 0 || cuts[len(cuts)-1].Cause != "flash-op" {
		t.Fatalf("cuts: %+v", cuts)
	}
	powerOn(t, b, ModeHalted)
	c = openSMP(t, b)
	// An SMP version 2 request: the answer keeps the version bits.
	if body, err := c.call(smp.OpWrite|0x08, smp.GroupDefault, smp.IDEcho, smp.EchoReq{D: "v2"}, 2*time.Second); err != nil || c.op != smp.OpWriteRsp|0x08 || !bytes.Contains(body, []byte("v2")) {
		t.Fatalf("v2 echo: op %#x, %x, %v", c.op, body, err)
	}
	if body, err := c.call(smp.OpRead, smp.GroupImage, smp.IDImageState, struct{}{}, 2*time.Second); err != nil || bytes.Contains(body, []byte("version")) {
		t.Fatalf("image list of the torn slot: %x %v", body, err)
	}
	if err := c.upload(img); err != nil {
		t.Fatal(err)
	}
	boots := b.Boots()
	if _, err := c.call(smp.OpWrite, smp.GroupDefault, smp.IDReset, struct{}{}, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := b.WaitBoot(ctx, boots); m != ModeApp {
		t.Fatalf("after reset: %s %v", m, err)
	}
	if runningDigest(t, b) != sha256.Sum256(img) {
		t.Fatal("the uploaded image is not running")
	}
}

// With serial_recovery "wait 300ms" a command in the window after a reset
// keeps the bootloader in serial recovery; without one the app boots.
func TestSMPSerialRecoveryWaitWindow(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 8<<10, 1)
	b := newBoard(t, Config{Strategy: NaiveInplace, SerialRecovery: "wait 300ms"}, base)
	c := openSMP(t, b)
	// The app does not answer SMP.
	if _, err := c.call(smp.OpWrite, smp.GroupDefault, smp.IDEcho, smp.EchoReq{D: "x"}, 100*time.Millisecond); !errors.Is(err, errNoAnswer) {
		t.Fatalf("the app answered SMP: %v", err)
	}
	boots := b.Boots()
	b.Reset()
	var err error
	for range 50 {
		if _, err = c.call(smp.OpWrite, smp.GroupDefault, smp.IDEcho, smp.EchoReq{D: "x"}, 20*time.Millisecond); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no answer in the window: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := b.WaitMode(ctx, ModeSerialRecovery); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // past the window: still in serial recovery
	if m := b.Mode(); m != ModeSerialRecovery || b.Boots() != boots+1 {
		t.Fatalf("mode %s, boots %d", m, b.Boots())
	}
	if _, err := c.call(smp.OpWrite, smp.GroupDefault, smp.IDReset, struct{}{}, time.Second); err != nil {
		t.Fatal(err)
	}
	if m, err := b.WaitBoot(ctx, boots+1); m != ModeApp {
		t.Fatalf("after reset with no command in the window: %s %v", m, err)
	}
}
