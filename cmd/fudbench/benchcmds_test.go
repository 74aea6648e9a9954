package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBoardsListsBuiltinBench(t *testing.T) {
	out, errOut, code := cli(t, "boards")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"sim-safe", "sim-naive", "coap://127.0.0.1:5683 (resumable)", "coap://127.0.0.1:5693 (block1)", "gdbrsp"} {
		if !strings.Contains(out, want) {
			t.Errorf("boards output lacks %q:\n%s", want, out)
		}
	}
}

// TestPowerExecDriver drives an exec power switch: argv lists, never a
// shell; a failing command is a bench error (exit 3) with its stderr.
func TestPowerExecDriver(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	relay := filepath.Join(dir, "relay.sh")
	os.WriteFile(relay, []byte("#!/bin/sh\necho \"$1\" > \""+state+"\"\n"), 0o755)
	failing := filepath.Join(dir, "broken.sh")
	os.WriteFile(failing, []byte("#!/bin/sh\necho 'relay board not found on /dev/ttyACM9' >&2\nexit 4\n"), 0o755)
	bench := filepath.Join(dir, "bench.yaml")
	os.WriteFile(bench, []byte(fmt.Sprintf(`boards:
  - name: dut
    power: {driver: exec, on: [%q, "on; rm -rf /"], off: [%q, "off"], timeout: 2s}
  - name: broken
    power: {driver: exec, on: [%q], off: [%q]}
`, relay, relay, failing, failing)), 0o644)

	if _, errOut, code := cli(t, "power", "on", "dut", "--bench", bench); code != 0 {
		t.Fatalf("power on: exit %d %s", code, errOut)
	}
	got, _ := os.ReadFile(state)
	if string(got) != "on; rm -rf /\n" {
		t.Errorf("the argument did not arrive literally: %q", got)
	}
	if _, _, code := cli(t, "power", "off", "dut", "--bench", bench); code != 0 {
		t.Fatal("power off failed")
	}
	_, errOut, code := cli(t, "power", "on", "broken", "--bench", bench)
	if code != 3 || !strings.Contains(errOut, "relay board not found") || !strings.Contains(errOut, "broken") {
		t.Errorf("failing power driver: exit %d, %s", code, errOut)
	}
	_, errOut, code = cli(t, "power", "on", "nosuchboard", "--bench", bench)
	if code != 2 || !strings.Contains(errOut, `no board "nosuchboard"`) {
		t.Errorf("unknown board: exit %d, %s", code, errOut)
	}
}

// TestUpdateURLToLibcoap pushes a file with `fudbench update --url` to
// libcoap's coap-server and reads it back with coap-client.
func TestUpdateURLToLibcoap(t *testing.T) {
	srv, cli2 := "coap-server-notls", "coap-client-notls"
	for _, p := range []string{srv, cli2} {
		if _, err := exec.LookPath(p); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (Debian libcoap3-bin)", p)
			}
			t.Skipf("%s not installed (Debian libcoap3-bin)", p)
		}
	}
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	s := exec.Command(srv, "-A", "127.0.0.1", "-p", fmt.Sprint(port), "-d", "2", "-v", "0")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { s.Process.Kill(); s.Wait() }()
	time.Sleep(200 * time.Millisecond)
	dir := t.TempDir()
	file := filepath.Join(dir, "blob")
	data := make([]byte, 50_000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	os.WriteFile(file, data, 0o644)
	out, errOut, code := cli(t, "update", "--url", fmt.Sprintf("coap://127.0.0.1:%d/blob", port), "--block-size", "256", file)
	if code != 0 || !strings.Contains(out, "196 blocks of 256 bytes, 196 sent") {
		t.Fatalf("exit %d\n%s\n%s", code, out, errOut)
	}
	back := filepath.Join(dir, "back")
	if msg, err := exec.Command(cli2, "-m", "get", "-B", "10", "-o", back, fmt.Sprintf("coap://127.0.0.1:%d/blob", port)).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, msg)
	}
	got, _ := os.ReadFile(back)
	if string(got) != string(data) {
		t.Fatalf("read back %d bytes, differ from the %d sent", len(got), len(data))
	}
	// A bad block size is a usage error.
	if _, _, code := cli(t, "update", "--url", "coap://127.0.0.1:1/x", "--block-size", "100", file); code != 2 {
		t.Errorf("block size 100: exit %d, want 2", code)
	}
}
