package esprom_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/peers"
	"github.com/fudbench/fudbench/sim/esprom"
)

// esptool runs esptool against d with the options an emulator needs and
// returns what it printed; the output goes to the test log.
func esptool(t *testing.T, e peers.Esptool, d *esprom.Device, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	argv := append([]string{"--chip", "esp32", "--port", d.Path(), "--before", "no_reset", "--after", "no_reset", "--no-stub"}, args...)
	cmd := e.Command(argv...)
	cmd = execContext(ctx, cmd)
	out, err := cmd.CombinedOutput()
	s := strings.ReplaceAll(string(out), "\r", "\n")
	t.Logf("esptool %s:\n%s", strings.Join(args, " "), s)
	return s, err
}

func wantIn(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("esptool printed no %q", s)
		}
	}
}

func image(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		// Half random, half runs: compressible but not trivially.
		if i/512%2 == 0 {
			b[i] = byte(rng.Uint32())
		} else {
			b[i] = byte(i / 512)
		}
	}
	return b
}

// TestEsptool proves the emulator against esptool's own client: chip_id,
// read_mac, write_flash compressed and not, verify_flash, and a baud
// change.
func TestEsptool(t *testing.T) {
	e := peers.NeedEsptool(t)
	d, err := esprom.New(esprom.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dir := t.TempDir()
	img := image(100_003, 1)
	imgPath := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := esptool(t, e, d, "chip_id")
	if err != nil {
		t.Fatalf("chip_id: %v", err)
	}
	wantIn(t, out, "Chip is ESP32", "MAC: 24:0a:c4:12:34:56", "Crystal is 40MHz", "Staying in bootloader.")

	out, err = esptool(t, e, d, "read_mac")
	if err != nil {
		t.Fatalf("read_mac: %v", err)
	}
	wantIn(t, out, "MAC: 24:0a:c4:12:34:56")

	// Something there before: the write must erase what it covers.
	d.Load(0x10000, bytes.Repeat([]byte{0x00}, 0x20000))
	// Without the stub esptool writes plainly unless told -z.
	out, err = esptool(t, e, d, "write_flash", "-z", "0x10000", imgPath)
	if err != nil {
		t.Fatalf("write_flash: %v", err)
	}
	wantIn(t, out, "Hash of data verified.", "Compressed 100004 bytes")
	if !bytes.Contains(d.Ops(), []byte{0x11}) {
		t.Error("write_flash -z sent no FLASH_DEFL_DATA")
	}
	checkFlash(t, d, 0x10000, img)

	img2 := image(50_000, 2)
	if err := os.WriteFile(imgPath, img2, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = esptool(t, e, d, "--baud", "115200", "write_flash", "-u", "0x1000", imgPath)
	if err != nil {
		t.Fatalf("write_flash -u: %v", err)
	}
	wantIn(t, out, "Hash of data verified.", "Wrote 50176 bytes")
	checkFlash(t, d, 0x1000, img2)

	out, err = esptool(t, e, d, "-b", "921600", "verify_flash", "0x1000", imgPath)
	if err != nil {
		t.Fatalf("verify_flash: %v", err)
	}
	wantIn(t, out, "Changing baud rate to 921600", "-- verify OK (digest matched)")
	if got := d.Baud(); got == 115200 {
		t.Errorf("no CHANGE_BAUDRATE: baud %d", got)
	}

	// The ROM keeps the new rate until it is reset.
	d.Reboot()

	// A wrong image does not verify.
	if err := os.WriteFile(imgPath, image(50_000, 3), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = esptool(t, e, d, "verify_flash", "0x1000", imgPath)
	if err == nil {
		t.Fatal("verify_flash of a different image passed")
	}
	wantIn(t, out, "verify FAILED")
}

func checkFlash(t *testing.T, d *esprom.Device, addr int, img []byte) {
	t.Helper()
	f := d.Flash()
	if !bytes.Equal(f[addr:addr+len(img)], img) {
		t.Errorf("flash at %#x differs from the image", addr)
	}
}
