package sim

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/config"
)

// TestElectricalSettings: the electrical keys and the bench supply of a
// sim: section, in their units.
func TestElectricalSettings(t *testing.T) {
	dir := t.TempDir()
	got, err := configFrom(t, dir, benchWith(
		"nominal_v: 3000mV",
		"bor: 1.7V",
		"flash_min: 2.2",
		"weak_program: 0.05",
		"current: {app: 5mA, recovery: 4500uA, boot: 0.006A, halted: 1 mA, erase: 4mA, program: 3µA}",
		"supply: {tcp: 127.0.0.1:0, serial: true}",
	))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Name: "b1", NominalVoltage: 3.0, BOR: 1.7, FlashMin: 2.2, WeakProgram: 0.05,
		Current: CurrentModel{App: 5e-3, Recovery: 4500e-6, Boot: 0.006, Halted: 1e-3, Erase: 4e-3, Program: 3e-6},
		Supply:  true, SupplyAddr: "127.0.0.1:0", SupplySerial: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	for text, want := range map[string]Config{
		benchWith("supply: true"):               {Name: "b1", Supply: true},
		benchWith("supply: false"):              {Name: "b1"},
		benchWith("supply:", "  serial: true"):  {Name: "b1", Supply: true, SupplySerial: true},
		benchWith("supply: {}"):                 {Name: "b1", Supply: true},
		benchWith("bor: 2V", "flash_min: 2.5V"): {Name: "b1", BOR: 2, FlashMin: 2.5},
	} {
		got, err := configFrom(t, dir, text)
		if err != nil {
			t.Errorf("%v\n%s", err, text)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("got %+v, want %+v from\n%s", got, want, text)
		}
	}
	// A board made from it serves its supply on both.
	got.StateDir = dir
	got.GDBAddr, got.DTLSAddr = "-", "-"
	b, err := New(got)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if in := b.Info(); in.Supply == "" || !strings.HasPrefix(in.SupplySerial, "/dev/pts/") {
		t.Errorf("Info supply %q serial %q", in.Supply, in.SupplySerial)
	}
	if b.Voltage() != 3.0 || b.Config().BOR != 1.7 {
		t.Errorf("voltage %v, config %+v", b.Voltage(), b.Config())
	}
}

func TestElectricalSettingsErrors(t *testing.T) {
	for _, tt := range []struct{ name, text, pos, msg string }{
		{"bor unit", benchWith("bor: 1.8A"), "4:12", `voltage "1.8A": want above 0 and at most 20V, such as 1.8V or 1800mV`},
		{"bor zero", benchWith("bor: 0V"), "4:12", `voltage "0V": want above 0 and at most 20V, such as 1.8V or 1800mV`},
		{"bor above flash_min", benchWith("bor: 2.5V"), "4:12", `bor 2.5V must be below flash_min 2.4V (flash programming fails before the CPU resets)`},
		{"flash_min above nominal", benchWith("nominal_v: 3.3V", "flash_min: 3.5V"), "5:18", `flash_min 3.5V is above nominal_v 3.3V: the board could never program its flash reliably`},
		{"nominal low", benchWith("nominal_v: 2V"), "4:18", `flash_min 2.4V is above nominal_v 2V: the board could never program its flash reliably`},
		{"current unit", benchWith("current:", "  app: 5mV"), "5:14", `current "5mV": want above 0 and at most 10A, such as 5mA or 4500uA`},
		{"current negative", benchWith("current: {erase: -4mA}"), "4:24", `current "-4mA": want above 0 and at most 10A, such as 5mA or 4500uA`},
		{"current unknown key", benchWith("current: {idle: 4mA}"), "4:17", `unknown field "idle"…`},
		{"weak_program", benchWith("weak_program: 1.5"), "4:21", `weak_program 1.5: want a probability per bit above 0 and at most 1`},
		{"supply word", benchWith("supply: yes"), "4:15", `supply "yes": want true, false or a mapping {tcp: ADDRESS, serial: true}`},
		{"supply key", benchWith("supply: {udp: 127.0.0.1:0}"), "4:16", `unknown field "udp" in supply: want tcp or serial`},
		{"supply tcp", benchWith("supply: {tcp: localhost}"), "4:21", `address "localhost": want host:port ([addr]:port for IPv6), or - to leave it out`},
		{"supply serial", benchWith("supply:", "  serial: maybe"), "5:17", `serial "maybe": want true or false`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configFrom(t, t.TempDir(), tt.text)
			var ce *config.Error
			if err == nil || !errors.As(err, &ce) {
				t.Fatalf("%v: not a configuration error\n%s", err, tt.text)
			}
			prefix := "bench.yaml:" + tt.pos + ": "
			if start, ok := strings.CutSuffix(tt.msg, "…"); ok {
				if !strings.HasPrefix(err.Error(), prefix+start) {
					t.Fatalf("got  %s\nwant %s%s…", err, prefix, start)
				}
				return
			}
			if err.Error() != prefix+tt.msg {
				t.Fatalf("got  %s\nwant %s%s", err, prefix, tt.msg)
			}
		})
	}
}
