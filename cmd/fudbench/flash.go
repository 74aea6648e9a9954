package main

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
)

func newFlashCmd(g *globals) *cobra.Command {
	var (
		benchFile, address string
		noReset, erase     bool
	)
	cmd := &cobra.Command{
		Use:   "flash BOARD IMAGE",
		Short: "Write an image to a board over its probe, verify it and reset the board",
		Long: `Write an image over the board's probe (its probe: entry in the bench file),
verify it by read-back or CRC where the probe offers it, and reset the board.
The image goes to --address, or the board's flash.app_address. With --erase,
the range from flash.erase_from to the end of flash is erased first (records,
journals and counters as well as the app slot). A board with a power switch
that reads back "off" is powered on first.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			inv, err := loadBench(benchFile)
			if err != nil {
				return err
			}
			bd, err := inv.Board(args[0])
			if err != nil {
				return usageErr(err)
			}
			if bd.Probe == nil {
				return usageErr(fmt.Errorf("board %s has no probe", bd.Name))
			}
			if !slices.Contains(probes.Drivers(), bd.Probe.Driver) {
				return usageErr(fmt.Errorf("board %s: probe driver %q is not built into this fudbench (have: %s)", bd.Name, bd.Probe.Driver, strings.Join(probes.Drivers(), ", ")))
			}
			var addr uint64
			switch {
			case address != "":
				if addr, err = strconv.ParseUint(address, 0, 32); err != nil {
					return usageErr(fmt.Errorf("--address %q: %w", address, err))
				}
			case bd.Flash != nil && bd.Flash.AppAddr != 0:
				addr = uint64(bd.Flash.AppAddr)
			default:
				return usageErr(fmt.Errorf("board %s: give --address or set flash.app_address in the bench file", bd.Name))
			}
			img, err := os.ReadFile(args[1])
			if err != nil {
				return usageErr(fmt.Errorf("read image: %w", err))
			}
			if bd.Flash != nil && bd.Flash.SlotSize > 0 && len(img) > int(bd.Flash.SlotSize) {
				return usageErr(fmt.Errorf("%s: image of %d bytes does not fit board %s's %d-byte slot", args[1], len(img), bd.Name, int(bd.Flash.SlotSize)))
			}
			p, err := probes.Open(bd.Probe.Driver, bd.Probe)
			if err != nil {
				if errors.Is(err, boards.ErrConfig) {
					return usageErr(err)
				}
				return usageErr(fmt.Errorf("board %s: probe: %w", bd.Name, err))
			}
			defer p.Close()
			if err := powerForProbe(c, bd); err != nil {
				return err
			}
			w := c.ErrOrStderr()
			tty := isTerminal(os.Stderr)
			last := -1
			progress := func(done, total int) {
				pct := done * 100 / max(total, 1)
				if tty {
					fmt.Fprintf(w, "\r[%-25s] %3d%% %d/%d bytes", strings.Repeat("#", pct/4), pct, done, total)
				} else if pct/25 != last {
					last = pct / 25
					fmt.Fprintf(w, "%3d%% %d/%d bytes\n", pct, done, total)
				}
			}
			start := time.Now()
			if erase {
				er, ok := p.(probes.Eraser)
				if !ok || bd.Flash == nil || bd.Flash.EraseFrom == 0 {
					return usageErr(fmt.Errorf("board %s: --erase needs a probe that erases and flash.erase_from", bd.Name))
				}
				end := uint32(bd.Flash.Base) + uint32(bd.Flash.Size)
				if err := er.Erase(ctx, uint32(bd.Flash.EraseFrom), end-uint32(bd.Flash.EraseFrom)); err != nil {
					return infraErr(fmt.Errorf("board %s: %w", bd.Name, err))
				}
			}
			if err := p.Flash(ctx, uint32(addr), img, progress); err != nil {
				if tty {
					fmt.Fprintln(w)
				}
				return infraErr(fmt.Errorf("board %s: %w", bd.Name, err))
			}
			if tty {
				fmt.Fprintln(w)
			}
			if !noReset {
				if err := p.Reset(ctx); err != nil {
					return infraErr(fmt.Errorf("board %s: reset: %w", bd.Name, err))
				}
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: %d bytes at %#08x over %s, verified, in %v\n", bd.Name, len(img), addr, p, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().StringVar(&benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	cmd.Flags().StringVar(&address, "address", "", "flash address (default: the board's flash.app_address)")
	cmd.Flags().BoolVar(&noReset, "no-reset", false, "do not reset the board after writing")
	cmd.Flags().BoolVar(&erase, "erase", false, "erase from flash.erase_from to the end of flash first")
	return cmd
}

// powerForProbe switches a board on before probing it when its switch
// reads back off: a probe needs a powered target.
func powerForProbe(c *cobra.Command, bd *boards.Board) error {
	if bd.Power == nil {
		return nil
	}
	hub := bench.NewHub(results.NewClock(), nil)
	b, err := bench.Bind(c.Context(), bd, hub, bench.BindOptions{})
	if err != nil {
		return usageErr(err)
	}
	sr, ok := b.Power.(power.StateReader)
	if !ok {
		return nil
	}
	on, err := sr.State(c.Context())
	if err != nil || on {
		return nil
	}
	if err := b.PowerOn(c.Context()); err != nil {
		return infraErr(err)
	}
	time.Sleep(100 * time.Millisecond) // let the target come up
	return nil
}
