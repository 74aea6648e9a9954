package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/sim"
)

// builtinName is how the built-in simulated bench is named in messages.
const builtinName = "(built-in simulated bench)"

// builtinBoard is one board of the built-in simulated bench. One list
// defines them for `fudbench sim`, for the commands that talk to it, and
// for the boards `fudbench run` starts in its own process, so names and
// tags are the same everywhere.
type builtinBoard struct {
	Name        string
	Strategy    sim.Strategy
	Tags        []string
	Reenumerate bool
	// Ports of `fudbench sim`'s boards: CoAP, CoAP over DTLS, GDB, and
	// OSCORE for the boards that have it.
	CoAP, CoAPS, GDB, OSCORE int
	// Security: what the board caches of its security context, and the
	// bugs it has (docs/sim.md, docs/protocol.md).
	DTLSCache, SSNPersist string
	// Supply is the port of the board's SCPI bench supply, which powers
	// it (0: none; power through the control endpoint or its pin).
	Supply int
}

var builtinBoards = []builtinBoard{
	{Name: "sim-safe", Strategy: sim.InplaceRecovery, Tags: []string{"sim", "safe", "inplace-recovery"}, CoAP: 5683, CoAPS: 5684, GDB: 3333},
	{Name: "sim-naive", Strategy: sim.NaiveInplace, Tags: []string{"sim", "naive", "naive-inplace"}, Reenumerate: true, CoAP: 5693, CoAPS: 5694, GDB: 3334},
	// The seed's case: OSCORE with everything cached, and the classic bug.
	{Name: "sim-oscore", Strategy: sim.InplaceRecovery, Tags: []string{"sim", "safe", "inplace-recovery", "oscore"}, CoAP: 5703, CoAPS: 5704, OSCORE: 5705, GDB: 3335},
	{Name: "sim-oscore-nossn", Strategy: sim.InplaceRecovery, Tags: []string{"sim", "oscore", "ssn-persist-none"}, CoAP: 5713, CoAPS: 5714, OSCORE: 5715, GDB: 3336, SSNPersist: sim.SSNNone},
	// DTLS with the record layer restored after a cut: no handshake.
	{Name: "sim-dtls", Strategy: sim.InplaceRecovery, Tags: []string{"sim", "safe", "inplace-recovery", "dtls", "dtls-state"}, CoAP: 5723, CoAPS: 5724, GDB: 3337, DTLSCache: sim.DTLSCacheState},
	// The double-buffered family, for comparing strategies
	// (examples/compare-strategies.yaml, docs/strategies.md).
	{Name: "sim-ab-overwrite", Strategy: sim.ABOverwrite, Tags: []string{"sim", "ab", "ab-overwrite"}, CoAP: 5733, CoAPS: 5734, GDB: 3338},
	{Name: "sim-ab-swap", Strategy: sim.ABSwap, Tags: []string{"sim", "ab", "ab-swap"}, CoAP: 5743, CoAPS: 5744, GDB: 3339},
	{Name: "sim-ab-direct", Strategy: sim.ABDirect, Tags: []string{"sim", "ab", "ab-direct"}, CoAP: 5753, CoAPS: 5754, GDB: 3340},
	// Powered by a bench supply that measures and sets its voltage:
	// energy per update, and brownouts (examples/brownout-sweep.yaml).
	{Name: "sim-safe-psu", Strategy: sim.InplaceRecovery, Tags: []string{"sim", "psu", "inplace-recovery"}, CoAP: 5763, CoAPS: 5764, GDB: 3341, Supply: 5025},
	{Name: "sim-naive-psu", Strategy: sim.NaiveInplace, Tags: []string{"sim", "psu", "naive-inplace"}, CoAP: 5773, CoAPS: 5774, GDB: 3342, Supply: 5026},
}

// Flash is the board's flash: entry in the built-in bench, from its
// strategy's layout at the sim's default flash.
func (b builtinBoard) Flash() string {
	lay, cfg, err := sim.LayoutOf(b.config())
	if err != nil {
		panic("built-in board " + b.Name + ": " + err.Error()) // a fixed list: a mistake here is the program's
	}
	return fmt.Sprintf("{size: %dKiB, base: %#x, app_address: %#x, erase_from: %#x, slot_size: %d, program_time: 41us, write_unit: %d}",
		cfg.FlashSize>>10, cfg.FlashBase, cfg.FlashBase+uint32(lay.AppStart), cfg.FlashBase+uint32(lay.BootEnd), lay.AppSize(), cfg.WriteAlign)
}

// config is the board's sim configuration, without addresses.
func (b builtinBoard) config() sim.Config {
	c := sim.Config{Name: b.Name, Strategy: b.Strategy, Reenumerate: b.Reenumerate, DTLSCache: b.DTLSCache, SSNPersist: b.SSNPersist, Supply: b.Supply != 0}
	if b.OSCORE != 0 {
		p := sim.DevOSCORE()
		c.OSCORE = &p
	}
	return c
}

// Entry is the board's coap: entry in the built-in bench as `fudbench
// sim` serves it.
func (b builtinBoard) Entry() string {
	osc := ""
	if b.OSCORE != 0 {
		osc = fmt.Sprintf("127.0.0.1:%d", b.OSCORE)
	}
	return simbench.CoAPEntry(b.config(), fmt.Sprintf("127.0.0.1:%d", b.CoAP), fmt.Sprintf("127.0.0.1:%d", b.CoAPS), osc)
}

// simBenchTmpl is the built-in simulated bench as `fudbench sim` serves it:
// fixed loopback ports, power through its control endpoint. The same text
// configures the sim and the commands that talk to it, so the two cannot
// disagree. The flash timing is the sim's at its default time scale (1).
var simBenchTmpl = template.Must(template.New("sim").Funcs(template.FuncMap{"join": strings.Join}).Parse(`boards:
{{- range .Boards}}
  - name: {{.Name}}
    tags: [{{join .Tags ", "}}]
    strategy: {{.Strategy}}
{{- if .Supply}}
    power: {driver: scpi, address: "127.0.0.1:{{.Supply}}", voltage: 3.3V}
{{- else}}
    power: {driver: sim, url: "http://{{$.Control}}", board: {{.Name}}}
{{- end}}
    probe: {driver: gdbrsp, address: "127.0.0.1:{{.GDB}}", reset: reset}
    console:
      port: {{$.Dir}}/{{.Name}}.console
      patterns: {boot: "^BL .*bootloader", app: "^APP .* ready$", recovery: "^RECOVERY ready"}
    coap: {{.Entry}}
    flash: {{.Flash}}
    sim:
      strategy: {{.Strategy}}
      coap: ["127.0.0.1:{{.CoAP}}", "[::1]:{{.CoAP}}"]
      coaps: "127.0.0.1:{{.CoAPS}}"
      gdb: "127.0.0.1:{{.GDB}}"
{{- if .OSCORE}}
      oscore: "127.0.0.1:{{.OSCORE}}"
{{- end}}
{{- if .DTLSCache}}
      dtls_cache: {{.DTLSCache}}
{{- end}}
{{- if .SSNPersist}}
      ssn_persist: {{.SSNPersist}}
{{- end}}
{{- if .Reenumerate}}
      reenumerate: true
{{- end}}
{{- if .Supply}}
      supply: {tcp: "127.0.0.1:{{.Supply}}"}
{{- end}}
{{- end}}
`))

const defaultControl = "127.0.0.1:7890"

func defaultStateDir() string { return filepath.Join(os.TempDir(), "fudbench-sim") }

// loadBench reads a bench file, or the built-in simulated bench as
// `fudbench sim` serves it.
func loadBench(file string) (*boards.Bench, error) {
	if file != "" {
		b, err := boards.Load(file)
		if err != nil {
			return nil, usageErr(err)
		}
		return b, nil
	}
	var buf bytes.Buffer
	if err := simBenchTmpl.Execute(&buf, map[string]any{"Control": defaultControl, "Dir": defaultStateDir(), "Boards": builtinBoards}); err != nil {
		return nil, err
	}
	b, err := boards.Parse(builtinName, buf.Bytes())
	if err != nil {
		return nil, fmt.Errorf("built-in bench: %w", err)
	}
	return b, nil
}

// inProcessBoards are the built-in boards as `fudbench run` starts them in
// its own process, at timeScale, keeping their state in dir.
func inProcessBoards(timeScale float64, dir string) []simbench.Board {
	var out []simbench.Board
	for _, b := range builtinBoards {
		cfg := b.config()
		cfg.TimeScale, cfg.StateDir = timeScale, dir
		if cfg.DTLSCache == "" {
			cfg.DTLSAddr = "-" // the bench talks plain CoAP to it
		}
		out = append(out, simbench.Board{Tags: b.Tags, Config: cfg})
	}
	return out
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
		return nil, nil, classify(err)
	}
	return b, bd, nil
}

// classify gives an error its exit code: a configuration error is a
// usage error (2), anything else the bench's (3).
func classify(err error) error {
	var ee *exitError
	switch {
	case err == nil, errors.As(err, &ee):
		return err
	case errors.Is(err, config.ErrConfig):
		return usageErr(err)
	}
	return infraErr(err)
}
