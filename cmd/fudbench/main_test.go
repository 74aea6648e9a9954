package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/sim"
)

var binary string

// TestMain builds the real binary once: the CLI is tested as users run it.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fudbench-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "fudbench")
	out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs the binary and returns stdout, stderr and the exit code.
func cli(t testing.TB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), code
}

func TestImageBuildInspect(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "app.img")
	out, errOut, code := cli(t, "image", "build", "--version", "2.1.0", "--seq", "7", "--size", "32KiB", "-o", img)
	if code != 0 {
		t.Fatalf("build exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "version 2.1.0 seq 7, 32768 bytes") || !strings.Contains(errOut, "development key") {
		t.Errorf("build output %q / %q", out, errOut)
	}
	out, _, code = cli(t, "image", "inspect", img)
	if code != 0 || !strings.Contains(out, "signature:     ok") || !strings.Contains(out, "seq:           7") {
		t.Fatalf("inspect exit %d: %s", code, out)
	}
	// A flipped byte: inspect says INVALID and exits 1 (the image fails).
	b, _ := os.ReadFile(img)
	b[len(b)-1] ^= 0x40
	bad := filepath.Join(dir, "bad.img")
	os.WriteFile(bad, b, 0o644)
	out, _, code = cli(t, "image", "inspect", bad)
	if code != 1 || !strings.Contains(out, "INVALID") {
		t.Errorf("tampered image: exit %d %s", code, out)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"no-such-command"},
		{"image", "build", "--size", "12parsecs", "--version", "1", "-o", filepath.Join(dir, "x")},
		{"image", "build", "--version", "1"},
		{"image", "inspect", filepath.Join(dir, "missing.img")},
		{"image", "inspect", "--bogus-flag", "x"},
		{"sim", "--bench", filepath.Join(dir, "missing.yaml")},
	} {
		_, errOut, code := cli(t, args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errOut)
		}
	}
}

func TestSimBrokenBenchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench.yaml")
	os.WriteFile(path, []byte("boards:\n  - name: a\n    sim:\n      strategy: inplace-recovery\n      flsh: {}\n"), 0o644)
	_, errOut, code := cli(t, "sim", "--bench", path)
	if code != 2 || !strings.Contains(errOut, path+":5:7:") || !strings.Contains(errOut, `unknown field "flsh"`) {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// TestSimServesAndStops runs `fudbench sim` on ephemeral ports, drives a
// board's power input through the control endpoint, flashes and updates a
// board through the bench file the sim wrote, and stops it with Ctrl-C.
func TestSimServesAndStops(t *testing.T) {
	s := serveSim(t, "boards:\n  - name: served-safe\n    tags: [sim, safe]\n"+simSection("inplace-recovery", "")+
		"  - name: served-naive\n"+simSection("naive-inplace", "      reenumerate: true\n"), "--time-scale", "0")
	text := strings.Join(s.out, "\n")
	for _, want := range []string{"served-safe (inplace-recovery): app", "served-naive (naive-inplace): app", "coap://127.0.0.1:", "coaps://127.0.0.1:", "gdb       127.0.0.1:", "console   ", "bench file: " + s.bench} {
		if !strings.Contains(text, want) {
			t.Errorf("sim output lacks %q:\n%s", want, text)
		}
	}
	req, _ := http.NewRequest(http.MethodPut, s.control+"/boards/served-safe/power", strings.NewReader("off"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("power off: %v %v", err, resp)
	}
	resp, err = http.Get(s.control + "/boards/served-safe")
	if err != nil {
		t.Fatal(err)
	}
	var info sim.Info
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info.Powered || info.Mode != "off" {
		t.Errorf("after power off: %+v", info)
	}
	// The written bench file: the boards with their tags and real
	// addresses, for the other commands.
	out, errOut, code := cli(t, "boards", "--bench", s.bench)
	if code != 0 || !strings.Contains(out, "sim,safe") || !strings.Contains(out, "coap://"+info.CoAP[0]+" (resumable)") {
		t.Fatalf("boards: exit %d\n%s\n%s", code, out, errOut)
	}
	// Flash over the GDB port (powering the board first), then an update
	// with a cut after block 2 through the control endpoint.
	dir := t.TempDir()
	img3, img4 := filepath.Join(dir, "v3.img"), filepath.Join(dir, "v4.img")
	cli(t, "image", "build", "--version", "3.0.0", "--seq", "3", "--size", "12KiB", "-o", img3)
	cli(t, "image", "build", "--version", "4.0.0", "--seq", "4", "--size", "12KiB", "-o", img4)
	out, errOut, code = cli(t, "flash", "--bench", s.bench, "served-safe", img3, "--erase")
	if code != 0 || !strings.Contains(out, "12288 bytes at 0x00008000 over gdbrsp:"+info.GDB+", verified") {
		t.Fatalf("flash: exit %d\n%s\n%s", code, out, errOut)
	}
	out, errOut, code = cli(t, "update", "--bench", s.bench, "served-safe", img4, "--cut-after-block", "2", "--off-time", "10ms")
	if code != 0 || !strings.Contains(out, "cut: after_block 2") || !strings.Contains(out, "resumed at [3]") || !strings.Contains(out, "running 4.0.0 (seq 4)") {
		t.Fatalf("update: exit %d\n%s\n%s", code, out, errOut)
	}
	s.stop(t)
}
