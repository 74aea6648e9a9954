package smp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/peers"
	wire "github.com/fudbench/fudbench/internal/smp"
	"github.com/fudbench/fudbench/probes"
)

// mcubootHost runs MCUboot's own serial recovery (unmodified boot_serial.c
// and bootutil built for the host) on a pty behind a link in a temporary
// directory, and returns the link and the flash file.
func mcubootHost(t *testing.T, m peers.MCUboot) (link, flashFile string) {
	t.Helper()
	dir := t.TempDir()
	link, flashFile = filepath.Join(dir, "ttyMCUBOOT"), filepath.Join(dir, "flash.bin")
	cmd := exec.Command(m.Host, "-f", flashFile, "-p", link, "-q")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("mcuboot-serial-host stderr:\n%s", stderr.String())
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "PTY ") {
				ready <- sc.Text()
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("mcuboot-serial-host printed no PTY line within 10 s")
	}
	for range 200 {
		if _, err := os.Stat(link); err == nil {
			return link, flashFile
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no pty link at %s", link)
	return "", ""
}

// signedImage signs n bytes of pseudo-random payload with MCUboot's
// imgtool as version 1.2.3+4 (hash only, no key).
func signedImage(t *testing.T, m peers.MCUboot, n int) []byte {
	t.Helper()
	dir := t.TempDir()
	app := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range app {
		app[i] = byte(r.Uint32())
	}
	in, out := filepath.Join(dir, "app.bin"), filepath.Join(dir, "img.bin")
	if err := os.WriteFile(in, app, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/usr/bin/python3", m.Imgtool, "sign", "--header-size", "0x200", "--pad-header",
		"--align", "8", "--version", "1.2.3+4", "--slot-size", "0x40000", in, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("imgtool sign: %v\n%s", err, b)
	}
	img, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestSMPAgainstMCUboot(t *testing.T) {
	m := peers.NeedMCUboot(t)
	link, flashFile := mcubootHost(t, m)
	img := signedImage(t, m, 50<<10)
	want, kind, err := ImageHash(img)
	if err != nil || kind != "MCUboot image hash" {
		t.Fatalf("ImageHash: %v %q", err, kind)
	}
	p, err := New(Config{Port: link, MTU: 1024, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if got, err := p.Echo(ctx, "hello"); err != nil || got != "hello" {
		t.Fatalf("Echo = %q, %v", got, err)
	}
	start := time.Now()
	if err := p.Flash(ctx, 0, img, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d-byte image uploaded and verified over SMP at mtu 1024 in %v", len(img), time.Since(start).Round(time.Millisecond))
	fl, err := os.ReadFile(flashFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fl[:len(img)], img) {
		t.Fatal("the flash file does not hold the image at offset 0")
	}
	list, err := p.ImageList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) == 0 || list[0].Slot != 0 || list[0].Version != "1.2.3.4" || !bytes.Equal(list[0].Hash, want[:]) {
		t.Fatalf("ImageList = %+v, want slot 0 version 1.2.3.4 hash %x", list, want)
	}
	if _, err := p.ImageTest(ctx, want[:]); err != nil {
		t.Fatalf("ImageTest: %v", err)
	}
	if _, err := p.ImageConfirm(ctx, want[:]); err != nil {
		t.Fatalf("ImageConfirm: %v", err)
	}
	// An unknown hash: the device's ENOENT is an error naming the code.
	if _, err := p.ImageTest(ctx, make([]byte, 32)); err == nil || !strings.Contains(err.Error(), "rc 5 ENOENT") {
		t.Fatalf("ImageTest of an unknown hash: %v", err)
	}
	// A command MCUboot's serial recovery does not offer: rc 8.
	err = p.do(ctx, func() error {
		return p.call(ctx, wire.OpWrite, wire.GroupImage, wire.IDImageErase, struct{}{}, p.cfg.Timeout, &wire.Status{})
	})
	if err == nil || !strings.Contains(err.Error(), "image erase: the device answered rc 8 ENOTSUP") || !strings.Contains(err.Error(), link) || !errors.Is(err, probes.ErrProbe) {
		t.Fatalf("image erase: %v", err)
	}
	// A frame of several lines, paced.
	paced, err := New(Config{Port: link, LineDelay: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("0123456789", 20)
	if got, err := paced.Echo(ctx, long); err != nil || got != long {
		t.Fatalf("paced echo = %q, %v", got, err)
	}
	paced.Close()
	if err := p.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := p.Echo(ctx, "after reset"); err != nil || got != "after reset" {
		t.Fatalf("Echo after reset = %q, %v", got, err)
	}
}

// An upload stopped midway goes on from where the device says, and a
// chunk at an offset the device does not expect is answered with the one
// it does.
func TestSMPResumeAgainstMCUboot(t *testing.T) {
	m := peers.NeedMCUboot(t)
	link, flashFile := mcubootHost(t, m)
	img := signedImage(t, m, 20<<10)
	p, err := New(Config{Port: link, MTU: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	stop, cancel := context.WithCancel(ctx)
	var stoppedAt int
	err = p.Flash(stop, 0, img, func(done, total int) {
		if done >= total/2 && stoppedAt == 0 {
			stoppedAt = done
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("stopped upload: %v", err)
	}
	// A chunk out of order (the image's start again, without len): the
	// device answers with the offset it expects.
	var rsp wire.UploadRsp
	err = p.do(ctx, func() error {
		return p.call(ctx, wire.OpWrite, wire.GroupImage, wire.IDImageUpload, wire.UploadReq{Off: 8, Data: img[8:16]}, p.cfg.Timeout, &rsp)
	})
	if err != nil || int(rsp.Off) != stoppedAt {
		t.Fatalf("out-of-order chunk: off %d, %v; want %d", rsp.Off, err, stoppedAt)
	}
	first := -1
	if err := p.Flash(ctx, 0, img, func(done, total int) {
		if first < 0 {
			first = done
		}
	}); err != nil {
		t.Fatal(err)
	}
	if first <= stoppedAt {
		t.Fatalf("the second upload's first answer is offset %d; it did not resume after %d", first, stoppedAt)
	}
	fl, err := os.ReadFile(flashFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fl[:len(img)], img) {
		t.Fatal("the flash file does not hold the image after a resumed upload")
	}
}
