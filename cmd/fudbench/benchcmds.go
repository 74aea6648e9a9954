package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/power/simctl"
	"github.com/fudbench/fudbench/results"
)

func newBoardsCmd(g *globals) *cobra.Command {
	var (
		benchFile string
		jsonOut   bool
	)
	cmd := &cobra.Command{
		Use:   "boards [--bench FILE] [--json]",
		Short: "List the bench's boards and their wiring",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			inv, err := loadBench(benchFile)
			if err != nil {
				return err
			}
			if jsonOut {
				list := make([]boardJSON, 0, len(inv.Boards))
				for _, b := range inv.Boards {
					list = append(list, boardToJSON(b))
				}
				enc := json.NewEncoder(c.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(list)
			}
			w := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "BOARD\tTAGS\tPOWER\tPROBE\tCONSOLE\tINPUTS\tCOAP")
			for _, b := range inv.Boards {
				pw, pr, con, coap := "-", "-", "-", "-"
				if b.Power != nil {
					pw = b.Power.Driver
				}
				if b.Probe != nil {
					pr = b.Probe.Driver
				}
				if b.Console != nil {
					con = b.Console.Port
					if b.Console.USB != nil {
						con = fmt.Sprintf("usb %s:%s %s", b.Console.USB.VID, b.Console.USB.PID, b.Console.USB.Serial)
					}
				}
				if b.CoAP != nil {
					scheme := "coap"
					if b.CoAP.DTLS != nil {
						scheme = "coaps"
					}
					sec := ""
					switch {
					case b.CoAP.OSCORE != nil:
						sec = ", oscore"
					case b.CoAP.DTLS != nil && b.CoAP.DTLS.Cache != "none":
						sec = ", dtls cache " + b.CoAP.DTLS.Cache
					}
					if b.CoAP.QBlock != nil {
						sec += ", q-block1"
					}
					coap = fmt.Sprintf("%s://%s (%s%s)", scheme, b.CoAP.Address, coapProfile(b.CoAP), sec)
				}
				ins := "-"
				if names := b.InputNames(); len(names) > 0 {
					ins = strings.Join(names, ",")
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, strings.Join(b.Tags, ","), pw, pr, con, ins, coap)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the boards as a JSON array")
	return cmd
}

// coapProfile is a board's update profile, resumable unless set.
func coapProfile(c *boards.CoAP) string {
	if c.Profile == "" {
		return "resumable"
	}
	return c.Profile
}

// boardJSON is a board as `fudbench boards --json` prints it: what is
// wired where, never a key (a DTLS key's file or variable is left out
// too). A part the board lacks is null.
type boardJSON struct {
	Name    string       `json:"name"`
	Tags    []string     `json:"tags"`
	Power   *string      `json:"power"` // driver name
	Probe   *string      `json:"probe"` // driver name
	Console *consoleJSON `json:"console"`
	// Inputs maps each trigger input to its driver.
	Inputs map[string]string `json:"inputs"`
	CoAP   *coapJSON         `json:"coap"`
	Flash  *flashJSON        `json:"flash"`
}

type consoleJSON struct {
	Port string   `json:"port,omitempty"`
	USB  *usbJSON `json:"usb,omitempty"`
	Baud int      `json:"baud,omitempty"`
}

type usbJSON struct {
	VID    string `json:"vid"`
	PID    string `json:"pid"`
	Serial string `json:"serial,omitempty"`
}

type coapJSON struct {
	Address string      `json:"address"`
	Profile string      `json:"profile"`
	Path    string      `json:"path,omitempty"`
	DTLS    *dtlsJSON   `json:"dtls"`
	OSCORE  *oscoreJSON `json:"oscore,omitempty"`
	QBlock  *qblockJSON `json:"qblock,omitempty"`
}

// qblockJSON is a board's Q-Block1 setting; 0 is the default.
type qblockJSON struct {
	MaxPayloads  int   `json:"max_payloads"`
	NonTimeoutNs int64 `json:"non_timeout_ns"`
}

type dtlsJSON struct {
	Identity string `json:"identity"`
	Cache    string `json:"cache"`
}

// oscoreJSON leaves the master secret and salt out: only the IDs say
// which context it is.
type oscoreJSON struct {
	SenderID     string `json:"sender_id"`    // hex, the bench's
	RecipientID  string `json:"recipient_id"` // hex, the device's
	SequenceFile string `json:"sequence_file,omitempty"`
}

// flashJSON is in bytes; the keys are the bench file's.
type flashJSON struct {
	Size      int    `json:"size"`
	SlotSize  int    `json:"slot_size"`
	Base      uint32 `json:"base"`
	AppAddr   uint32 `json:"app_address"`
	EraseFrom uint32 `json:"erase_from"`
	// ProgramTime is the time to program WriteUnit bytes, when the bench
	// file says; nanoseconds.
	ProgramTime *int64 `json:"program_time_ns,omitempty"`
	WriteUnit   int    `json:"write_unit,omitempty"`
}

func boardToJSON(b boards.Board) boardJSON {
	j := boardJSON{Name: b.Name, Tags: b.Tags}
	if j.Tags == nil {
		j.Tags = []string{}
	}
	if b.Power != nil {
		j.Power = &b.Power.Driver
	}
	if b.Probe != nil {
		j.Probe = &b.Probe.Driver
	}
	if c := b.Console; c != nil {
		j.Console = &consoleJSON{Port: c.Port, Baud: c.Baud}
		if u := c.USB; u != nil {
			j.Console.USB = &usbJSON{VID: u.VID, PID: u.PID, Serial: u.Serial}
		}
	}
	j.Inputs = map[string]string{}
	for _, in := range b.Inputs {
		j.Inputs[in.Name] = in.Driver
	}
	if c := b.CoAP; c != nil {
		j.CoAP = &coapJSON{Address: c.Address, Profile: coapProfile(c), Path: c.Path}
		if c.DTLS != nil {
			j.CoAP.DTLS = &dtlsJSON{Identity: c.DTLS.Identity, Cache: c.DTLS.Cache}
		}
		if o := c.OSCORE; o != nil {
			j.CoAP.OSCORE = &oscoreJSON{SenderID: hex.EncodeToString(o.SenderID), RecipientID: hex.EncodeToString(o.RecipientID), SequenceFile: o.SequenceFile}
		}
		if q := c.QBlock; q != nil {
			j.CoAP.QBlock = &qblockJSON{MaxPayloads: q.MaxPayloads, NonTimeoutNs: int64(q.NonTimeout)}
		}
	}
	if f := b.Flash; f != nil {
		j.Flash = &flashJSON{Size: int(f.Size), SlotSize: int(f.SlotSize), Base: f.Base, AppAddr: f.AppAddr, EraseFrom: f.EraseFrom}
		if f.Timed {
			pt := int64(f.ProgramTime)
			j.Flash.ProgramTime, j.Flash.WriteUnit = &pt, f.WriteUnit
		}
	}
	return j
}

// safeOnExit switches a board to its safe state when the command was
// interrupted.
func safeOnExit(ctx context.Context, b *bench.Board, g *globals) {
	if ctx.Err() == nil || b.Power == nil {
		return
	}
	if err := b.Safe(); err != nil {
		g.log.Error("safe state", "board", b.Name, "err", err)
	}
}

func newPowerCmd(g *globals) *cobra.Command {
	var (
		benchFile string
		offTime   time.Duration
		jsonOut   bool
	)
	cmd := &cobra.Command{
		Use:       "power on|off|cycle|state BOARD [--json]",
		Short:     "Switch a board's power",
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"on", "off", "cycle", "state"},
		RunE: func(c *cobra.Command, args []string) error {
			op, name := args[0], args[1]
			if jsonOut && op != "state" {
				return usageErr(fmt.Errorf("--json applies to power state only, not power %s", op))
			}
			hub := bench.NewHub(results.NewClock(), nil)
			b, bd, err := bindBoard(c.Context(), benchFile, name, hub, bench.BindOptions{})
			if err != nil {
				return err
			}
			if err := b.NeedPower(); err != nil {
				return usageErr(err)
			}
			ctx := c.Context()
			defer safeOnExit(ctx, b, g)
			switch op {
			case "on":
				err = b.PowerOn(ctx)
			case "off":
				_, err = b.PowerOff(ctx)
			case "cycle":
				if _, err = b.PowerOff(ctx); err == nil {
					select {
					case <-time.After(offTime):
						err = b.PowerOn(ctx)
					case <-ctx.Done():
						err = ctx.Err()
					}
				}
			case "state":
				sr, ok := b.Power.(power.StateReader)
				if !ok {
					return usageErr(fmt.Errorf("power driver %s cannot read its state back", b.Power))
				}
				on, err := sr.State(ctx)
				if err != nil {
					return infraErr(simHint(bd, fmt.Errorf("board %s: power state (%s): %w", name, b.Power, err)))
				}
				// A supply that measures says what it delivers too.
				var r *power.Reading
				if m, ok := b.Power.(power.Meter); ok {
					got, err := m.Measure(ctx)
					if err != nil {
						return infraErr(fmt.Errorf("board %s: power state (%s): reading the supply: %w", name, b.Power, err))
					}
					r = &got
				}
				if jsonOut {
					out := struct {
						Board string   `json:"board"`
						On    bool     `json:"on"`
						Volts *float64 `json:"volts,omitempty"`
						Amps  *float64 `json:"amps,omitempty"`
					}{Board: name, On: on}
					if r != nil {
						out.Volts, out.Amps = &r.Volts, &r.Amps
					}
					return json.NewEncoder(c.OutOrStdout()).Encode(out)
				}
				state := map[bool]string{true: "on", false: "off"}[on]
				if r != nil {
					state += fmt.Sprintf(" (%.3f V, %.3f mA)", r.Volts, 1e3*r.Amps)
				}
				fmt.Fprintln(c.OutOrStdout(), state)
				return nil
			default:
				return usageErr(fmt.Errorf("unknown power operation %q: want on, off, cycle or state", op))
			}
			if err != nil {
				return infraErr(simHint(bd, err))
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: power %s (%s)\n", name, op, b.Power)
			return nil
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	cmd.Flags().DurationVar(&offTime, "off-time", time.Second, "how long cycle leaves the board off")
	cmd.Flags().BoolVar(&jsonOut, "json", false, `power state: print {"board":…,"on":…} as JSON (with "volts" and "amps" when the supply measures)`)
	return cmd
}

// simHint says what is missing when the sim power driver finds no
// control endpoint to talk to.
func simHint(bd *boards.Board, err error) error {
	if bd.Power != nil && bd.Power.Driver == simctl.Driver && errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w (is `fudbench sim` running?)", err)
	}
	return err
}

func newConsoleCmd(g *globals) *cobra.Command {
	var benchFile string
	cmd := &cobra.Command{
		Use:   "console BOARD",
		Short: "Show a board's console live, timestamped (Ctrl-C ends it)",
		Long: "Show a board's console live, with each line's time since the command started. " +
			"When the port vanishes (board unpowered, adapter re-enumerated) the gap is shown and the port is reopened when it returns. Ctrl-C ends it with exit 0.",
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			mem := results.SinkFunc(func(e results.Event) {
				switch e.Kind {
				case results.ConsoleGap:
					fmt.Fprintf(c.OutOrStdout(), "%10.3fs ~~ port gone: %s\n", e.T.Seconds(), e.Text)
				case results.ConsoleReopen:
					fmt.Fprintf(c.OutOrStdout(), "%10.3fs ~~ port back after %v: %s\n", e.T.Seconds(), e.Dur.Round(time.Millisecond), e.Attrs["port"])
				}
			})
			hub := bench.NewHub(results.NewClock(), mem)
			b, _, err := bindBoard(c.Context(), benchFile, args[0], hub, bench.BindOptions{Console: true})
			if err != nil {
				return err
			}
			if b.Console == nil {
				return usageErr(fmt.Errorf("board %s has no console", args[0]))
			}
			defer b.Close()
			lines, stop := b.Console.Subscribe()
			defer stop()
			for {
				select {
				case l := <-lines:
					fmt.Fprintf(c.OutOrStdout(), "%10.3fs %s\n", l.T.Seconds(), l.Text)
				case <-c.Context().Done():
					return nil
				}
			}
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	return cmd
}

// isTerminal reports whether f is a terminal (not merely a character
// device: /dev/null is one too, and a progress bar redrawn into it costs a
// write per block for nothing).
func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0 && isTTY(f) && os.Getenv("CI") == ""
}
