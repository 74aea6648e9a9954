package boards_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/boards"
	_ "github.com/fudbench/fudbench/inputs/gpio"
	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/power"
	_ "github.com/fudbench/fudbench/power/exec"
	_ "github.com/fudbench/fudbench/power/gpio"
	_ "github.com/fudbench/fudbench/power/simctl"
)

const good = `boards:
  - name: nrf52-a
    tags: [nrf52]
    power: {driver: exec, on: [uhubctl, -a, on, -p, "2"], off: [uhubctl, -a, off, -p, "2"], timeout: 5s}
    probe: {driver: gdbrsp, address: 127.0.0.1:2331}
    console:
      usb: {vid: "0403", pid: "6001", serial: A50285BI}
      baud: 115200
      patterns: {boot: "^BL", app: "ready$"}
    coap:
      address: "[fd00::2]:5683"
      profile: resumable
      dtls: {identity: bench-1, key_file: k.psk}
    flash: {size: 1MiB, base: 0x0, app_address: 0x10000, erase_from: 0xC000, slot_size: 448KiB}
  - name: sim-x
    sim: {strategy: naive-inplace, flash: {size: 512KiB, layout: stm32f4, erased: 0x00, write_align: 8}, time_scale: 0.5}
`

func write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadGood(t *testing.T) {
	p := write(t, "bench.yaml", good)
	os.WriteFile(filepath.Join(filepath.Dir(p), "k.psk"), []byte("hex:00112233\n"), 0o600)
	b, err := boards.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a, err := b.Board("nrf52-a")
	if err != nil {
		t.Fatal(err)
	}
	if a.Power.Driver != "exec" || a.CoAP.DTLS.KeyFile != filepath.Join(filepath.Dir(p), "k.psk") || a.Flash.SlotSize != 448<<10 || a.Flash.AppAddr != 0x10000 {
		t.Errorf("decoded %+v %+v %+v", a.Power, a.CoAP.DTLS, a.Flash)
	}
	key, err := a.CoAP.DTLS.Key()
	if err != nil || string(key) != "\x00\x11\x22\x33" {
		t.Errorf("key %x %v", key, err)
	}
	// The driver decodes its own settings strictly from the same node.
	sw, err := power.Open(a.Power.Driver, a.Power)
	if err != nil || sw.String() != "exec:uhubctl" {
		t.Errorf("open exec: %v %v", sw, err)
	}
	if _, err := b.Board("nope"); err == nil || !strings.Contains(err.Error(), "nrf52-a, sim-x") {
		t.Errorf("unknown board: %v", err)
	}
	// The sim section is the simulator's to decode, strictly and with
	// positions.
	s, _ := b.Board("sim-x")
	var sim struct {
		Strategy  string         `yaml:"strategy"`
		Flash     map[string]any `yaml:"flash"`
		TimeScale float64        `yaml:"time_scale"`
	}
	if err := s.Sim.Decode(&sim); err != nil || sim.Strategy != "naive-inplace" || sim.Flash["layout"] != "stm32f4" || sim.TimeScale != 0.5 {
		t.Errorf("sim %+v %v", sim, err)
	}
	var strict struct {
		Strategy string `yaml:"strategy"`
	}
	if err := s.Sim.Decode(&strict); err == nil || !strings.Contains(err.Error(), p+":16:") {
		t.Errorf("strict sim decode: %v", err)
	}
}

// TestBadBenchFiles: every broken file is one error with file:line:col.
func TestBadBenchFiles(t *testing.T) {
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown key", "boards:\n  - name: a\n    powr: {}\n", `:3:5: boards[0]: unknown key "powr"`},
		{"wrong type", "boards:\n  - name: a\n    tags: 7\n", ":3:11:"},
		{"unknown power driver", "boards:\n  - name: a\n    power: {driver: relayz}\n", `:3:21: unknown power driver "relayz" (known: exec, gpio, scpi, sim)`},
		{"no power driver", "boards:\n  - name: a\n    power: {pin: X}\n", ":3:12: power needs a driver"},
		{"unknown probe driver", "boards:\n  - name: a\n    probe: {driver: jtagomatic}\n", `:3:21: unknown probe driver "jtagomatic"`},
		{"missing key file", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", dtls: {identity: x, key_file: nope.psk}}\n", ":3:69: key file:"},
		{"duplicate name", "boards:\n  - name: a\n  - name: a\n", `:3:11: duplicate board name "a"`},
		{"bad address", "boards:\n  - name: a\n    coap: {address: fd00::1}\n", ":3:21: coap address"},
		{"bad pattern", "boards:\n  - name: a\n    console: {port: /dev/ttyUSB0, patterns: {boot: \"(\"}}\n", ":3:52: board a: console.patterns.boot: bad pattern"},
		{"port and usb", "boards:\n  - name: a\n    console: {port: /dev/x, usb: {vid: \"1\", pid: \"2\"}}\n", ":3:14: console needs exactly one of port: or usb:"},
		{"sim not a mapping", "boards:\n  - name: a\n    sim: yolo\n", `:3:10: board a: sim: want a mapping`},
		{"bad size", "boards:\n  - name: a\n    flash: {size: 12 parsecs}\n", ":3:19: board a: flash.size: size \"12 parsecs\""},
		{"unknown input driver", "boards:\n  - name: a\n    inputs: {busy: {driver: scope}}\n", `:3:29: unknown input driver "scope"`},
		{"input without driver", "boards:\n  - name: a\n    inputs: {busy: {pin: X}}\n", `:3:20: input needs a driver`},
		{"bad input name", "boards:\n  - name: a\n    inputs: {\"b u s y\": {driver: gpio}}\n", `:3:14: board a: input name "b u s y"`},
		{"timing half given", "boards:\n  - name: a\n    flash: {program_time: 41us}\n", `:3:12: board a: flash: program_time and write_unit go together`},
		{"bad profile", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", profile: block2}\n", `:3:48: unknown profile "block2"`},
		{"unknown link key", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {los: 5%}}\n", `:3:46: board a: coap.link: unknown key "los"`},
		{"unknown link profile", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: wifi}\n", `:3:45: board a: coap.link: unknown link profile "wifi"`},
		{"loss without percent", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {loss: 5}}\n", `:3:52: board a: coap.link.loss: want a percentage`},
		{"loss over 100", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {loss: 101%}}\n", `:3:52: board a: coap.link.loss: "101%": want 0% to 100%`},
		{"loss precision", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {loss: 0.125%}}\n", `at most two decimals`},
		{"delay no unit", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {delay: 40}}\n", `:3:53: board a: coap.link.delay: 40 needs a unit`},
		{"delay too long", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {delay: 11s}}\n", `more than 10s`},
		{"jitter over delay", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {delay: 5ms, jitter: 10ms}}\n", `:3:66: board a: coap.link: jitter 10ms is more than the delay 5ms`},
		{"rate no unit", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {rate: 50000}}\n", `want a number and a unit: bit, kbit or Mbit`},
		{"rate zero", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {rate: 0kbit}}\n", `want more than 0`},
		{"mtu small", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {mtu: 8}}\n", `coap.link.mtu 8: want 16 to 65507`},
		{"seed zero", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {seed: 0}}\n", `coap.link.seed: want 1 or more`},
		{"none with overrides", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", link: {profile: none, loss: 1%}}\n", `profile none has no impairments`},
		{"qblock not a bool", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", qblock: yes please}\n", `:3:47: board a: coap.qblock: want true, false or {max_payloads: N, non_timeout: D}`},
		{"qblock max_payloads", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", qblock: {max_payloads: 0}}\n", `:3:62: board a: coap.qblock.max_payloads 0: want 1 to 64`},
		{"qblock unknown key", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", qblock: {burst: 4}}\n", `unknown key "burst"`},
		{"qblock zero timeout", "boards:\n  - name: a\n    coap: {address: \"127.0.0.1:5683\", qblock: {non_timeout: 0}}\n", `coap.qblock.non_timeout: want more than 0`},
		{"qblock over oscore", "boards:\n  - name: a\n    coap:\n      address: \"127.0.0.1:5683\"\n      oscore: {master_secret_env: S, sender_id: \"01\", recipient_id: \"02\"}\n      qblock: true\n", `:6:7: board a: coap: Q-Block1 is not offered over OSCORE`},
		{"empty", "", "empty file"},
		{"comments only", "# nothing yet\n", "empty file"},
		{"no boards", "boards: []\n", "no boards"},
		{"not a list", "boards: {a: 1}\n", ":1:9: boards: want a list"},
		{"syntax", "boards:\n  - name: a\n   tags: [\n", ":"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(t, "bench.yaml", tc.text)
			_, err := boards.Load(p)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, config.ErrConfig) {
				t.Errorf("not a config error: %v", err)
			}
			if !strings.HasPrefix(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want %q after the file name", err, tc.want)
			}
			if strings.Count(err.Error(), "\n") > 0 {
				t.Errorf("error spans lines: %q", err)
			}
		})
	}
}

// TestQBlockDecode: qblock is true, false, or the burst parameters.
func TestQBlockDecode(t *testing.T) {
	text := `boards:
  - name: a
    coap: {address: "127.0.0.1:5683", qblock: true}
  - name: b
    coap: {address: "127.0.0.1:5684", qblock: {max_payloads: 4, non_timeout: 500ms}}
  - name: c
    coap: {address: "127.0.0.1:5685", qblock: false}
`
	b, err := boards.Parse("bench.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if q := b.Boards[0].CoAP.QBlock; q == nil || q.MaxPayloads != 0 || q.NonTimeout != 0 || q.At.Line != 3 {
		t.Errorf("a: %+v", q)
	}
	if q := b.Boards[1].CoAP.QBlock; q == nil || q.MaxPayloads != 4 || q.NonTimeout != 500*time.Millisecond {
		t.Errorf("b: %+v", q)
	}
	if q := b.Boards[2].CoAP.QBlock; q != nil {
		t.Errorf("c: %+v", q)
	}
}

// TestLinkDecode: a link is a profile, a mapping, or a profile with
// overrides.
func TestLinkDecode(t *testing.T) {
	text := `boards:
  - name: a
    coap: {address: "127.0.0.1:5683", link: {loss: 5%, delay: 40ms, jitter: 10ms, rate: 50kbit, mtu: 127, duplicate: 1%, reorder: 0.25%, seed: 7}}
  - name: b
    coap: {address: "127.0.0.1:5684", link: 6lowpan-lossy}
  - name: c
    coap: {address: "127.0.0.1:5685", link: {profile: lora-sf7, seed: 3, loss: 0}}
  - name: d
    coap: {address: "127.0.0.1:5686"}
`
	b, err := boards.Parse("bench.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	a := b.Boards[0].CoAP.Link
	if a.Loss != 500 || a.Delay != 40*time.Millisecond || a.Jitter != 10*time.Millisecond || a.Rate != 50_000 || a.MTU != 127 ||
		a.Duplicate != 100 || a.Reorder != 25 || a.Seed != 7 || a.At.Line != 3 {
		t.Errorf("a: %+v", a)
	}
	if got := a.String(); got != "loss 5% delay 40ms±10ms rate 50kbit mtu 127 duplicate 1% reorder 0.25% seed 7" {
		t.Errorf("a: %s", got)
	}
	if l := b.Boards[1].CoAP.Link; l.Profile != "6lowpan-lossy" || l.Loss != 1000 || l.Rate != 250_000 || l.Seed != 1 {
		t.Errorf("b: %+v", l)
	}
	if l := b.Boards[2].CoAP.Link; l.Profile != "lora-sf7" || l.Loss != 0 || l.Rate != 5470 || l.MTU != 222 || l.Seed != 3 {
		t.Errorf("c: %+v", l)
	}
	if b.Boards[3].CoAP.Link != nil {
		t.Errorf("d: %+v", b.Boards[3].CoAP.Link)
	}
}

func TestDriverSettingsStrict(t *testing.T) {
	p := write(t, "bench.yaml", "boards:\n  - name: a\n    power: {driver: exec, on: [x], off: [y], tiemout: 3s}\n")
	b, err := boards.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	_, err = power.Open("exec", b.Boards[0].Power)
	if err == nil || !strings.Contains(err.Error(), p+":3:") || !strings.Contains(err.Error(), "tiemout") {
		t.Errorf("misspelt driver setting: %v", err)
	}
}

// FuzzParse: a bench file from anywhere never panics, and an error is
// always a configuration error.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("boards:\n  - name: a\n    power: {driver: gpio, pin: P1}\n"))
	f.Add([]byte("boards: [{name: &a x, tags: *a}]"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var err error
		alloccheck.Bound(t, "boards.Parse", len(data), alloccheck.YAMLPerByte, alloccheck.YAMLFixed+alloccheck.FuzzSlack, func() { _, err = boards.Parse("fuzz.yaml", data) })
		if err != nil && !errors.Is(err, config.ErrConfig) {
			t.Fatalf("non-config error: %v", err)
		}
	})
}
