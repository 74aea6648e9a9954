package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/sim"
)

// simConfigs turns a bench file's sim sections into board configs; with
// no file, the built-in simulated bench. It returns each board's tags
// too.
func simConfigs(benchFile string) ([]sim.Config, map[string][]string, error) {
	b, err := loadBench(benchFile)
	if err != nil {
		return nil, nil, err
	}
	name := benchFile
	if name == "" {
		name = builtinName
	}
	var out []sim.Config
	tags := map[string][]string{}
	for _, bd := range b.Boards {
		if bd.Sim == nil {
			continue
		}
		c, err := sim.ConfigFromSection(bd.Name, bd.Sim)
		if err != nil {
			return nil, nil, usageErr(err)
		}
		out = append(out, c)
		tags[bd.Name] = bd.Tags
	}
	if len(out) == 0 {
		return nil, nil, usageErr(fmt.Errorf("%s: no board has a sim: section", name))
	}
	return out, tags, nil
}

func newSimCmd(g *globals) *cobra.Command {
	var (
		benchFile  string
		stateDir   string
		control    string
		writeBench string
		timeScale  float64
		off        bool
	)
	cmd := &cobra.Command{
		Use:   "sim [--bench FILE]",
		Short: "Serve simulated boards in the foreground",
		Long: `Serve simulated boards until Ctrl-C, printing for each its CoAP
addresses, console pty, GDB port and power control. With no --bench, the
built-in bench on the ports its bench file in the other commands expects:
sim-safe (inplace-recovery), sim-naive (naive-inplace, whose console
re-enumerates behind a stable link on every power-on), sim-oscore and
sim-oscore-nossn (OSCORE with the security context cached; the second
restores its cached sequence number, the classic nonce-reuse bug) and
sim-dtls (its DTLS record layer restored after a cut, no handshake). For
each OSCORE board a client context in libcoap's oscore_conf format is
written beside its console link (coap-client -E FILE,SEQFILE).

A bench file's sim: sections may use port 0 for any address (the system
picks free ports); --write-bench then writes a bench file that wires the
running boards, with their real addresses, for the other commands:

  fudbench sim --bench lab-sim.yaml --control 127.0.0.1:0 --write-bench served.yaml
  fudbench update --bench served.yaml sim-a up.img

Power inputs are reachable through the control endpoint (--control):
  curl -X PUT --data off http://ADDR/boards/sim-safe/power
Ctrl-C powers every board off and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfgs, tags, err := simConfigs(benchFile)
			if err != nil {
				return err
			}
			if stateDir == "" {
				stateDir = defaultStateDir()
			}
			for i := range cfgs {
				if cfgs[i].StateDir == "" {
					cfgs[i].StateDir = stateDir
				}
				if benchFile == "" || c.Flags().Changed("time-scale") {
					cfgs[i].TimeScale = timeScale
				}
				cfgs[i].Pins = true
			}
			s, err := sim.Start(cfgs, !off, g.log)
			if err != nil {
				return infraErr(err)
			}
			defer s.Close()
			addr, err := s.ServeControl(control)
			if err != nil {
				return infraErr(err)
			}
			ctx, cancel := context.WithTimeout(c.Context(), 10*time.Second)
			err = s.WaitReady(ctx)
			cancel()
			if err != nil && c.Context().Err() == nil {
				return infraErr(err)
			}
			if writeBench != "" {
				if err := writeServedBench(writeBench, s, addr.String(), tags); err != nil {
					return infraErr(err)
				}
			}
			oscoreConf, err := writeOSCOREContexts(stateDir, s)
			if err != nil {
				return infraErr(err)
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "control endpoint: http://%s/boards\n", addr)
			for _, b := range s.Boards {
				in := b.Info()
				fmt.Fprintf(w, "%s (%s): %s\n", in.Name, in.Strategy, in.Mode)
				for _, a := range in.CoAP {
					fmt.Fprintf(w, "  coap      coap://%s\n", a)
				}
				if in.CoAPS != "" {
					fmt.Fprintf(w, "  coaps     coaps://%s  (PSK identity %q, development key)\n", in.CoAPS, in.PSKIdentity)
				}
				if in.OSCORE != "" {
					fmt.Fprintf(w, "  oscore    coap://%s  (context %s)\n", in.OSCORE, oscoreConf[in.Name])
				}
				fmt.Fprintf(w, "  console   %s -> %s\n", in.ConsoleLink, in.Console)
				fmt.Fprintf(w, "  gdb       %s\n", in.GDB)
				fmt.Fprintf(w, "  power     PUT http://%s/boards/%s/power (on|off); gpio %s, busy %s\n", addr, in.Name, in.PowerPin, in.BusyPin)
				if in.Supply != "" {
					fmt.Fprintf(w, "  supply    SCPI on %s (TCPIP::%s::SOCKET)", in.Supply, strings.Replace(in.Supply, ":", "::", 1))
					if in.SupplySerial != "" {
						fmt.Fprintf(w, " and %s", in.SupplySerial)
					}
					fmt.Fprintln(w, "; its output powers the board")
				}
			}
			if writeBench != "" {
				fmt.Fprintf(w, "bench file: %s\n", writeBench)
			}
			<-c.Context().Done()
			fmt.Fprintln(w, "stopping: powering boards off")
			if err := s.Close(); err != nil && !errors.Is(err, context.Canceled) {
				return infraErr(err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file whose sim: boards to serve (default: the built-in simulated bench)")
	cmd.Flags().StringVar(&stateDir, "state-dir", "", "where boards keep flash and console links (default $TMPDIR/fudbench-sim)")
	cmd.Flags().StringVar(&control, "control", defaultControl, "control endpoint address (the built-in bench's power driver expects the default; 127.0.0.1:0 picks a free port)")
	cmd.Flags().StringVar(&writeBench, "write-bench", "", "write a bench file wiring the served boards, with their real addresses, to FILE")
	cmd.Flags().Float64Var(&timeScale, "time-scale", 1, "scale of flash and boot timings (0 = instant)")
	cmd.Flags().BoolVar(&off, "off", false, "leave boards unpowered")
	return cmd
}

// servedBenchTmpl wires boards served by this process for a bench in
// another one: power through the control endpoint, the probe through the
// GDB port, the console on its link, CoAP on the first address, the flash
// layout and timing as the boards run them.
var servedBenchTmpl = template.Must(template.New("served").Funcs(template.FuncMap{"join": strings.Join}).Parse(`# Written by fudbench sim: the boards it serves, with their addresses.
boards:
{{- range .}}
  - name: {{.Name}}
    tags: [{{join .Tags ", "}}]
    strategy: {{.Strategy}}
{{- if .Supply}}
    power: {driver: scpi, address: "{{.Supply}}", voltage: {{.Volts}}V}
{{- else}}
    power: {driver: sim, url: "http://{{.Control}}", board: {{.Name}}}
{{- end}}
{{- if .GDB}}
    probe: {driver: gdbrsp, address: "{{.GDB}}", reset: reset}
{{- end}}
    console:
      port: "{{.ConsoleLink}}"
      patterns: {boot: "^BL .*bootloader", app: "^APP .* ready$", recovery: "^RECOVERY ready"}
    coap: {{.Entry}}
    flash: {size: {{.FlashSize}}, base: {{printf "%#x" .Base}}, app_address: {{printf "%#x" .AppAddr}}, erase_from: {{printf "%#x" .EraseFrom}}, slot_size: {{.SlotSize}}, program_time: {{.ProgramTime}}, write_unit: {{.WriteUnit}}}
{{- end}}
`))

func writeServedBench(path string, s *sim.Sim, control string, tags map[string][]string) error {
	type entry struct {
		Name, Control, GDB, ConsoleLink, Entry, Strategy, Supply string
		Volts                                                    float64
		Tags                                                     []string
		FlashSize, SlotSize, WriteUnit                           int
		Base, AppAddr, EraseFrom                                 uint32
		ProgramTime                                              time.Duration
	}
	var es []entry
	for _, b := range s.Boards {
		in, cfg, lay := b.Info(), b.Config(), b.Layout()
		t := tags[b.Name()]
		if len(t) == 0 {
			t = []string{"sim", string(cfg.Strategy)}
		}
		es = append(es, entry{Name: in.Name, Strategy: string(cfg.Strategy), Control: control, GDB: in.GDB, ConsoleLink: in.ConsoleLink,
			Entry: simbench.CoAPEntry(cfg, in.CoAP[0], in.CoAPS, in.OSCORE), Tags: t, FlashSize: cfg.FlashSize, SlotSize: lay.AppSize(), WriteUnit: cfg.WriteAlign,
			Base: cfg.FlashBase, AppAddr: cfg.FlashBase + uint32(lay.AppStart), EraseFrom: cfg.FlashBase + uint32(lay.BootEnd),
			ProgramTime: time.Duration(float64(cfg.ProgramTime) * cfg.TimeScale), Supply: in.Supply, Volts: cfg.NominalVoltage})
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".bench-*.yaml")
	if err != nil {
		return fmt.Errorf("--write-bench: %w", err)
	}
	defer os.Remove(f.Name())
	if err := servedBenchTmpl.Execute(f, es); err != nil {
		f.Close()
		return fmt.Errorf("--write-bench: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--write-bench: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("--write-bench: %w", err)
	}
	return nil
}

// writeOSCOREContexts writes, for each board with an OSCORE endpoint, the
// client's side of its security context in libcoap's oscore_conf format
// (coap-oscore-conf(5)), so that any OSCORE client can talk to it:
// coap-client -E FILE,SEQFILE. It returns the files by board.
func writeOSCOREContexts(dir string, s *sim.Sim) (map[string]string, error) {
	out := map[string]string{}
	for _, b := range s.Boards {
		p := b.Config().OSCORE
		if p == nil {
			continue
		}
		client := *p
		client.SenderID, client.RecipientID = p.RecipientID, p.SenderID
		path := filepath.Join(dir, b.Name()+".oscore.conf")
		if err := os.WriteFile(path, client.MarshalConf(), 0o600); err != nil {
			return nil, fmt.Errorf("oscore context of %s: %w", b.Name(), err)
		}
		out[b.Name()] = path
	}
	return out, nil
}
