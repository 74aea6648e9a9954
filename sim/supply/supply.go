// Package supply emulates a one-channel programmable bench power supply
// that speaks SCPI, for a simulated board: the bench's scpi power driver
// switches the board, sets its voltage and reads voltage and current
// through it as through a Rigol or Keysight supply. Production code does
// not import it.
//
// It listens on raw TCP (as port 5025 of a LAN supply; here any loopback
// port) and, optionally, on a pseudo-terminal (a USB-serial supply). The
// protocol is line-based: a program message ends at "\n" ("\r\n" and "\r"
// too), headers are case-insensitive in their short or long form
// (VOLT/VOLTage), optional nodes may be left out ([SOURce:]VOLTage
// [:LEVel][:IMMediate][:AMPLitude]), several commands may share a line
// separated by ";" (a command after the first is read relative to the
// previous one's path, MEAS:VOLT?;CURR?, else from the root), and the
// answers to the queries of one line are sent as one line, joined by ";".
// A command that fails puts an error on the error queue (SYST:ERR?) and
// answers nothing; the rest of its line is not run.
//
// Commands (Commands lists them):
//
//	*IDN?                            fudbench,SIM-SUPPLY,<name>,1.0
//	*RST                             output off, voltage nominal, current limit default
//	*CLS                             clear the error queue
//	*OPC?  *OPC  *WAI  *TST?         1, -, -, 0
//	SYSTem:ERRor[:NEXT]?             0,"No error" or the oldest error: -113,"Undefined header"
//	SYSTem:VERSion?                  1999.0
//	SYSTem:REMote  SYSTem:LOCal      accepted
//	INSTrument:NSELect 1 / ?         channel 1 only
//	INSTrument[:SELect] CH1 / ?      CH1 (also OUT1, OUTP1, OUTPut1)
//	[SOURce:]VOLTage <v>|MIN|MAX|DEF / ? [MIN|MAX]    set voltage (V, mV)
//	[SOURce:]CURRent <a>|MIN|MAX|DEF / ? [MIN|MAX]    current limit (A, mA, uA)
//	APPLy <v>[,<a>] / ?              both at once; the query answers "v,a"
//	OUTPut[:STATe] ON|OFF|1|0 / ?    the output; the query answers 1 or 0
//	MEASure[:SCALar]:VOLTage[:DC]?   the set voltage while the output is on, else 0
//	MEASure[:SCALar]:CURRent[:DC]?   the mean current since the previous current measurement
//	MEASure[:SCALar]:POWer[:DC]?     that current times the measured voltage
//
// The output is the load's power input (Load.SetPower): the supply keeps no
// state of its own for it, so whatever else switches the load (a board's
// power pin) OUTP? reads back. The set voltage is the load's too.
//
// The current meter integrates: MEAS:CURR? answers the charge the load drew
// since the previous current measurement divided by the time, over at most
// the last 100 ms (MaxAperture) and at least 1 ms (MinAperture: a query
// sooner waits out the rest). Switching the output on starts a new window.
// The current limit only clamps what is reported (the supply would be in
// constant-current mode); the load is not affected, the voltage does not
// sag. Values are printed with six decimals (µA, µV).
package supply

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/internal/rawpty"
)

// Load is what the supply powers: a simulated board satisfies it.
type Load interface {
	// SetPower switches the load's power input.
	SetPower(on bool)
	// PowerInput reports whether the power input is on.
	PowerInput() bool
	// SetVoltage sets the level of the load's supply, in volts.
	SetVoltage(volts float64)
	// Voltage is the level set.
	Voltage() float64
	// ChargeAt is the charge the load had drawn at t, in coulombs, exact
	// within the last second at least.
	ChargeAt(t time.Time) float64
}

// Meter apertures of MEAS:CURR?.
const (
	MinAperture = time.Millisecond
	MaxAperture = 100 * time.Millisecond
)

// Defaults of Options.
const (
	DefaultNominal      = 3.3
	DefaultMaxVoltage   = 6.0
	DefaultMaxCurrent   = 3.0
	DefaultCurrentLimit = 1.0
)

// maxLine bounds a program message; a longer one is dropped with an
// error (-223, "Too much data").
const maxLine = 4096

// errorQueueLen is the error queue's depth; past it the newest entry is
// replaced by -350, "Queue overflow", as SCPI-99 says.
const errorQueueLen = 16

// Options configure a Supply.
type Options struct {
	// Name is the load's, the serial-number field of *IDN?.
	Name string
	// TCP is the address to listen on, default 127.0.0.1:0; "-" for none.
	TCP string
	// Serial also serves the protocol on a new pseudo-terminal.
	Serial bool
	// Nominal is the voltage *RST sets (default 3.3).
	Nominal float64
	// MaxVoltage and MaxCurrent bound the settings (default 6 V, 3 A);
	// CurrentLimit is the limit at start and after *RST (default 1 A).
	MaxVoltage, MaxCurrent, CurrentLimit float64
	// Logger receives a debug record per command; nil discards.
	Logger *slog.Logger
}

// Supply is an emulated SCPI bench supply. Its methods are safe for
// concurrent use; commands from every client run one at a time.
type Supply struct {
	load Load
	opts Options
	log  *slog.Logger

	ln   net.Listener
	pty  *os.File // master side, non-blocking
	tty  *os.File // slave side, kept open so the master never sees a hang-up
	path string
	wg   sync.WaitGroup

	mu       sync.Mutex // guards the fields below and runs commands one at a time
	limit    float64
	errs     []scpiError
	lastMeas time.Time // end of the previous current measurement
	conns    map[net.Conn]bool
	closed   bool
}

// New starts a supply powering load.
func New(load Load, opts Options) (*Supply, error) {
	if opts.Nominal == 0 {
		opts.Nominal = DefaultNominal
	}
	if opts.MaxVoltage == 0 {
		opts.MaxVoltage = DefaultMaxVoltage
	}
	if opts.MaxCurrent == 0 {
		opts.MaxCurrent = DefaultMaxCurrent
	}
	if opts.CurrentLimit == 0 {
		opts.CurrentLimit = DefaultCurrentLimit
	}
	if opts.TCP == "" {
		opts.TCP = "127.0.0.1:0"
	}
	for _, v := range []float64{opts.Nominal, opts.MaxVoltage, opts.MaxCurrent, opts.CurrentLimit} {
		if !(v > 0) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("supply %s: levels must be above 0: %+v", opts.Name, opts)
		}
	}
	if opts.Nominal > opts.MaxVoltage || opts.CurrentLimit > opts.MaxCurrent {
		return nil, fmt.Errorf("supply %s: nominal %gV or current limit %gA above the maximum (%gV, %gA)", opts.Name, opts.Nominal, opts.CurrentLimit, opts.MaxVoltage, opts.MaxCurrent)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Supply{load: load, opts: opts, log: log.With("device", "supply"), limit: opts.CurrentLimit, conns: map[net.Conn]bool{}}
	if opts.TCP != "-" {
		ln, err := net.Listen("tcp", opts.TCP)
		if err != nil {
			return nil, fmt.Errorf("supply %s: %w", opts.Name, err)
		}
		s.ln = ln
		s.wg.Add(1)
		go s.accept()
	}
	if opts.Serial {
		if err := s.openPTY(); err != nil {
			s.Close()
			return nil, err
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(s.pty, s.pty)
		}()
	}
	return s, nil
}

// Addr is the TCP address the supply listens on ("" with none).
func (s *Supply) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// SerialPath is the pseudo-terminal's path ("" with none).
func (s *Supply) SerialPath() string { return s.path }

// Close stops listening, hangs up every client and closes the pty. The
// load is left as it is.
func (s *Supply) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	var errs []error
	if s.ln != nil {
		errs = append(errs, s.ln.Close())
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	if s.pty != nil {
		errs = append(errs, s.pty.Close(), s.tty.Close())
	}
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("supply %s: close: %w", s.opts.Name, err)
	}
	return nil
}

func (s *Supply) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serve(c, c)
			c.Close()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// serve reads program messages from r and writes the answers to w until
// reading fails. "\n" ends a message, and so does "\r" (a terminal
// program's Enter); the empty message between "\r\n" is nothing.
func (s *Supply) serve(r io.Reader, w io.Writer) {
	buf := make([]byte, 4096)
	line := make([]byte, 0, 256)
	long := false // discarding the rest of an over-long message
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			switch {
			case c == '\n' || c == '\r':
				msg := string(line)
				line, long = line[:0], false
				if reply, ok := s.Exec(msg); ok {
					if _, werr := io.WriteString(w, reply+"\n"); werr != nil {
						return
					}
				}
			case long:
			case len(line) >= maxLine:
				long = true
				s.mu.Lock()
				s.push(errTooMuchData)
				s.mu.Unlock()
				line = line[:0]
			default:
				line = append(line, c)
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("read ended", "err", err)
			}
			return
		}
	}
}

// openPTY makes the serial port: a raw pty whose master the supply reads.
func (s *Supply) openPTY() error {
	master, slave, err := rawpty.Open()
	if err != nil {
		return fmt.Errorf("supply %s: %w", s.opts.Name, err)
	}
	s.pty, s.tty, s.path = master, slave, slave.Name()
	return nil
}

// Exec runs one program message (a line without its terminator) as a
// client's, and returns the line to answer (without "\n"); ok is false
// when nothing is to be answered.
func (s *Supply) Exec(line string) (reply string, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var replies []string
	var prefix []string // the previous command's path without its last node
	for unit := range strings.SplitSeq(line, ";") {
		unit = strings.TrimSpace(unit)
		if unit == "" {
			continue
		}
		out, hasOut, path, err := s.run(unit, prefix)
		if err != nil {
			s.push(*err)
			s.log.Debug("command", "cmd", unit, "error", err.Error())
			break // the rest of the message is not run
		}
		s.log.Debug("command", "cmd", unit, "reply", out)
		if path != nil {
			prefix = path[:len(path)-1]
		}
		if hasOut {
			replies = append(replies, out)
		}
	}
	if len(replies) == 0 {
		return "", false
	}
	return strings.Join(replies, ";"), true
}

// push adds an error to the queue; s.mu held.
func (s *Supply) push(e scpiError) {
	if len(s.errs) >= errorQueueLen {
		s.errs[len(s.errs)-1] = errQueueOverflow
		return
	}
	s.errs = append(s.errs, e)
}

// Errors returns the errors queued and not yet read (SYST:ERR?), oldest
// first, as SYST:ERR? would answer them.
func (s *Supply) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.errs))
	for i, e := range s.errs {
		out[i] = e.String()
	}
	return out
}

// scpiError is an entry of the error queue.
type scpiError struct {
	code int
	msg  string
}

func (e scpiError) String() string { return strconv.Itoa(e.code) + `,"` + e.msg + `"` }
func (e scpiError) Error() string  { return e.String() }

// SCPI-99 errors the supply reports.
var (
	errSyntax          = scpiError{-102, "Syntax error"}
	errDataType        = scpiError{-104, "Data type error"}
	errParamNotAllowed = scpiError{-108, "Parameter not allowed"}
	errMissingParam    = scpiError{-109, "Missing parameter"}
	errUndefinedHeader = scpiError{-113, "Undefined header"}
	errSuffixRange     = scpiError{-114, "Header suffix out of range"}
	errOutOfRange      = scpiError{-222, "Data out of range"}
	errTooMuchData     = scpiError{-223, "Too much data"}
	errIllegalParam    = scpiError{-224, "Illegal parameter value"}
	errQueueOverflow   = scpiError{-350, "Queue overflow"}
)
