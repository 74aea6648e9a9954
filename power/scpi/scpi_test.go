package scpi

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/power"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func newSupply(t *testing.T, c Config) *Supply {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wantCmds(t *testing.T, in *instrument, want ...string) {
	t.Helper()
	if got := in.Cmds(); !slices.Equal(got, want) {
		t.Errorf("commands\n got %q\nwant %q", got, want)
	}
	in.Reset()
}

func TestOnOff(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3, CurrentLimit: 0.5})
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "VOLT 3.3", "CURR 0.5", "OUTP ON", "*OPC?")
	in.get(func(in *instrument) {
		if !in.on || in.volts != 3.3 || in.amps != 0.5 {
			t.Errorf("instrument after On: %s", in.summary())
		}
	})
	if err := s.Off(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "OUTP OFF", "*OPC?")
	in.get(func(in *instrument) {
		if in.on {
			t.Error("still on after Off")
		}
		if in.conns != 1 {
			t.Errorf("%d connections, want 1 kept between calls", in.conns)
		}
	})
}

func TestNoCurrentLimit(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 5})
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "VOLT 5", "OUTP ON", "*OPC?")
}

func TestState(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3})
	for _, c := range []struct {
		reply string
		want  bool
	}{{"1", true}, {"0", false}, {"ON", true}, {"OFF", false}, {"+1", true}} {
		in.set(func(in *instrument) { in.replies["OUTP?"] = c.reply })
		on, err := s.State(ctx(t))
		if err != nil || on != c.want {
			t.Errorf("reply %q: %v %v, want %v", c.reply, on, err, c.want)
		}
	}
	in.set(func(in *instrument) { delete(in.replies, "OUTP?") })
	s.On(ctx(t))
	if on, err := s.State(ctx(t)); err != nil || !on {
		t.Errorf("after On: %v %v", on, err)
	}
}

func TestMeasure(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3})
	rd, err := s.Measure(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rd.Volts != 3.3 || rd.Amps != 0.012345 {
		t.Errorf("reading %+v", rd)
	}
	wantCmds(t, in, "MEAS:VOLT?", "MEAS:CURR?")
	in.set(func(in *instrument) { in.replies["MEAS:VOLT?"], in.replies["MEAS:CURR?"] = "3.298V", "12.5mA" })
	rd, err = s.Measure(ctx(t))
	if err != nil || rd.Volts != 3.298 || math.Abs(rd.Amps-0.0125) > 1e-12 {
		t.Errorf("with units: %+v %v", rd, err)
	}
}

func TestSetVoltage(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3, CurrentLimit: 0.1})
	if s.Nominal() != 3.3 {
		t.Errorf("nominal %g", s.Nominal())
	}
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	in.Reset()
	if err := s.SetVoltage(ctx(t), 2.5); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "VOLT 2.5", "*OPC?")
	in.get(func(in *instrument) {
		if !in.on || in.volts != 2.5 {
			t.Errorf("after SetVoltage: %s", in.summary())
		}
	})
	for _, v := range []float64{3.4, -1, math.NaN()} {
		if err := s.SetVoltage(ctx(t), v); !errors.Is(err, power.ErrDriver) {
			t.Errorf("SetVoltage(%g): %v", v, err)
		}
	}
	wantCmds(t, in)
	// On goes back to the nominal level.
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "VOLT 3.3", "CURR 0.1", "OUTP ON", "*OPC?")

	s2 := newSupply(t, Config{Address: s.Config().Address, Voltage: 3.3, MaxVoltage: 5})
	if err := s2.SetVoltage(ctx(t), 5); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "VOLT 5", "*OPC?")
}

func TestChannel(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Channel: 2, Voltage: 3.3, CurrentLimit: 0.25})
	c := ctx(t)
	if err := s.On(c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.State(c); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Measure(c); err != nil {
		t.Fatal(err)
	}
	if err := s.SetVoltage(c, 3); err != nil {
		t.Fatal(err)
	}
	if err := s.Off(c); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in,
		"INST:NSEL 2", "VOLT 3.3", "CURR 0.25", "OUTP ON", "*OPC?",
		"INST:NSEL 2", "OUTP?",
		"INST:NSEL 2", "MEAS:VOLT?", "MEAS:CURR?",
		"INST:NSEL 2", "VOLT 3", "*OPC?",
		"INST:NSEL 2", "OUTP OFF", "*OPC?")
}

// TestConcurrent: calls from several goroutines run one at a time, each
// group of commands whole.
func TestConcurrent(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Channel: 3, Voltage: 3.3, CheckErrors: true})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 5 {
				var err error
				switch i % 3 {
				case 0:
					err = s.On(ctx(t))
				case 1:
					_, err = s.State(ctx(t))
				default:
					_, err = s.Measure(ctx(t))
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	cmds := in.Cmds()
	if cmds[0] != "*CLS" {
		t.Fatalf("first command %q", cmds[0])
	}
	groups := map[string]bool{
		"VOLT 3.3|OUTP ON|SYST:ERR?": true,
		"OUTP?":                      true,
		"MEAS:VOLT?|MEAS:CURR?":      true,
	}
	n := 0
	for g := range strings.SplitSeq(strings.Join(cmds[1:], "|"), "INST:NSEL 3") {
		if g = strings.Trim(g, "|"); g == "" {
			continue
		}
		n++
		if !groups[g] {
			t.Errorf("group %q", g)
		}
	}
	if n != 40 {
		t.Errorf("%d groups, want 40", n)
	}
}

func TestCheckErrors(t *testing.T) {
	in := newInstrument()
	addr := in.serveTCP(t)
	s := newSupply(t, Config{Address: addr, Voltage: 40, CurrentLimit: 1, CheckErrors: true})
	err := s.On(ctx(t))
	if !errors.Is(err, power.ErrDriver) || !strings.Contains(err.Error(), `-222,"Data out of range"`) ||
		!strings.Contains(err.Error(), "VOLT 40; CURR 1; OUTP ON") {
		t.Fatalf("On with an instrument error: %v", err)
	}
	wantCmds(t, in, "*CLS", "VOLT 40", "CURR 1", "OUTP ON", "SYST:ERR?", "SYST:ERR?")

	// An error left in the queue from before the connection is cleared.
	in.set(func(in *instrument) { in.errs = []string{`-113,"Undefined header"`} })
	s2 := newSupply(t, Config{Address: addr, Voltage: 3.3, CheckErrors: true})
	if err := s2.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "*CLS", "VOLT 3.3", "OUTP ON", "SYST:ERR?")
	if err := s2.Off(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "OUTP OFF", "SYST:ERR?")

	// A bad channel is found by the first setting call.
	s3 := newSupply(t, Config{Address: addr, Channel: 7, Voltage: 3.3, CheckErrors: true})
	if err := s3.On(ctx(t)); err == nil || !strings.Contains(err.Error(), "Illegal parameter value") {
		t.Errorf("bad channel: %v", err)
	}

	// A reply to SYST:ERR? that is none.
	in.set(func(in *instrument) { in.replies["SYST:ERR?"] = "what?" })
	if err := s2.Off(ctx(t)); err == nil || !strings.Contains(err.Error(), `SYST:ERR?: reply "what?" is no error code`) {
		t.Errorf("garbage error reply: %v", err)
	}
}

func TestGarbageReply(t *testing.T) {
	in := newInstrument()
	addr := in.serveTCP(t)
	s := newSupply(t, Config{Address: addr, Voltage: 3.3})
	in.set(func(in *instrument) { in.replies["MEAS:CURR?"] = "abc" })
	_, err := s.Measure(ctx(t))
	want := "scpi:" + addr + `: MEAS:CURR?: reply "abc" is no number: power: driver failed`
	if err == nil || err.Error() != want || !errors.Is(err, power.ErrDriver) {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	in.set(func(in *instrument) { in.replies["OUTP?"] = "maybe" })
	if _, err := s.State(ctx(t)); err == nil || !strings.Contains(err.Error(), `OUTP?: reply "maybe" is neither on nor off`) {
		t.Errorf("state: %v", err)
	}
	// The next call goes on, on a new connection.
	in.set(func(in *instrument) { delete(in.replies, "MEAS:CURR?") })
	if _, err := s.Measure(ctx(t)); err != nil {
		t.Error(err)
	}
	in.set(func(in *instrument) { in.replies["MEAS:VOLT?"] = strings.Repeat("9", maxReply+10) })
	if _, err := s.Measure(ctx(t)); !errors.Is(err, power.ErrDriver) || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("long reply: %v", err)
	}
}

func TestSilentTimeout(t *testing.T) {
	in := newInstrument()
	in.silent = true
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3, Timeout: 200 * time.Millisecond})
	start := time.Now()
	_, err := s.State(ctx(t))
	took := time.Since(start)
	if !errors.Is(err, power.ErrTimeout) || !strings.Contains(err.Error(), "OUTP?") {
		t.Errorf("silent instrument: %v", err)
	}
	if took < 200*time.Millisecond || took > time.Second {
		t.Errorf("took %v, want the timeout, 200ms", took)
	}
	// The connection was dropped, so that a late reply cannot be taken
	// for the next one; and there was no second try.
	in.set(func(in *instrument) { in.silent = false })
	if on, err := s.State(ctx(t)); err != nil || on {
		t.Errorf("after the timeout: %v %v", on, err)
	}
	in.get(func(in *instrument) {
		if in.conns != 2 {
			t.Errorf("%d connections, want 2", in.conns)
		}
		if n := strings.Count(strings.Join(in.cmds, " "), "OUTP?"); n != 2 {
			t.Errorf("OUTP? sent %d times", n)
		}
	})
}

func TestCallerDeadline(t *testing.T) {
	in := newInstrument()
	in.silent = true
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3, Timeout: 5 * time.Second})
	c, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s.Measure(c)
	if !errors.Is(err, power.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("after %v: %v", time.Since(start), err)
	}
}

func TestCancel(t *testing.T) {
	in := newInstrument()
	in.silent = true
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3, Timeout: 5 * time.Second})
	c, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := s.State(c)
	if !errors.Is(err, context.Canceled) || errors.Is(err, power.ErrTimeout) || time.Since(start) > time.Second {
		t.Errorf("after %v: %v", time.Since(start), err)
	}
	// A call made with a cancelled ctx sends nothing.
	in.Reset()
	if err := s.On(c); !errors.Is(err, context.Canceled) {
		t.Errorf("On with a cancelled ctx: %v", err)
	}
	wantCmds(t, in)
}

// TestRedial: a connection the supply closed between calls, or under
// one, is dialled again once.
func TestRedial(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3})
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	in.hangUp()
	time.Sleep(20 * time.Millisecond) // the FIN reaches the driver's side
	in.Reset()
	if err := s.Off(ctx(t)); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "OUTP OFF", "*OPC?")

	in.set(func(in *instrument) { in.dropOn["MEAS:VOLT?"] = 1 })
	rd, err := s.Measure(ctx(t))
	if err != nil || rd.Volts != 3.3 {
		t.Fatalf("%+v %v", rd, err)
	}
	wantCmds(t, in, "MEAS:VOLT?", "MEAS:VOLT?", "MEAS:CURR?")

	// Once only.
	in.set(func(in *instrument) { in.dropOn["MEAS:VOLT?"] = 2 })
	if _, err := s.Measure(ctx(t)); !errors.Is(err, power.ErrDriver) || !strings.Contains(err.Error(), "MEAS:VOLT?") {
		t.Errorf("dropped twice: %v", err)
	}
	in.get(func(in *instrument) {
		if in.conns != 4 {
			t.Errorf("%d connections, want 4", in.conns)
		}
	})
}

func TestNoSupply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newSupply(t, Config{Address: addr, Voltage: 3.3}) // no I/O yet
	if err := s.On(ctx(t)); !errors.Is(err, power.ErrDriver) || !strings.Contains(err.Error(), "scpi:"+addr+": connect:") {
		t.Errorf("nobody listening: %v", err)
	}
	p := newSupply(t, Config{Port: "/nonexistent/ttyUSB9", Voltage: 3.3})
	if err := p.Off(ctx(t)); !errors.Is(err, power.ErrDriver) || !strings.Contains(err.Error(), "scpi:/nonexistent/ttyUSB9: open:") {
		t.Errorf("no port: %v", err)
	}
}

func TestHalt(t *testing.T) {
	in := newInstrument()
	s := newSupply(t, Config{Address: in.serveTCP(t), Voltage: 3.3})
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := power.Safe(ctx(t), s); err != nil {
		t.Fatal(err)
	}
	wantCmds(t, in, "VOLT 3.3", "OUTP ON", "*OPC?", "OUTP OFF", "*OPC?")
	deadline := time.Now().Add(2 * time.Second)
	for {
		var closed int
		in.get(func(in *instrument) { closed = in.closed })
		if closed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Halt left the connection open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A later call opens it again.
	if on, err := s.State(ctx(t)); err != nil || on {
		t.Errorf("after Halt: %v %v", on, err)
	}
}

func TestSerialSCPI(t *testing.T) {
	in := newInstrument()
	path := in.servePTY(t)
	s := newSupply(t, Config{Port: path, Voltage: 3.3, CurrentLimit: 0.05, LineEnd: "\r\n", CheckErrors: true})
	if s.String() != "scpi:"+path {
		t.Errorf("name %q", s)
	}
	if err := s.On(ctx(t)); err != nil {
		t.Fatal(err)
	}
	rd, err := s.Measure(ctx(t))
	if err != nil || rd.Volts != 3.3 || rd.Amps != 0.012345 {
		t.Errorf("%+v %v", rd, err)
	}
	if on, err := s.State(ctx(t)); err != nil || !on {
		t.Errorf("%v %v", on, err)
	}
	wantCmds(t, in, "*CLS", "VOLT 3.3", "CURR 0.05", "OUTP ON", "SYST:ERR?", "MEAS:VOLT?", "MEAS:CURR?", "OUTP?")

	in.set(func(in *instrument) { in.silent = true })
	s.cfg.Timeout = 150 * time.Millisecond
	start := time.Now()
	if _, err := s.State(ctx(t)); !errors.Is(err, power.ErrTimeout) || time.Since(start) > time.Second {
		t.Errorf("silent, after %v: %v", time.Since(start), err)
	}
	c, cancel := context.WithCancel(context.Background())
	s.cfg.Timeout = 5 * time.Second
	time.AfterFunc(50*time.Millisecond, cancel)
	start = time.Now()
	if _, err := s.Measure(c); !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
		t.Errorf("cancelled, after %v: %v", time.Since(start), err)
	}
	in.set(func(in *instrument) { in.silent = false })
	if err := s.Halt(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func TestKorad(t *testing.T) {
	in := newInstrument()
	in.korad = true
	path := in.servePTY(t)
	s := newSupply(t, Config{Port: path, Dialect: DialectKorad, Voltage: 3.3, CurrentLimit: 0.5})
	c := ctx(t)
	if err := s.On(c); err != nil {
		t.Fatal(err)
	}
	on, err := s.State(c)
	if err != nil || !on {
		t.Errorf("state after On: %v %v", on, err)
	}
	rd, err := s.Measure(c)
	if err != nil || rd.Volts != 3.3 || rd.Amps != 0.012 {
		t.Errorf("reading %+v %v", rd, err)
	}
	if err := s.SetVoltage(c, 2.75); err != nil {
		t.Fatal(err)
	}
	if err := s.Off(c); err != nil {
		t.Fatal(err)
	}
	if on, err := s.State(c); err != nil || on {
		t.Errorf("state after Off: %v %v", on, err)
	}
	// The fake sees each command when the scheduler lets it read: the
	// gaps it measures vary by some milliseconds either way.
	var sum time.Duration
	gaps := in.gaps()
	for i, g := range gaps {
		sum += g
		if g < koradPause/2 {
			t.Errorf("%v between commands %d and %d, want %v", g, i, i+1, koradPause)
		}
	}
	if mean := sum / time.Duration(len(gaps)); mean < koradPause-5*time.Millisecond {
		t.Errorf("%v between commands on average, want %v", mean, koradPause)
	}
	wantCmds(t, in, "VSET1:3.30", "ISET1:0.500", "OUT1", "STATUS?", "VOUT1?", "IOUT1?", "VSET1:2.75", "OUT0", "STATUS?")

	// Channel 2 of a KA3305P; a line end for a clone that wants one.
	s.Close() // the port is opened for exclusive use
	s2 := newSupply(t, Config{Port: path, Dialect: DialectKorad, Channel: 2, Voltage: 5, LineEnd: "\n"})
	if err := s2.On(c); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Measure(c); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	wantCmds(t, in, "VSET2:5.00", "OUT1", "VOUT2?", "IOUT2?")

	// A garbage reply, and silence.
	in.set(func(in *instrument) { in.replies["VOUT1?"] = "xx.yy" })
	if _, err := s.Measure(c); err == nil || !strings.Contains(err.Error(), `VOUT1?: reply "xx.yy" is no number`) {
		t.Errorf("garbage: %v", err)
	}
	in.set(func(in *instrument) { in.silent = true })
	s.cfg.Timeout = 150 * time.Millisecond
	if _, err := s.State(c); !errors.Is(err, power.ErrTimeout) || !strings.Contains(err.Error(), "STATUS?") {
		t.Errorf("silent: %v", err)
	}
}

func TestOpenSettings(t *testing.T) {
	sw, err := power.Open(Driver, power.MapSettings{"address": "127.0.0.1", "voltage": "3.3V"})
	if err != nil {
		t.Fatal(err)
	}
	s := sw.(*Supply)
	c := s.Config()
	if s.String() != "scpi:127.0.0.1:5025" || c.Timeout != DefaultTimeout || c.Dialect != DialectSCPI || c.MaxVoltage != 3.3 || s.lineEnd != "\n" {
		t.Errorf("defaults: %s %+v", s, c)
	}
	sw, err = power.Open(Driver, power.MapSettings{"port": "/dev/ttyUSB0", "voltage": "3300mV", "current_limit": "500mA",
		"max_voltage": "3.6V", "channel": 1, "timeout": "500ms", "parity": "even", "dialect": "korad"})
	if err != nil {
		t.Fatal(err)
	}
	s = sw.(*Supply)
	c = s.Config()
	if s.String() != "scpi:/dev/ttyUSB0" || c.Baud != DefaultBaud || c.Voltage != 3.3 || c.CurrentLimit != 0.5 || c.MaxVoltage != 3.6 ||
		c.Channel != 1 || c.Timeout != 500*time.Millisecond || c.Parity != ParityEven || s.lineEnd != "" {
		t.Errorf("serial: %s %+v", s, c)
	}
	for _, a := range []struct{ in, want string }{
		{"[::1]", "[::1]:5025"}, {"::1", "[::1]:5025"}, {"psu.lab:5555", "psu.lab:5555"}, {"[fe80::1]:5025", "[fe80::1]:5025"},
	} {
		s, err := New(Config{Address: a.in, Voltage: 1})
		if err != nil || s.String() != "scpi:"+a.want {
			t.Errorf("address %q: %v %v", a.in, s, err)
		}
	}

	bad := []struct {
		m    power.MapSettings
		want string
	}{
		{power.MapSettings{"address": "h", "port": "/dev/ttyUSB0", "voltage": "3.3V"}, "not both"},
		{power.MapSettings{"voltage": "3.3V"}, "address or port: required"},
		{power.MapSettings{"address": "h"}, "voltage: required"},
		{power.MapSettings{"address": "h", "voltage": "3.3"}, "a unit is needed"},
		{power.MapSettings{"address": "h", "voltage": "3.3A"}, "a unit is needed"},
		{power.MapSettings{"address": "h", "voltage": "3.3kV"}, "no level"},
		{power.MapSettings{"address": "h", "voltage": 3.3}, "written as a string"},
		{power.MapSettings{"address": "h", "voltage": "-1V"}, `"-1V" is no level in V or mV`},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "current_limit": "1V"}, "a unit is needed"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "volts": "3.3V"}, "volts"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "channel": 0}, "count from 1"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "dialect": "siglent"}, "dialect"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "baud": 9600}, "only with port"},
		{power.MapSettings{"address": "h:x", "voltage": "3.3V"}, "no port number"},
		{power.MapSettings{"address": "tcp://h", "voltage": "3.3V"}, "no host"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "timeout": "0s"}, "not positive"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "timeout": "2"}, "timeout"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "line_end": "\t"}, "line_end"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "line_end": ""}, "line_end"},
		{power.MapSettings{"address": "h", "voltage": "3.3V", "max_voltage": "3V"}, "below the voltage"},
		{power.MapSettings{"port": "/dev/ttyUSB0", "voltage": "3.3V", "parity": "mark"}, "parity"},
		{power.MapSettings{"port": "/dev/ttyUSB0", "voltage": "3.3V", "baud": -1}, "negative"},
		{power.MapSettings{"port": "/dev/ttyUSB0", "voltage": "3.3V", "dialect": "korad", "check_errors": true}, "no error queue"},
		{power.MapSettings{"port": "/dev/ttyUSB0", "voltage": "3.3V", "dialect": "korad", "channel": 10}, "out of range"},
	}
	for _, b := range bad {
		_, err := power.Open(Driver, b.m)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%v: got %v, want %q", b.m, err, b.want)
		}
	}
}

func TestParseNumber(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{
		{"+3.30000E+00", 3.3}, {"0.012345", 0.012345}, {"3.300V", 3.3}, {" 12.5mA\r\n", 0.0125}, {"-0.001", -0.001},
		{"5", 5}, {".5", 0.5}, {"5.", 5}, {"1.2e-3", 0.0012}, {"3.3 V", 3.3}, {"250uA", 0.00025}, {"1.5W", 1.5},
	} {
		v, err := ParseNumber(c.in)
		if err != nil || math.Abs(v-c.want) > 1e-12 {
			t.Errorf("%q: %v %v, want %v", c.in, v, err, c.want)
		}
	}
	for _, in := range []string{"", "abc", "3.3.3", "9.9E+37", "9.91E37", "1e400", "NaN", "Inf", "0x10", "3,3", "1_000", "3.3VV", "m", "3.3 mm"} {
		if v, err := ParseNumber(in); err == nil {
			t.Errorf("%q: %v, want an error", in, v)
		}
	}
}

func TestParseError(t *testing.T) {
	for _, c := range []struct {
		in   string
		code int
		msg  string
	}{
		{`+0,"No error"`, 0, "No error"}, {`0,"No error"`, 0, "No error"}, {`-222,"Data out of range"`, -222, "Data out of range"}, {"0", 0, ""},
	} {
		code, msg, err := ParseError(c.in)
		if err != nil || code != c.code || msg != c.msg {
			t.Errorf("%q: %d %q %v", c.in, code, msg, err)
		}
	}
	if _, _, err := ParseError("No error"); err == nil {
		t.Error("no code: no error")
	}
}
