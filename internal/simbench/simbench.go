// Package simbench wires simulated boards running in this process into a
// bench, as `fudbench run` does for its built-in demo and as tests do for
// campaigns on simulated boards: the inventory (power through each board's
// gpioreg pin and the production gpio driver, or through its bench
// supply's SCPI port and the scpi driver, flashing through its GDB
// port, the console on its pty, its flash-busy line as the trigger input
// "busy", its flash timing) and each board's own record of its power cuts,
// which the bench compares with the cuts it planned.
//
// The boards are still reached only through those interfaces; this
// package is glue between a device and the bench, and production code
// paths (bench, jobs) never import it.
package simbench

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/sim"

	// The drivers the inventory names: it must parse and bind wherever it
	// is used.
	_ "github.com/fudbench/fudbench/inputs/gpio"
	_ "github.com/fudbench/fudbench/power/gpio"
	_ "github.com/fudbench/fudbench/power/scpi"
	_ "github.com/fudbench/fudbench/probes/gdbrsp"
)

// Board is a simulated board to start and the tags it carries on the
// bench.
type Board struct {
	sim.Config
	Tags []string // default: sim and the strategy
}

// Bench is a set of simulated boards running in this process and the
// bench that wires them.
type Bench struct {
	Sim       *sim.Sim
	Inventory *boards.Bench
	// Witnesses are the boards' own cut records, by board name.
	Witnesses map[string]power.CutWitness
}

// Close stops the boards.
func (b *Bench) Close() error { return b.Sim.Close() }

// Start starts the boards (each needs Pins set; it is set here), boots
// each once so its endpoints are bound, powers them off again, and
// returns them wired as a bench whose file name in messages is name.
func Start(ctx context.Context, name string, bs []Board, log *slog.Logger) (*Bench, error) {
	DevSecrets()
	cfgs := make([]sim.Config, len(bs))
	for i, b := range bs {
		cfgs[i] = b.Config
		cfgs[i].Pins = true
	}
	s, err := sim.Start(cfgs, true, log)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.WaitReady(wctx); err != nil {
		s.Close()
		return nil, err
	}
	for _, b := range s.Boards {
		b.SetPower(false)
	}
	tags := map[string][]string{}
	for _, b := range bs {
		tags[b.Name] = b.Tags
	}
	text, err := Inventory(s.Boards, tags)
	if err != nil {
		s.Close()
		return nil, err
	}
	inv, err := boards.Parse(name, text)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("simulated bench: %w", err)
	}
	w := map[string]power.CutWitness{}
	for _, b := range s.Boards {
		w[b.Name()] = Witness(b)
	}
	return &Bench{Sim: s, Inventory: inv, Witnesses: w}, nil
}

// Witness is a board's own record of its power cuts, as the bench reads
// it from a power switch that can tell.
func Witness(b *sim.Board) power.CutWitness { return witness{b} }

type witness struct{ b *sim.Board }

func (w witness) LastCut(context.Context) (power.CutRecord, bool, error) {
	rec, n := w.b.LastCut()
	if n == 0 {
		return power.CutRecord{}, false, nil
	}
	return power.CutRecord{Seq: n, At: rec.At, Writing: rec.Block, LastAcked: rec.LastAcked, Flash: string(rec.Flash.Kind)}, true, nil
}

// FlashStats are the board's flash counters (power.FlashMeter).
func (w witness) FlashStats(context.Context) (power.FlashStats, error) {
	st := w.b.FlashStats()
	return power.FlashStats{Ops: st.Ops, Programmed: st.Programmed, Erased: st.Erased, Erases: st.Erases}, nil
}

// UpdateCost is what the board's strategy needs for one image
// (power.FlashMeter).
func (w witness) UpdateCost(_ context.Context, imageSize, blockSize int) (power.UpdateCost, error) {
	c := w.b.UpdateCost(imageSize, blockSize)
	return power.UpdateCost{Strategy: string(c.Strategy), Space: c.Space, Cache: c.Cache}, nil
}

// ArmCut cuts the board's power at one of its own flash operations
// (power.CutArmer).
func (w witness) ArmCut(_ context.Context, afterOps uint64, notify func(time.Time)) (func(), error) {
	return w.b.ArmCut(afterOps, func(rec sim.CutRecord) { notify(rec.At) }), nil
}

var inventoryTmpl = template.Must(template.New("inventory").Parse(`boards:
{{- range .}}
  - name: {{.Name}}
    tags: [{{.Tags}}]
    strategy: {{.Strategy}}
{{- if .Supply}}
    power: {driver: scpi, address: "{{.Supply}}", voltage: {{.Volts}}V}
{{- else}}
    power: {driver: gpio, pin: "{{.PowerPin}}"}
{{- end}}
    probe: {driver: gdbrsp, address: "{{.GDB}}", reset: reset}
    console:
      port: "{{.ConsoleLink}}"
      patterns: {boot: "^BL .*bootloader", app: "^APP .* ready$", recovery: "^RECOVERY ready"}
    inputs:
      busy: {driver: gpio, pin: "{{.BusyPin}}"}
    coap: {{.CoAPEntry}}
    flash: {size: {{.FlashSize}}, base: {{.Base}}, app_address: {{.AppAddr}}, erase_from: {{.EraseFrom}}, slot_size: {{.SlotSize}}, program_time: {{.ProgramTime}}, write_unit: {{.WriteUnit}}}
{{- end}}
`))

type inventoryBoard struct {
	sim.Info
	Tags                     string
	FlashSize, SlotSize      int
	Base, AppAddr, EraseFrom string
	ProgramTime              string
	WriteUnit                int
	CoAPEntry                string
	Volts                    float64 // the supply's level, for a board with one
}

// entry is one board's inventory entry; cfg has its defaults filled in.
func entry(info sim.Info, cfg sim.Config, lay sim.Layout, tags []string) inventoryBoard {
	if len(tags) == 0 {
		tags = []string{"sim", string(cfg.Strategy)}
	}
	// The time the board takes to program one write unit, as its flash
	// model runs it: the bench refuses a during_block delay longer than a
	// block's write.
	pt := time.Duration(float64(cfg.ProgramTime) * cfg.TimeScale)
	return inventoryBoard{Info: info, Tags: strings.Join(tags, ", "),
		CoAPEntry: CoAPEntry(cfg, info.CoAP[0], info.CoAPS, info.OSCORE),
		FlashSize: cfg.FlashSize, SlotSize: lay.AppSize(),
		Base:        fmt.Sprintf("%#x", cfg.FlashBase),
		AppAddr:     fmt.Sprintf("%#x", cfg.FlashBase+uint32(lay.AppStart)),
		EraseFrom:   fmt.Sprintf("%#x", cfg.FlashBase+uint32(lay.BootEnd)),
		ProgramTime: pt.String(), WriteUnit: cfg.WriteAlign, Volts: cmp.Or(cfg.NominalVoltage, sim.DefaultNominalVoltage)}
}

// Inventory returns a bench file (YAML) that wires the given boards for a
// bench running in this process. Each board must have been booted once
// (its endpoints are bound at first boot) and have Config.Pins set. tags
// gives each board's tags (default: sim and its strategy).
func Inventory(bs []*sim.Board, tags map[string][]string) ([]byte, error) {
	var in []inventoryBoard
	for _, b := range bs {
		info := b.Info()
		if info.PowerPin == "" {
			return nil, fmt.Errorf("simbench: board %s: the inventory needs Config.Pins", b.Name())
		}
		if len(info.CoAP) == 0 || info.GDB == "" {
			return nil, fmt.Errorf("simbench: board %s: the inventory needs a booted board with CoAP and GDB ports", b.Name())
		}
		in = append(in, entry(info, b.Config(), b.Layout(), tags[b.Name()]))
	}
	return render(in)
}

// Plan returns the bench the boards will be once started, with their
// addresses still unknown (port 0): names, tags, wiring, flash layout and
// timing, for checking a job before anything is started or powered.
// Nothing is made: no pty, no port, no file.
func Plan(name string, bs []Board, dir string) (*boards.Bench, error) {
	DevSecrets()
	var in []inventoryBoard
	for _, b := range bs {
		lay, cfg, err := sim.LayoutOf(b.Config)
		if err != nil {
			return nil, err
		}
		pwr, busy := sim.PinNames(cfg.Name)
		info := sim.Info{Name: cfg.Name, Strategy: cfg.Strategy, CoAP: []string{"127.0.0.1:0"}, CoAPS: "127.0.0.1:0", OSCORE: "127.0.0.1:0", GDB: "127.0.0.1:0",
			ConsoleLink: filepath.Join(dir, cfg.Name+".console"), PowerPin: pwr, BusyPin: busy}
		if cfg.Supply {
			info.Supply = "127.0.0.1:0"
		}
		in = append(in, entry(info, cfg, lay, b.Tags))
	}
	text, err := render(in)
	if err != nil {
		return nil, err
	}
	return boards.Parse(name, text)
}

func render(in []inventoryBoard) ([]byte, error) {
	var buf bytes.Buffer
	if err := inventoryTmpl.Execute(&buf, in); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
