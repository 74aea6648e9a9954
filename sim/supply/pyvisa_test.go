package supply_test

import (
	"bufio"
	"context"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/peers"
	"github.com/fudbench/fudbench/sim"
)

// pyvisaScript drives the supply as a lab script does: set voltage and
// current limit, switch on, read back, wait for the test to see the board
// boot (a line on stdin), measure the current, switch off. It prints one
// "key value" line per answer.
const pyvisaScript = `
import sys, time, pyvisa
rm = pyvisa.ResourceManager('@py')
inst = rm.open_resource(sys.argv[1], read_termination='\n', write_termination='\n', timeout=5000)
def out(key, value):
    print(key, value, flush=True)
out('idn', inst.query('*IDN?'))
inst.write('VOLT 3.1')
inst.write('CURR 0.25')
inst.write('OUTP ON')
out('outp', inst.query('OUTP?'))
out('volt', inst.query('VOLT?'))
out('curr', inst.query('CURR?'))
out('meas_volt', inst.query('MEAS:VOLT?'))
sys.stdin.readline()
inst.query('MEAS:CURR?')
time.sleep(0.05)
out('meas_curr', inst.query('MEAS:CURR?'))
out('err', inst.query('SYST:ERR?'))
inst.write('OUTP OFF')
out('outp_off', inst.query('OUTP?'))
out('meas_volt_off', inst.query('MEAS:VOLT?'))
inst.close()
rm.close()
`

// TestPyvisa: PyVISA with its pyvisa-py backend, a client someone else
// wrote, drives a simulated board's supply over raw TCP
// (TCPIP::127.0.0.1::PORT::SOCKET) and over its pty (ASRL/dev/pts/N::INSTR),
// and the board powers on and off with it.
func TestPyvisa(t *testing.T) {
	pv := peers.NeedPyvisa(t)
	img, err := fwimage.Build(fwimage.Spec{Version: "1.0.0", Seq: 1, Size: 4 << 10, Seed: 1}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	b, err := sim.New(sim.Config{Name: "visa", Supply: true, SupplySerial: true, DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.FactoryProgram(img); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, resource string }{
		{"tcp", "TCPIP::" + strings.ReplaceAll(b.SupplyAddr(), ":", "::") + "::SOCKET"},
		{"serial", "ASRL" + b.SupplySerial() + "::INSTR"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.SetVoltage(3.3)
			boots := b.Boots()
			cmd := pv.Command(pyvisaScript, tc.resource)
			stdin, _ := cmd.StdinPipe()
			stdout, _ := cmd.StdoutPipe()
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			go func() {
				<-ctx.Done()
				cmd.Process.Kill()
			}()
			got := map[string]string{}
			lines := bufio.NewScanner(stdout)
			read := func(until string) {
				for lines.Scan() {
					k, v, _ := strings.Cut(lines.Text(), " ")
					got[k] = v
					if k == until {
						return
					}
				}
				t.Fatalf("pyvisa ended before %s: %q\n%s", until, got, stderr.String())
			}
			read("meas_volt")
			m, err := b.WaitBoot(ctx, boots)
			if err != nil || m != sim.ModeApp {
				t.Fatalf("the board did not boot on OUTP ON: %s %v", m, err)
			}
			if b.Voltage() != 3.1 {
				t.Errorf("board voltage %v after VOLT 3.1", b.Voltage())
			}
			io.WriteString(stdin, "measure\n")
			read("meas_volt_off")
			if err := cmd.Wait(); err != nil {
				t.Fatalf("pyvisa: %v\n%s", err, stderr.String())
			}
			for k, want := range map[string]string{
				"idn": "fudbench,SIM-SUPPLY,visa,1.0", "outp": "1", "volt": "3.100000", "curr": "0.250000",
				"meas_volt": "3.100000", "err": `0,"No error"`, "outp_off": "0", "meas_volt_off": "0.000000",
			} {
				if got[k] != want {
					t.Errorf("%s: pyvisa read %q, want %q", k, got[k], want)
				}
			}
			i, err := strconv.ParseFloat(got["meas_curr"], 64)
			if want := sim.DefaultCurrent.App; err != nil || math.Abs(i-want) > 0.02*want {
				t.Errorf("MEAS:CURR? in app mode: pyvisa read %q, want %.6f ± 2 %%", got["meas_curr"], want)
			}
			if b.Powered() || b.PowerInput() || b.Mode() != sim.ModeOff {
				t.Errorf("after OUTP OFF: powered %v input %v mode %s", b.Powered(), b.PowerInput(), b.Mode())
			}
			t.Logf("pyvisa %s over %s: %q", pv.Version, tc.resource, got)
		})
	}
}
