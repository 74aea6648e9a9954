package supply

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial"
)

// fakeLoad draws a constant current while powered.
type fakeLoad struct {
	mu    sync.Mutex
	on    bool
	volts float64
	amps  float64
	q     float64   // charge up to t
	t     time.Time // last change
	sets  int       // SetPower calls
}

func newFakeLoad(amps float64) *fakeLoad {
	return &fakeLoad{volts: 3.3, amps: amps, t: time.Now()}
}

func (l *fakeLoad) draw() float64 {
	if l.on {
		return l.amps
	}
	return 0
}

func (l *fakeLoad) SetPower(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.q += l.draw() * now.Sub(l.t).Seconds()
	l.t, l.on = now, on
	l.sets++
}

func (l *fakeLoad) PowerInput() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.on
}

func (l *fakeLoad) SetVoltage(v float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.volts = v
}

func (l *fakeLoad) Voltage() float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.volts
}

func (l *fakeLoad) ChargeAt(t time.Time) float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.Before(l.t) {
		return l.q // the test does not switch while measuring
	}
	return l.q + l.draw()*t.Sub(l.t).Seconds()
}

var _ Load = (*fakeLoad)(nil)

func newTestSupply(t testing.TB, l Load, opts Options) *Supply {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "b1"
	}
	s, err := New(l, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// TestExec: the command set, forms, errors and their queue, one line at
// a time as a client sends them.
func TestExec(t *testing.T) {
	l := newFakeLoad(0.005)
	s := newTestSupply(t, l, Options{TCP: "-"})
	steps := []struct{ in, want string }{
		{"*IDN?", "fudbench,SIM-SUPPLY,b1,1.0"},
		{"*idn?", "fudbench,SIM-SUPPLY,b1,1.0"},
		{"SYST:ERR?", `0,"No error"`},
		{"VOLT 2.5", ""},
		{"VOLT?", "2.500000"},
		{"volt 2900mV", ""},
		{"SOURce:VOLTage:LEVel:IMMediate:AMPLitude?", "2.900000"},
		{":SOUR1:VOLT:LEV 3.3 V", ""},
		{"VOLTAGE?", "3.300000"},
		{"VOLT? MAX", "6.000000"},
		{"CURR 100mA", ""},
		{"CURR?", "0.100000"},
		{"curr:lev 0.25", ""},
		{"CURRent?", "0.250000"},
		{"OUTP?", "0"},
		{"MEAS:VOLT?", "0.000000"},
		{"MEAS:CURR?", "0.000000"},
		{"OUTP ON", ""},
		{"OUTPut:STATe?", "1"},
		{"MEAS:VOLT?", "3.300000"},
		{"MEASure:SCALar:VOLTage:DC?", "3.300000"},
		{"OUTP 0", ""},
		{"OUTP1?", "0"},
		{"OUTPUT:STAT 1", ""},
		{"OUTP?", "1"},
		{"INST:NSEL 1", ""},
		{"INST:NSEL?", "1"},
		{"INST CH1", ""},
		{"INST?", "CH1"},
		{"APPL 3.0,0.2", ""},
		{"APPL?", "3.000000,0.200000"},
		{"APPLY 3.3", ""},
		{"APPL?", "3.300000,0.200000"},
		{"VOLT?;CURR?", "3.300000;0.200000"},
		{"MEAS:VOLT?;:OUTP?", "3.300000;1"},
		{"*OPC?", "1"},
		{"SYST:VERS?", "1999.0"},
		{"SYST:ERR?", `0,"No error"`},
		// Errors: no answer, an entry on the queue.
		{"FOO:BAR 1", ""},
		{"VOLT 99", ""},
		{"VOLT abc", ""},
		{"VOLT", ""},
		{"OUTP maybe", ""},
		{"INST:NSEL 2", ""},
		{"OUTP2 ON", ""},
		{"*IDN? 1", ""},
		{"VOLT 1;BOGUS;VOLT 2", ""}, // stops at the error: 1 V stays
		{"VOLT?", "1.000000"},
		{"SYST:ERR?", `-113,"Undefined header"`},
		{"SYST:ERR?", `-222,"Data out of range"`},
		{"SYST:ERR?", `-104,"Data type error"`},
		{"SYST:ERR?", `-109,"Missing parameter"`},
		{"SYST:ERR?", `-224,"Illegal parameter value"`},
		{"SYST:ERR?", `-222,"Data out of range"`},
		{"SYST:ERR?", `-114,"Header suffix out of range"`},
		{"SYST:ERR?", `-108,"Parameter not allowed"`},
		{"SYST:ERR:NEXT?", `-113,"Undefined header"`},
		{"SYST:ERR?", `0,"No error"`},
		{"MEAS:VOLT", ""}, // a query-only header as a setting
		{"*CLS", ""},
		{"SYST:ERR?", `0,"No error"`},
		{"*RST", ""},
		{"OUTP?;VOLT?;CURR?", "0;3.300000;1.000000"},
	}
	for _, st := range steps {
		got, ok := s.Exec(st.in)
		if got != st.want || ok != (st.want != "") {
			t.Errorf("%q: %q %v, want %q", st.in, got, ok, st.want)
		}
	}
	if l.Voltage() != 3.3 || l.PowerInput() {
		t.Errorf("after *RST the load is at %v V, on %v", l.Voltage(), l.PowerInput())
	}
	for range 40 {
		s.Exec("NOPE")
	}
	errs := s.Errors()
	if len(errs) != errorQueueLen || errs[len(errs)-1] != `-350,"Queue overflow"` || errs[0] != `-113,"Undefined header"` {
		t.Errorf("error queue after 40 errors: %v", errs)
	}
}

// TestMeasureCurrent: MEAS:CURR? integrates the load's charge since the
// previous measurement (at least 1 ms, at most 100 ms) and clamps at the
// current limit; MEAS:POW? is V × I.
func TestMeasureCurrent(t *testing.T) {
	l := newFakeLoad(0.0123)
	s := newTestSupply(t, l, Options{TCP: "-"})
	s.Exec("OUTP ON")
	for range 3 {
		time.Sleep(5 * time.Millisecond)
		got, _ := s.Exec("MEAS:CURR?")
		if v, err := strconv.ParseFloat(got, 64); err != nil || math.Abs(v-0.0123) > 2e-5 {
			t.Errorf("MEAS:CURR? %q, want 0.012300", got)
		}
	}
	// Back to back: the second waits out the minimum aperture.
	start := time.Now()
	s.Exec("MEAS:CURR?")
	s.Exec("MEAS:CURR?")
	if d := time.Since(start); d < MinAperture {
		t.Errorf("two measurements in %v", d)
	}
	got, _ := s.Exec("MEAS:POW?")
	if v, _ := strconv.ParseFloat(got, 64); math.Abs(v-3.3*0.0123) > 1e-6 {
		t.Errorf("MEAS:POW? %q, want %.6f", got, 3.3*0.0123)
	}
	s.Exec("CURR 10mA")
	if got, _ := s.Exec("MEAS:CURR?"); got != "0.010000" {
		t.Errorf("MEAS:CURR? over the limit: %q, want the limit 0.010000", got)
	}
	s.Exec("OUTP OFF")
	if got, _ := s.Exec("MEAS:CURR?"); got != "0.000000" {
		t.Errorf("MEAS:CURR? off: %q", got)
	}
}

// TestTCPClients: several clients at once over TCP, terminators \n, \r\n
// and \r, several queries on a line, an over-long line.
func TestTCPClients(t *testing.T) {
	l := newFakeLoad(0.005)
	s := newTestSupply(t, l, Options{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			ask := func(q, term string) string {
				if _, err := fmt.Fprint(c, q+term); err != nil {
					t.Error(err)
				}
				line, err := r.ReadString('\n')
				if err != nil {
					t.Errorf("%q: %v", q, err)
				}
				return strings.TrimSuffix(line, "\n")
			}
			for j := range 50 {
				term := []string{"\n", "\r\n", "\r"}[j%3]
				if got := ask("*IDN?", term); got != "fudbench,SIM-SUPPLY,b1,1.0" {
					t.Errorf("client %d: *IDN? %q", i, got)
				}
				ask("OUTP ON;MEAS:CURR?;OUTP?", term)
				ask("VOLT 3.3;VOLT?", term)
			}
		}()
	}
	wg.Wait()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "*CLS\n"+strings.Repeat("X", 3*maxLine)+"\nSYST:ERR?\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "-223,\"Too much data\"\n" {
		t.Errorf("after an over-long line: %q %v", line, err)
	}
}

// TestSerial: the same over a pseudo-terminal, opened with go.bug.st/serial
// as a USB-serial supply is.
func TestSerial(t *testing.T) {
	l := newFakeLoad(0.005)
	s := newTestSupply(t, l, Options{TCP: "-", Serial: true})
	if s.Addr() != "" || !strings.HasPrefix(s.SerialPath(), "/dev/pts/") {
		t.Fatalf("addr %q serial %q", s.Addr(), s.SerialPath())
	}
	p, err := serial.Open(s.SerialPath(), &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.SetReadTimeout(100 * time.Millisecond)
	for _, q := range []struct{ in, want string }{
		{"*IDN?\r\n", "fudbench,SIM-SUPPLY,b1,1.0"},
		{"VOLT 3.0\nVOLT?\n", "3.000000"},
		{"OUTP ON\nOUTP?\n", "1"},
		{"MEAS:VOLT?\n", "3.000000"},
	} {
		if _, err := p.Write([]byte(q.in)); err != nil {
			t.Fatal(err)
		}
		line, err := readLine(p, 5*time.Second)
		if err != nil || strings.TrimSpace(line) != q.want {
			t.Errorf("%q: %q %v, want %q", q.in, line, err, q.want)
		}
	}
	if !l.PowerInput() {
		t.Error("OUTP ON over serial left the load off")
	}
}

// readLine reads up to "\n" from a port whose reads time out (0, nil).
func readLine(p serial.Port, limit time.Duration) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for end := time.Now().Add(limit); time.Now().Before(end); {
		n, err := p.Read(b)
		if err != nil {
			return string(line), err
		}
		if n == 1 {
			line = append(line, b[0])
			if b[0] == '\n' {
				return string(line), nil
			}
		}
	}
	return string(line), fmt.Errorf("no line in %v", limit)
}

func TestNewErrors(t *testing.T) {
	for _, o := range []Options{
		{Nominal: -1},
		{Nominal: 7},
		{CurrentLimit: 4},
		{MaxVoltage: math.Inf(1)},
		{TCP: "256.0.0.1:0"},
	} {
		if s, err := New(newFakeLoad(0), o); err == nil {
			s.Close()
			t.Errorf("New(%+v) accepted", o)
		}
	}
	s := newTestSupply(t, newFakeLoad(0), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("still listening after Close")
	}
	if _, err := os.Stat(s.SerialPath()); s.SerialPath() != "" && err == nil {
		t.Error("pty left")
	}
}

// FuzzCommand: no program message makes the parser panic, answers with
// more than one line, or leaves the settings outside their bounds.
func FuzzCommand(f *testing.F) {
	for _, s := range []string{
		"*IDN?", "VOLT 3.3;CURR 0.1;OUTP ON", "MEAS:VOLT?;CURR?;POW?", ":SOUR1:VOLT:LEV:IMM:AMPL 2.5V",
		"APPL 3.3,100mA", "OUTP2 ON", "VOLT 1e400", "CURR -1", "VOLT NaN", "VOLT 0x1p3", "INST:NSEL 1.0",
		"SYST:ERR?", "*RST;*CLS;*OPC?", "VOLT? MAX", ";;;", "::", "*", "A:B:C:D:E?", "OUTP ON,OFF", "VOLT ,",
	} {
		f.Add(s)
	}
	l := newFakeLoad(0.005)
	s := newTestSupply(f, l, Options{TCP: "-"})
	f.Fuzz(func(t *testing.T, line string) {
		reply, ok := s.Exec(line)
		if ok == (reply == "") || strings.ContainsAny(reply, "\r\n") {
			t.Fatalf("%q: reply %q %v", line, reply, ok)
		}
		if v := l.Voltage(); !(v >= 0 && v <= DefaultMaxVoltage) {
			t.Fatalf("%q: voltage %v", line, v)
		}
		s.mu.Lock()
		lim, n := s.limit, len(s.errs)
		s.mu.Unlock()
		if !(lim >= 0 && lim <= DefaultMaxCurrent) || n > errorQueueLen {
			t.Fatalf("%q: limit %v, %d errors queued", line, lim, n)
		}
	})
}
