package boards_test

import (
	"strings"
	"testing"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/power/scpi"
)

// TestSCPIPower: a bench supply's power section is decoded by the scpi
// driver from the bench file's node, strictly, with positions.
func TestSCPIPower(t *testing.T) {
	p := write(t, "bench.yaml", `boards:
  - name: dp832
    power:
      driver: scpi
      address: 192.168.1.50
      channel: 2
      voltage: 3.3V
      current_limit: 150mA
      timeout: 1s
      check_errors: true
  - name: korad
    power: {driver: scpi, port: /dev/ttyACM0, dialect: korad, voltage: 3300mV, line_end: "\n"}
`)
	b, err := boards.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	sw, err := power.Open(b.Boards[0].Power.Driver, b.Boards[0].Power)
	if err != nil {
		t.Fatal(err)
	}
	c := sw.(*scpi.Supply).Config()
	if sw.String() != "scpi:192.168.1.50:5025" || c.Channel != 2 || c.Voltage != 3.3 || c.CurrentLimit != 0.15 || !c.CheckErrors {
		t.Errorf("dp832: %s %+v", sw, c)
	}
	sw, err = power.Open(b.Boards[1].Power.Driver, b.Boards[1].Power)
	if err != nil {
		t.Fatal(err)
	}
	if c := sw.(*scpi.Supply).Config(); sw.String() != "scpi:/dev/ttyACM0" || c.Dialect != scpi.DialectKorad || c.Voltage != 3.3 || c.LineEnd != "\n" {
		t.Errorf("korad: %s %+v", sw, c)
	}

	for _, bad := range []struct{ power, want string }{
		{"{driver: scpi, address: h, voltage: 3.3}", ":3:"},                    // no unit: at the value
		{"{driver: scpi, address: h, voltage: 3.3V, curent_limit: 1A}", ":3:"}, // misspelt key
		{"{driver: scpi, address: h, voltage: [3.3V]}", ":3:"},
	} {
		p := write(t, "bad.yaml", "boards:\n  - name: a\n    power: "+bad.power+"\n")
		b, err := boards.Load(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = power.Open("scpi", b.Boards[0].Power)
		if err == nil || !strings.Contains(err.Error(), p+bad.want) {
			t.Errorf("%s: %v", bad.power, err)
		}
	}
}
