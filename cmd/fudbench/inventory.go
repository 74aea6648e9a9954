package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"text/template"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
)

// builtinName is how the built-in simulated bench is named in messages.
const builtinName = "(built-in simulated bench)"

// simBenchTmpl is the built-in simulated bench: the boards `fudbench sim`
// serves by default, on fixed loopback ports, with power through its
// control endpoint. The same text configures the sim and the commands
// that talk to it, so the two cannot disagree.
var simBenchTmpl = template.Must(template.New("sim").Parse(`boards:
  - name: sim-safe
    tags: [sim, safe]
    power: {driver: sim, url: "http://{{.Control}}", board: sim-safe}
    probe: {driver: gdbrsp, address: "127.0.0.1:3333", reset: reset}
    console:
      port: {{.Dir}}/sim-safe.console
      patterns: {boot: "^BL .*bootloader", app: "^APP .* ready$", recovery: "^RECOVERY ready"}
    coap: {address: "127.0.0.1:5683", profile: resumable}
    flash: {size: 512KiB, base: 0x0, app_address: 0x8000, erase_from: 0x4000, slot_size: 480KiB}
    sim:
      strategy: inplace-recovery
      coap: ["127.0.0.1:5683", "[::1]:5683"]
      coaps: "127.0.0.1:5684"
      gdb: "127.0.0.1:3333"
  - name: sim-naive
    tags: [sim, naive]
    power: {driver: sim, url: "http://{{.Control}}", board: sim-naive}
    probe: {driver: gdbrsp, address: "127.0.0.1:3334", reset: reset}
    console:
      port: {{.Dir}}/sim-naive.console
      patterns: {boot: "^BL .*bootloader", app: "^APP .* ready$", recovery: "^RECOVERY ready"}
    coap: {address: "127.0.0.1:5693", profile: block1}
    flash: {size: 512KiB, base: 0x0, app_address: 0x8000, erase_from: 0x4000, slot_size: 480KiB}
    sim:
      strategy: naive-inplace
      coap: ["127.0.0.1:5693", "[::1]:5693"]
      coaps: "127.0.0.1:5694"
      gdb: "127.0.0.1:3334"
      reenumerate: true
`))

const defaultControl = "127.0.0.1:7890"

func defaultStateDir() string { return filepath.Join(os.TempDir(), "fudbench-sim") }

// loadBench reads a bench file, or the built-in simulated bench.
func loadBench(file string) (*boards.Bench, error) {
	if file != "" {
		b, err := boards.Load(file)
		if err != nil {
			return nil, usageErr(err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if err := simBenchTmpl.Execute(&buf, map[string]string{"Control": defaultControl, "Dir": defaultStateDir()}); err != nil {
		return nil, err
	}
	b, err := boards.Parse(builtinName, buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("built-in bench: %w", err)
	}
	return b, nil
}

// bindBoard loads the bench and binds one board.
func bindBoard(ctx context.Context, benchFile, name string, hub *bench.Hub, opt bench.BindOptions) (*bench.Board, *boards.Board, error) {
	inv, err := loadBench(benchFile)
	if err != nil {
		return nil, nil, err
	}
	bd, err := inv.Board(name)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	b, err := bench.Bind(ctx, bd, hub, opt)
	if err != nil {
		if errors.Is(err, boards.ErrConfig) {
			return nil, nil, usageErr(err)
		}
		return nil, nil, infraErr(err)
	}
	return b, bd, nil
}
