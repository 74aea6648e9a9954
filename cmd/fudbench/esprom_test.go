package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	simesp "github.com/fudbench/fudbench/sim/esprom"
)

// TestFlashEsprom: `fudbench flash` with the esprom probe writes an image
// into the ESP32 ROM loader emulated in this process, behind a pty.
func TestFlashEsprom(t *testing.T) {
	d, err := simesp.New(simesp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dir := t.TempDir()
	bench := runWrite(t, filepath.Join(dir, "bench.yaml"), fmt.Sprintf(`boards:
  - name: esp
    power: {driver: exec, on: ["true"], off: ["true"]}
    probe: {driver: esprom, port: %q, reset: none, timeout: 2s}
    flash: {size: 4MiB, app_address: 0x10000}
`, d.Path()))
	img := bytes.Repeat([]byte("esp32 app image "), 4096)
	imgPath := filepath.Join(dir, "app.bin")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "flash", "--bench", bench, "esp", imgPath, "--skip-image-check")
	t.Logf("exit %d\n%s\n%s", code, out, errOut)
	if code != 0 || !strings.Contains(out, "esprom:"+d.Path()) {
		t.Fatalf("flash over esprom: exit %d", code)
	}
	if !bytes.Equal(d.Flash()[0x10000:0x10000+len(img)], img) {
		t.Error("the emulator's flash differs from the image")
	}
	if !d.Running() {
		t.Error("no FLASH_END reboot after the flash")
	}
}
