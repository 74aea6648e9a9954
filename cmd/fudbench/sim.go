package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/sim"
)

// simConfigs turns a bench file's sim sections into board configs; with
// no file, the built-in simulated bench.
func simConfigs(benchFile string) ([]sim.Config, error) {
	b, err := loadBench(benchFile)
	if err != nil {
		return nil, err
	}
	if benchFile == "" {
		benchFile = builtinName
	}
	var out []sim.Config
	for _, bd := range b.Boards {
		s := bd.Sim
		if s == nil {
			continue
		}
		c := sim.Config{
			Name: bd.Name, Strategy: sim.Strategy(s.Strategy),
			FlashSize: int(s.Flash.Size), SectorSize: int(s.Flash.Sector), Layout: s.Flash.Layout,
			WriteAlign: s.Flash.WriteAlign, FlashBase: uint32(s.Flash.Base),
			ProgramTime: time.Duration(s.Flash.ProgramTime), EraseTime: time.Duration(s.Flash.EraseTime),
			BootDelay: time.Duration(s.BootDelay), UDPAddrs: s.CoAP, DTLSAddr: s.CoAPS,
			PSKIdentity: s.PSKIdentity, GDBAddr: s.GDB, ConsoleLink: s.ConsoleLink, Reenumerate: s.Reenumerate,
		}
		if s.Flash.Erased != nil && *s.Flash.Erased == 0 {
			c.ErasedZero = true
		}
		if s.TimeScale != nil {
			c.TimeScale = *s.TimeScale
		}
		if s.PSKFile != "" {
			if c.PSK, err = boards.ReadPSK(s.PSKFile); err != nil {
				return nil, usageErr(fmt.Errorf("%s: board %s: %w", benchFile, bd.Name, err))
			}
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, usageErr(fmt.Errorf("%s: no board has a sim: section", benchFile))
	}
	return out, nil
}

func newSimCmd(g *globals) *cobra.Command {
	var (
		benchFile string
		stateDir  string
		control   string
		timeScale float64
		off       bool
	)
	cmd := &cobra.Command{
		Use:   "sim [--bench FILE]",
		Short: "Serve simulated boards in the foreground",
		Long: `Serve simulated boards until Ctrl-C, printing for each its CoAP
addresses, console pty, GDB port and power control. With no --bench, two
boards: sim-safe (inplace-recovery) and sim-naive (naive-inplace, whose
console re-enumerates behind a stable link on every power-on).

Power inputs are reachable through the control endpoint (--control):
  curl -X PUT --data off http://ADDR/boards/sim-safe/power
Ctrl-C powers every board off and exits 0.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			cfgs, err := simConfigs(benchFile)
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
				fmt.Fprintf(w, "  console   %s -> %s\n", in.ConsoleLink, in.Console)
				fmt.Fprintf(w, "  gdb       %s\n", in.GDB)
				fmt.Fprintf(w, "  power     PUT http://%s/boards/%s/power (on|off); gpio %s, busy %s\n", addr, in.Name, in.PowerPin, in.BusyPin)
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
	cmd.Flags().StringVar(&control, "control", defaultControl, "control endpoint address (the built-in bench's power driver expects the default)")
	cmd.Flags().Float64Var(&timeScale, "time-scale", 1, "scale of flash and boot timings (0 = instant)")
	cmd.Flags().BoolVar(&off, "off", false, "leave boards unpowered")
	return cmd
}
