package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/results"
)

type flashFlags struct {
	benchFile, address, imageKey string
	noReset, erase, jsonOut      bool
	skipImageCheck               bool
}

func newFlashCmd(g *globals) *cobra.Command {
	var f flashFlags
	cmd := &cobra.Command{
		Use:   "flash BOARD IMAGE",
		Short: "Write an image to a board over its probe, verify it and reset the board",
		Long: `Write an image over the board's probe (its probe: entry in the bench file),
verify it by read-back or CRC where the probe offers it, and reset the board.
The image goes to --address, or the board's flash.app_address. With --erase,
the range from flash.erase_from to the end of flash is erased first (records,
journals and counters as well as the app slot). A board with a power switch
that reads back "off" is powered on first.

An image in fudbench's signed format is verified before anything is
written (--image-key, or the development key); other images are written as
they are.`,
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error { return runFlash(c, g, &f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	fl.StringVar(&f.address, "address", "", "flash address (default: the board's flash.app_address)")
	fl.BoolVar(&f.noReset, "no-reset", false, "do not reset the board after writing")
	fl.BoolVar(&f.erase, "erase", false, "erase from flash.erase_from to the end of flash first")
	fl.StringVar(&f.imageKey, "image-key", "", "public key (PEM) that signs the image; default: the development key")
	fl.BoolVar(&f.skipImageCheck, "skip-image-check", false, "write an image that does not verify")
	fl.BoolVar(&f.jsonOut, "json", false, "print the result as JSON on stdout")
	return cmd
}

func runFlash(c *cobra.Command, g *globals, f *flashFlags, args []string) error {
	ctx := c.Context()
	inv, err := loadBench(f.benchFile)
	if err != nil {
		return err
	}
	var addr uint64
	if f.address != "" {
		if addr, err = strconv.ParseUint(f.address, 0, 32); err != nil {
			return usageErr(fmt.Errorf("--address %q: %w", f.address, err))
		}
	}
	job := &jobs.Job{Name: "flash", Boards: []string{args[0]}, Image: jobs.ImageSpec{File: args[1]}, BlockSize: jobs.DefaultBlockSize, Repeat: 1}
	popt := jobs.PrepareOptions{Use: jobs.UseFlash, SkipImageCheck: f.skipImageCheck, Log: g.log}
	if f.imageKey != "" {
		pub, err := fwimage.LoadPublicKey(f.imageKey)
		if err != nil {
			return usageErr(fmt.Errorf("--image-key: %w", err))
		}
		popt.ImageKey, popt.KeyGiven = ed25519.PublicKey(pub), true
	}
	if addr != 0 {
		// The address is given: a bench entry without flash.app_address
		// will do.
		if bd, err := inv.Board(args[0]); err == nil && (bd.Flash == nil || bd.Flash.AppAddr == 0) {
			popt.Use = jobs.UseFlashAt
		}
	}
	prep, err := jobs.Prepare(ctx, job, inv, popt)
	if err != nil {
		return classify(err)
	}
	bd := prep.Boards[0]
	if addr == 0 {
		addr = uint64(bd.Flash.AppAddr)
	}
	img := prep.Update
	hub := bench.NewHub(results.NewClock(), nil)
	b, err := bench.Bind(ctx, bd, hub, bench.BindOptions{Probe: true, Log: g.log})
	if err != nil {
		return classify(err)
	}
	defer b.Close()
	// A probe needs a powered target: a switch that reads back off is
	// switched on first.
	if b.Power != nil {
		on, known, err := b.PowerState(ctx, 5*time.Second)
		if err != nil {
			return infraErr(err)
		}
		if known && !on {
			if err := b.PowerOn(ctx); err != nil {
				return infraErr(err)
			}
			time.Sleep(100 * time.Millisecond) // let the target come up
		}
	}
	w := c.ErrOrStderr()
	tty := isTerminal(os.Stderr) && !f.jsonOut
	last := -1
	progress := func(done, total int) {
		if f.jsonOut {
			return
		}
		pct := done * 100 / max(total, 1)
		if tty {
			fmt.Fprintf(w, "\r[%-25s] %3d%% %d/%d bytes", strings.Repeat("#", pct/4), pct, done, total)
		} else if pct/25 != last {
			last = pct / 25
			fmt.Fprintf(w, "%3d%% %d/%d bytes\n", pct, done, total)
		}
	}
	start := time.Now()
	if f.erase {
		er, ok := b.Probe.(probes.Eraser)
		if !ok || bd.Flash == nil || bd.Flash.EraseFrom == 0 {
			return usageErr(bd.Errorf("--erase needs a probe that erases and flash.erase_from"))
		}
		end := bd.Flash.Base + uint32(bd.Flash.Size)
		if err := er.Erase(ctx, bd.Flash.EraseFrom, end-bd.Flash.EraseFrom); err != nil {
			return infraErr(fmt.Errorf("board %s: %w", bd.Name, err))
		}
	}
	if err := b.Probe.Flash(ctx, uint32(addr), img, progress); err != nil {
		if tty {
			fmt.Fprintln(w)
		}
		return infraErr(fmt.Errorf("board %s: %w", bd.Name, err))
	}
	if tty {
		fmt.Fprintln(w)
	}
	if !f.noReset {
		if err := b.Probe.Reset(ctx); err != nil {
			return infraErr(fmt.Errorf("board %s: reset: %w", bd.Name, err))
		}
	}
	took := time.Since(start)
	if f.jsonOut {
		enc := json.NewEncoder(c.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"board": bd.Name, "bytes": len(img), "address": fmt.Sprintf("%#08x", addr),
			"probe": b.Probe.String(), "verified": true, "erased": f.erase, "reset": !f.noReset, "ms": ms(took)})
	}
	fmt.Fprintf(c.OutOrStdout(), "%s: %d bytes at %#08x over %s, verified, in %v\n", bd.Name, len(img), addr, b.Probe, took.Round(time.Millisecond))
	return nil
}
