package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	peerbuild "github.com/fudbench/fudbench/internal/peers"
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

// TestBoardsJSON reads `boards --json` as a script would: the built-in
// bench, then a bench file with a DTLS board (its identity shown, its key
// and where the key is kept never) and a board with nothing wired.
func TestBoardsJSON(t *testing.T) {
	type board struct {
		Name    string   `json:"name"`
		Tags    []string `json:"tags"`
		Power   *string  `json:"power"`
		Probe   *string  `json:"probe"`
		Console *struct {
			Port string `json:"port"`
			USB  *struct {
				VID, PID, Serial string
			} `json:"usb"`
		} `json:"console"`
		CoAP *struct {
			Address string `json:"address"`
			Profile string `json:"profile"`
			DTLS    *struct {
				Identity string `json:"identity"`
				Cache    string `json:"cache"`
			} `json:"dtls"`
			OSCORE *struct {
				SenderID    string `json:"sender_id"`
				RecipientID string `json:"recipient_id"`
			} `json:"oscore"`
		} `json:"coap"`
		Flash *struct {
			Size     int `json:"size"`
			SlotSize int `json:"slot_size"`
			AppAddr  int `json:"app_address"`
		} `json:"flash"`
	}
	read := func(args ...string) ([]board, string) {
		t.Helper()
		out, errOut, code := cli(t, append([]string{"boards", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("boards --json %v: exit %d: %s", args, code, errOut)
		}
		var bs []board
		if err := json.Unmarshal([]byte(out), &bs); err != nil {
			t.Fatalf("boards --json %v: %v\n%s", args, err, out)
		}
		return bs, out
	}

	bs, out := read()
	if len(bs) != 10 || bs[0].Name != "sim-safe" || bs[1].Name != "sim-naive" || bs[2].Name != "sim-oscore" || bs[4].Name != "sim-dtls" ||
		bs[5].Name != "sim-ab-overwrite" || bs[6].Name != "sim-ab-swap" || bs[7].Name != "sim-ab-direct" ||
		bs[8].Name != "sim-safe-psu" || bs[9].Name != "sim-naive-psu" {
		t.Fatalf("built-in bench: %s", out)
	}
	for _, psu := range bs[8:] {
		if psu.Power == nil || *psu.Power != "scpi" {
			t.Errorf("%s: powered by %v, want its bench supply (scpi)", psu.Name, psu.Power)
		}
	}
	for _, ab := range bs[5:8] {
		// A/B boards take a plain Block1 PUT into their secondary slot,
		// whose capacity is less than half the flash.
		if ab.CoAP.Profile != "block1" || ab.Flash == nil || ab.Flash.SlotSize <= 0 || ab.Flash.SlotSize >= 256<<10 {
			t.Errorf("%s: block1, and a slot of less than half the flash: %s", ab.Name, out)
		}
	}
	if o := bs[2].CoAP.OSCORE; o == nil || o.SenderID != "01" || o.RecipientID != "" || strings.Contains(out, "master") {
		t.Errorf("sim-oscore: the bench's OSCORE context by its IDs, no secret: %s", out)
	}
	if d := bs[4].CoAP.DTLS; d == nil || d.Cache != "state" {
		t.Errorf("sim-dtls: DTLS with cache state: %s", out)
	}
	safe, naive := bs[0], bs[1]
	if *safe.Power != "sim" || *safe.Probe != "gdbrsp" || strings.Join(safe.Tags, ",") != "sim,safe,inplace-recovery" ||
		safe.CoAP.Address != "127.0.0.1:5683" || safe.CoAP.Profile != "resumable" || safe.CoAP.DTLS != nil ||
		!strings.HasSuffix(safe.Console.Port, "sim-safe.console") ||
		safe.Flash.Size != 512<<10 || safe.Flash.SlotSize != 480<<10 || safe.Flash.AppAddr != 0x8000 {
		t.Errorf("sim-safe: %s", out)
	}
	if naive.CoAP.Profile != "block1" || naive.CoAP.Address != "127.0.0.1:5693" {
		t.Errorf("sim-naive: %s", out)
	}

	dir := t.TempDir()
	const secret = "s3cr3t-psk-value"
	os.WriteFile(filepath.Join(dir, "dut.psk"), []byte(secret), 0o600)
	bench := filepath.Join(dir, "bench.yaml")
	os.WriteFile(bench, []byte(`boards:
  - name: dut
    tags: [stm32]
    power: {driver: exec, on: [relay, on], off: [relay, off]}
    console: {usb: {vid: "0483", pid: "374b", serial: "066DFF"}}
    coap: {address: "[fd00::7]:5684", dtls: {identity: dut-1, key_file: dut.psk}}
  - name: bare
`), 0o644)
	bs, out = read("--bench", bench)
	if len(bs) != 2 {
		t.Fatalf("bench file: %s", out)
	}
	dut, bare := bs[0], bs[1]
	if *dut.Power != "exec" || dut.Probe != nil || dut.Console.USB == nil || dut.Console.USB.Serial != "066DFF" ||
		dut.CoAP.DTLS == nil || dut.CoAP.DTLS.Identity != "dut-1" || dut.CoAP.Address != "[fd00::7]:5684" || dut.Flash != nil {
		t.Errorf("dut: %s", out)
	}
	if bare.Tags == nil || len(bare.Tags) != 0 || bare.Power != nil || bare.Console != nil || bare.CoAP != nil {
		t.Errorf("bare: %s", out)
	}
	for _, leak := range []string{secret, "dut.psk", "key"} {
		if strings.Contains(out, leak) {
			t.Errorf("boards --json shows %q:\n%s", leak, out)
		}
	}
	// A broken bench file is still a configuration error on stderr.
	os.WriteFile(bench, []byte("boards:\n  - name: a\n    powr: {}\n"), 0o644)
	out, errOut, code := cli(t, "boards", "--json", "--bench", bench)
	if code != 2 || out != "" || !strings.Contains(errOut, `unknown key "powr"`) {
		t.Errorf("broken bench file: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
}

// TestPowerStateJSON reads a board's power with `power state --json`
// from a stand-in control endpoint, then with none listening: exit 3 and
// a message that says what is missing, nothing on stdout. The port of
// the missing endpoint was bound and closed, so a sim the user runs on
// the default ports does not matter.
func TestPowerStateJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/boards/dut/power" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		fmt.Fprintln(w, "on")
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	bench := filepath.Join(dir, "bench.yaml")
	os.WriteFile(bench, []byte(fmt.Sprintf(`boards:
  - name: dut
    power: {driver: sim, url: %q, board: dut}
  - name: gone
    power: {driver: sim, url: "http://%s", board: gone}
`, srv.URL, closed)), 0o644)

	out, errOut, code := cli(t, "power", "state", "dut", "--json", "--bench", bench)
	if code != 0 || out != `{"board":"dut","on":true}`+"\n" {
		t.Errorf("power state --json: exit %d, %q, %s", code, out, errOut)
	}
	out, errOut, code = cli(t, "power", "state", "gone", "--json", "--bench", bench)
	if code != 3 || out != "" || !strings.Contains(errOut, "board gone: power state") ||
		!strings.Contains(errOut, "connection refused") || !strings.Contains(errOut, "is `fudbench sim` running?") {
		t.Errorf("no control endpoint: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	out, errOut, code = cli(t, "power", "on", "dut", "--json", "--bench", bench)
	if code != 2 || out != "" || !strings.Contains(errOut, "--json applies to power state only") {
		t.Errorf("power on --json: exit %d, stdout %q, stderr %s", code, out, errOut)
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

// TestUpdateURLQBlock pushes a file with `fudbench update --url --qblock`
// to libcoap 4.3.5's coap-server with Q-Block (-L 7), and to one without
// (-L 1), which answers the Q-Block probe with 4.02: that is the bench's
// configuration, said at once with exit 3, never the device's failure.
func TestUpdateURLQBlock(t *testing.T) {
	lc := peerbuild.NeedLibcoap(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "blob")
	data := make([]byte, 50_000)
	for i := range data {
		data[i] = byte(i*13 + i>>8)
	}
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode string
		ok   bool
	}{{"7", true}, {"1", false}} {
		pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
		port := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		s := exec.Command(lc.Server, "-A", "127.0.0.1", "-p", fmt.Sprint(port), "-d", "2", "-L", tc.mode, "-v", "0")
		if err := s.Start(); err != nil {
			t.Fatal(err)
		}
		url := fmt.Sprintf("coap://127.0.0.1:%d/blob", port)
		deadline := time.Now().Add(10 * time.Second)
		for exec.Command(lc.Client, "-B", "1", "-m", "get", fmt.Sprintf("coap://127.0.0.1:%d/", port)).Run() != nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		out, errOut, code := cli(t, "update", "--url", url, "--qblock", "--json", file)
		s.Process.Kill()
		s.Wait()
		var res updateJSON
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("-L %s: %v\n%s\n%s", tc.mode, err, out, errOut)
		}
		if tc.ok {
			if code != 0 || !res.OK || res.BlocksSent != 49 {
				t.Errorf("-L %s: exit %d %+v\n%s", tc.mode, code, res, errOut)
			}
			continue
		}
		if code != ExitInfra || res.BlocksSent != 0 || !strings.Contains(errOut, "answered the Q-Block probe (RFC 9177 §4.1) with 4.02 Bad Option") {
			t.Errorf("-L %s: exit %d %+v\n%s", tc.mode, code, res, errOut)
		}
	}
}
