package an3155_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/sim/an3155"
)

// needProgram returns the path of an external program, or skips the test
// when it is missing; under CI=true a missing program fails it.
func needProgram(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (Debian package %s): %v", name, pkg, err)
	}
	t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	return ""
}

// stm32flash runs Debian's stm32flash 0.7 against the device and returns
// its combined output. 8n1 because a pty cannot keep even parity.
func stm32flash(t *testing.T, bin string, d *an3155.Device, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := slices.Concat([]string{"-m", "8n1", "-b", "115200"}, args, []string{d.Path()})
	out, err := exec.CommandContext(ctx, bin, argv...).CombinedOutput()
	// Progress is redrawn with carriage returns.
	return strings.ReplaceAll(string(out), "\r", "\n"), err
}

func wantLines(t *testing.T, out string, lines ...string) {
	t.Helper()
	have := strings.Split(out, "\n")
	for i := range have {
		have[i] = strings.TrimSpace(have[i])
	}
	for _, l := range lines {
		if !slices.Contains(have, l) {
			t.Errorf("stm32flash printed no line %q; output:\n%s", l, out)
		}
	}
}

// TestStm32flash proves the emulator against a real host tool: probe,
// write with verify, read back, erase, with each erase command.
func TestStm32flash(t *testing.T) {
	bin := needProgram(t, "stm32flash", "stm32flash")
	dir := t.TempDir()
	img := make([]byte, 3001) // not a whole word: stm32flash pads the last write
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img {
		img[i] = byte(rng.Uint32())
	}
	imgPath := filepath.Join(dir, "img.bin")
	if err := os.WriteFile(imgPath, img, 0o644); err != nil {
		t.Fatal(err)
	}
	probeLines := []string{
		"Interface serial_posix: 115200 8N1",
		"Version      : 0x22",
		"Option 1     : 0x00",
		"Option 2     : 0x00",
		"Device ID    : 0x0410 (STM32F10xxx Medium-density)",
		"- RAM        : Up to 20KiB  (512b reserved by bootloader)",
		"- Flash      : Up to 128KiB (size first sector: 4x1024)",
		"- Option RAM : 16b",
		"- System RAM : 2KiB",
	}
	for _, ext := range []bool{false, true} {
		eraseCmd, global := byte(an3155.CmdErase), "0x43 special 0x00ff"
		if ext {
			eraseCmd, global = an3155.CmdExtendedErase, "0x44 special 0xffff"
		}
		t.Run(fmt.Sprintf("extended=%v", ext), func(t *testing.T) {
			t.Parallel()
			d, err := an3155.New(an3155.Options{ExtendedErase: ext})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			// Programmed before: the write must erase what it covers.
			d.Load(an3155.FlashBase, make([]byte, 4*an3155.PageSize))

			out, err := stm32flash(t, bin, d)
			if err != nil {
				t.Fatalf("probe: %v\n%s", err, out)
			}
			wantLines(t, out, probeLines...)

			out, err = stm32flash(t, bin, d, "-w", imgPath, "-v", "-S", "0x08000000")
			if err != nil {
				t.Fatalf("write: %v\n%s", err, out)
			}
			wantLines(t, out, "Write to memory", "Erasing memory", "Wrote and verified address 0x08000bb9 (100.00%) Done.")
			flash := d.Flash()
			if !bytes.Equal(flash[:len(img)], img) {
				t.Error("flash differs from the image after stm32flash -w")
			}
			if !bytes.Equal(flash[len(img):len(img)+3], []byte{0xFF, 0xFF, 0xFF}) {
				t.Errorf("padding % x, want ff ff ff", flash[len(img):len(img)+3])
			}
			if got := flash[3*an3155.PageSize]; got != 0 {
				t.Errorf("page 3 erased (%#x): only pages 0-2 hold the image", got)
			}
			wantCommand(t, d, fmt.Sprintf("%#02x pages [0 1 2]", eraseCmd))

			outPath := filepath.Join(dir, fmt.Sprintf("out-%v.bin", ext))
			out, err = stm32flash(t, bin, d, "-r", outPath, "-S", fmt.Sprintf("0x08000000:%d", len(img)))
			if err != nil {
				t.Fatalf("read: %v\n%s", err, out)
			}
			wantLines(t, out, "Memory read", "Read address 0x08000bb9 (100.00%) Done.")
			if back, err := os.ReadFile(outPath); err != nil || !bytes.Equal(back, img) {
				t.Errorf("read back %d bytes (err %v), differs from the image", len(back), err)
			}

			out, err = stm32flash(t, bin, d, "-o")
			if err != nil {
				t.Fatalf("erase: %v\n%s", err, out)
			}
			wantLines(t, out, "Erasing flash")
			wantCommand(t, d, global)
			if i := slices.IndexFunc(d.Flash(), func(b byte) bool { return b != 0xFF }); i >= 0 {
				t.Errorf("flash not erased at %#x", i)
			}

			out, err = stm32flash(t, bin, d, "-g", "0x08000000")
			if err != nil {
				t.Fatalf("go: %v\n%s", err, out)
			}
			wantLines(t, out, "Starting execution at address 0x08000000... done.")
			wantCommand(t, d, "0x21 at 0x08000000")
			if !d.Running() {
				t.Error("device not running after stm32flash -g")
			}
		})
	}
}

// TestStm32flashEvenParity pins why the tests pass -m 8n1: stm32flash's
// default 8e1 cannot be set on a pty.
func TestStm32flashEvenParity(t *testing.T) {
	bin := needProgram(t, "stm32flash", "stm32flash")
	d, err := an3155.New(an3155.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	out, err := exec.Command(bin, "-b", "115200", d.Path()).CombinedOutput()
	if err == nil {
		t.Fatalf("stm32flash with 8e1 succeeded on a pty:\n%s", out)
	}
	wantLines(t, string(out), "Failed to set terminal flags")
}

func wantCommand(t *testing.T, d *an3155.Device, want string) {
	t.Helper()
	var seen []string
	for _, c := range d.Commands() {
		if c.String() == want {
			return
		}
		seen = append(seen, c.String())
	}
	t.Errorf("device saw no %q; it saw %q", want, seen)
}
