package scpi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/ptytest"
)

// instrument is a fake supply: it records the commands it receives and
// answers queries the way a real one would, in the scpi or the korad
// dialect, over TCP or the master side of a pseudo-terminal.
type instrument struct {
	korad bool

	mu       sync.Mutex
	cmds     []string
	at       []time.Time // when each command arrived
	conns    int         // connections accepted
	closed   int         // connections the driver closed
	on       bool
	channel  int
	volts    float64
	amps     float64
	maxVolts float64           // a VOLT above it is an instrument error
	errs     []string          // the error queue
	replies  map[string]string // command → reply, instead of the usual
	silent   bool              // answers nothing
	dropOn   map[string]int    // command → times to hang up on it
	open     []io.Closer       // the server side of open connections
}

func newInstrument() *instrument {
	return &instrument{maxVolts: 30, channel: 1, replies: map[string]string{}, dropOn: map[string]int{}}
}

// Cmds returns the commands received so far.
func (in *instrument) Cmds() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]string(nil), in.cmds...)
}

// Reset forgets the commands received.
func (in *instrument) Reset() {
	in.mu.Lock()
	in.cmds, in.at = nil, nil
	in.mu.Unlock()
}

func (in *instrument) set(f func(in *instrument)) {
	in.mu.Lock()
	f(in)
	in.mu.Unlock()
}

func (in *instrument) get(f func(in *instrument)) { in.set(f) }

// hangUp closes every open connection from the instrument's side, as a
// supply that drops idle sockets does.
func (in *instrument) hangUp() {
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, c := range in.open {
		c.Close()
	}
	in.open = nil
}

// handle records cmd and returns the reply, if any; hangUp asks the
// caller to close the connection instead.
func (in *instrument) handle(cmd string) (reply string, ok, hangUp bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.cmds = append(in.cmds, cmd)
	in.at = append(in.at, time.Now())
	if n := in.dropOn[cmd]; n > 0 {
		in.dropOn[cmd] = n - 1
		return "", false, true
	}
	if in.silent {
		return "", false, false
	}
	if r, ok := in.replies[cmd]; ok {
		return r, true, false
	}
	if in.korad {
		return in.korad1(cmd)
	}
	verb, arg, _ := strings.Cut(cmd, " ")
	switch verb {
	case "*CLS":
		in.errs = nil
	case "*IDN?":
		return "FAKE,PSU,0,1.0", true, false
	case "*OPC?":
		return "1", true, false
	case "INST:NSEL":
		n, err := strconv.Atoi(arg)
		if err != nil || n < 1 || n > 3 {
			in.errs = append(in.errs, `-224,"Illegal parameter value"`)
			break
		}
		in.channel = n
	case "VOLT":
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil || v > in.maxVolts {
			in.errs = append(in.errs, `-222,"Data out of range"`)
			break
		}
		in.volts = v
	case "CURR":
		v, err := strconv.ParseFloat(arg, 64)
		if err != nil {
			in.errs = append(in.errs, `-222,"Data out of range"`)
			break
		}
		in.amps = v
	case "OUTP":
		in.on = arg == "ON"
	case "OUTP?":
		if in.on {
			return "1", true, false
		}
		return "0", true, false
	case "MEAS:VOLT?":
		return "+3.30000E+00", true, false
	case "MEAS:CURR?":
		return "0.012345", true, false
	case "SYST:ERR?":
		if len(in.errs) == 0 {
			return `+0,"No error"`, true, false
		}
		e := in.errs[0]
		in.errs = in.errs[1:]
		return e, true, false
	default:
		in.errs = append(in.errs, `-113,"Undefined header"`)
	}
	return "", false, false
}

// korad1 answers a Korad command: replies have no line end.
func (in *instrument) korad1(cmd string) (string, bool, bool) {
	switch {
	case strings.HasPrefix(cmd, "VSET"):
		in.volts, _ = strconv.ParseFloat(cmd[6:], 64)
	case strings.HasPrefix(cmd, "ISET"):
		in.amps, _ = strconv.ParseFloat(cmd[6:], 64)
	case cmd == "OUT1", cmd == "OUT0":
		in.on = cmd == "OUT1"
	case strings.HasPrefix(cmd, "VOUT"):
		return "03.30", true, false
	case strings.HasPrefix(cmd, "IOUT"):
		return "0.012", true, false
	case cmd == "STATUS?":
		b := byte(0x01) // CV mode
		if in.on {
			b |= 0x40
		}
		return string([]byte{b}), true, false
	case cmd == "*IDN?":
		return "KORAD KA3005P V5.8 SN:03379314", true, false
	}
	return "", false, false
}

// serveTCP serves the instrument on a TCP port of 127.0.0.1 and returns
// its address.
func (in *instrument) serveTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		in.hangUp()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			in.mu.Lock()
			in.conns++
			in.open = append(in.open, c)
			in.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				in.serveLines(c, c, "\n")
			}()
		}
	}()
	return ln.Addr().String()
}

// serveLines answers line-ended commands from r on w until r ends.
func (in *instrument) serveLines(r io.Reader, w io.Writer, replyEnd string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		cmd := strings.TrimRight(sc.Text(), "\r")
		reply, ok, hangUp := in.handle(cmd)
		if hangUp {
			if c, isCloser := r.(io.Closer); isCloser {
				c.Close()
			}
			return
		}
		if ok {
			if _, err := io.WriteString(w, reply+replyEnd); err != nil {
				return
			}
		}
	}
	in.mu.Lock()
	in.closed++
	in.mu.Unlock()
}

// koradCmd is one Korad command at the start of the stream: the fake
// splits them by their grammar, as the supply does by the pauses.
var koradCmd = regexp.MustCompile(`^(?:VSET\d:\d+\.\d\d|ISET\d:\d+\.\d\d\d|OUT[01]|VOUT\d\?|IOUT\d\?|STATUS\?|\*IDN\?)`)

// serveKorad answers Korad commands from r on w until r ends.
func (in *instrument) serveKorad(r io.Reader, w io.Writer) {
	var pending string
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			pending += string(buf[:n])
			for {
				pending = strings.TrimLeft(pending, "\r\n")
				m := koradCmd.FindString(pending)
				if m == "" {
					if len(pending) > 32 {
						in.handle("junk:" + pending)
						pending = ""
					}
					break
				}
				pending = pending[len(m):]
				if reply, ok, _ := in.handle(m); ok {
					if _, err := io.WriteString(w, reply); err != nil {
						return
					}
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// servePTY serves the instrument on a pseudo-terminal and returns the
// path of its slave side, which the driver opens as a serial port.
func (in *instrument) servePTY(t *testing.T) string {
	t.Helper()
	m, path := ptytest.Open(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if in.korad {
			in.serveKorad(m, m)
		} else {
			in.serveLines(m, m, "\r\n")
		}
	}()
	t.Cleanup(func() {
		m.Close()
		<-done
	})
	return path
}

// gaps returns the time between consecutive commands.
func (in *instrument) gaps() []time.Duration {
	in.mu.Lock()
	defer in.mu.Unlock()
	var g []time.Duration
	for i := 1; i < len(in.at); i++ {
		g = append(g, in.at[i].Sub(in.at[i-1]))
	}
	return g
}

// summary describes the instrument's state; call it with mu held.
func (in *instrument) summary() string {
	return fmt.Sprintf("on=%v ch=%d V=%g A=%g", in.on, in.channel, in.volts, in.amps)
}
