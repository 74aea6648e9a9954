package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/sim"
)

// TestFlashSMPBrickedServedSim: a naive-inplace board served by `fudbench
// sim` is bricked (an image that does not verify, written over the GDB
// port), then `fudbench flash` with the smp probe on its console brings it
// back through the bootloader's serial recovery. A board whose firmware
// does not answer SMP is an infra failure naming the port (exit 3).
func TestFlashSMPBrickedServedSim(t *testing.T) {
	s := serveSim(t, "boards:\n  - name: smp-naive\n"+simSection("naive-inplace", ""), "--time-scale", "0")
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "v3.img"), filepath.Join(dir, "bad.img")
	cli(t, "image", "build", "--version", "3.0.0", "--seq", "3", "--size", "20KiB", "-o", good)
	b, _ := os.ReadFile(good)
	b[len(b)-1] ^= 0x40
	os.WriteFile(bad, b, 0o644)

	info := func() sim.Info {
		t.Helper()
		resp, err := http.Get(s.control + "/boards/smp-naive")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var i sim.Info
		json.NewDecoder(resp.Body).Decode(&i)
		return i
	}
	waitMode := func(want string) sim.Info {
		t.Helper()
		var i sim.Info
		for range 200 {
			if i = info(); i.Mode == want {
				return i
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("board in %s, want %s", i.Mode, want)
		return i
	}
	// Brick it over the GDB port.
	out, errOut, code := cli(t, "flash", "--bench", s.bench, "smp-naive", bad, "--skip-image-check")
	if code != 0 {
		t.Fatalf("flash the bad image: exit %d\n%s\n%s", code, out, errOut)
	}
	i := waitMode(sim.ModeHalted)

	// The same bench with the probe on the console, over SMP.
	text, err := os.ReadFile(s.bench)
	if err != nil {
		t.Fatal(err)
	}
	probe := regexp.MustCompile(`(?m)^    probe: .*$`)
	smpBench := filepath.Join(dir, "smp.yaml")
	os.WriteFile(smpBench, probe.ReplaceAll(text, []byte(`    probe: {driver: smp, port: "`+i.ConsoleLink+`", timeout: 2s}`)), 0o644)
	out, errOut, code = cli(t, "flash", "--bench", smpBench, "smp-naive", good)
	if code != 0 || !strings.Contains(out, "smp-naive: 20480 bytes at 0x00008000 over smp:"+i.ConsoleLink+", verified") {
		t.Fatalf("flash over smp: exit %d\n%s\n%s", code, out, errOut)
	}
	waitMode(sim.ModeApp)

	// The app does not speak SMP: the probe times out, naming the port.
	out, errOut, code = cli(t, "flash", "--bench", smpBench, "smp-naive", good)
	if code != 3 || !strings.Contains(errOut, "board smp-naive: smp:"+i.ConsoleLink+": image upload at offset 0 of 20480: no answer within 8s") {
		t.Fatalf("flash over smp to the app: exit %d\n%s\n%s", code, out, errOut)
	}
	s.stop(t)
}
