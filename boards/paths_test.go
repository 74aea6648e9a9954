package boards_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/power"
	_ "github.com/fudbench/fudbench/power/exec"
	_ "github.com/fudbench/fudbench/power/scpi"
	"github.com/fudbench/fudbench/probes"
	_ "github.com/fudbench/fudbench/probes/stm32uart"
)

// TestPathsRelativeToTheBenchFile: a bench file that names its console,
// its power script, its supply's and its probe's serial ports and its key
// relative to itself, with ${VAR} from the environment, means the same
// from any working directory; the power script really runs from another
// one.
func TestPathsRelativeToTheBenchFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keys"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "keys", "a.psk"), []byte("hex:00112233\n"), 0o600)
	marker := filepath.Join(dir, "switched")
	script := "#!/bin/sh\necho \"$1\" >> " + marker + "\n"
	if err := os.WriteFile(filepath.Join(dir, "relay.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FUDBENCH_TEST_RELAY", "relay.sh")
	t.Setenv("FUDBENCH_TEST_IDENTITY", "bench-7")
	p := filepath.Join(dir, "bench.yaml")
	os.WriteFile(p, []byte(`boards:
  - name: a
    power: {driver: exec, on: ["./${FUDBENCH_TEST_RELAY}", "on"], off: ["./${FUDBENCH_TEST_RELAY}", "off"]}
    console: {port: ttys/a.console}
    coap: {address: "127.0.0.1:5683", dtls: {identity: "${FUDBENCH_TEST_IDENTITY}", key_file: keys/a.psk}}
  - name: b
    power: {driver: scpi, port: ttys/psu, voltage: 3.3V}
    probe:
      driver: stm32uart
      port: ${FUDBENCH_TEST_PROBE:-ttys/probe}
`), 0o644)
	// Load from elsewhere.
	t.Chdir(t.TempDir())
	b, err := boards.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := b.Board("a")
	if a.Console.Port != filepath.Join(dir, "ttys", "a.console") || a.CoAP.DTLS.Identity != "bench-7" {
		t.Errorf("console %q, identity %q", a.Console.Port, a.CoAP.DTLS.Identity)
	}
	if key, err := a.CoAP.DTLS.Key(); err != nil || len(key) != 4 {
		t.Errorf("key %x, %v", key, err)
	}
	sw, err := power.Open(a.Power.Driver, a.Power)
	if err != nil {
		t.Fatal(err)
	}
	if err := sw.On(context.Background()); err != nil {
		t.Fatalf("the power script, relative to the bench file, from another directory: %v", err)
	}
	if got, _ := os.ReadFile(marker); string(got) != "on\n" {
		t.Errorf("script wrote %q", got)
	}
	bb, _ := b.Board("b")
	psu, err := power.Open(bb.Power.Driver, bb.Power)
	if err != nil || psu.String() != "scpi:"+filepath.Join(dir, "ttys", "psu") {
		t.Errorf("supply %v, %v", psu, err)
	}
	probe, err := probes.Open(bb.Probe.Driver, bb.Probe)
	if err != nil || !strings.Contains(probe.String(), filepath.Join(dir, "ttys", "probe")) {
		t.Errorf("probe %v, %v", probe, err)
	}

	// An unset variable is an error at its value; bench text that is not
	// a file takes no variables.
	os.WriteFile(p, []byte("boards:\n  - name: a\n    console:\n      port: ${FUDBENCH_TEST_UNSET}\n"), 0o644)
	if _, err := boards.Load(p); err == nil || !errors.Is(err, config.ErrConfig) ||
		!strings.Contains(err.Error(), p+":4:13: ${FUDBENCH_TEST_UNSET} is not set in the environment") {
		t.Errorf("unset variable: %v", err)
	}
	if _, err := boards.Parse("(text)", []byte("boards:\n  - name: a\n    console:\n      port: ${HOME}\n")); err == nil ||
		!strings.Contains(err.Error(), "(text):4:13: ${HOME}: environment variables are expanded in a bench file read from disk") {
		t.Errorf("variables in text: %v", err)
	}
}
