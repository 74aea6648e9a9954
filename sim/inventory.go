package sim

import (
	"bytes"
	"fmt"
	"text/template"
)

// inventoryTmpl wires boards started in the bench's own process: power
// through their gpioreg pins with the production gpio driver, flashing
// through their GDB ports, consoles on their ptys.
var inventoryTmpl = template.Must(template.New("inventory").Parse(`boards:
{{- range .}}
  - name: {{.Name}}
    tags: [sim, {{.Strategy}}]
    power: {driver: gpio, pin: "{{.PowerPin}}"}
    probe: {driver: gdbrsp, address: "{{.GDB}}", reset: reset}
    console:
      port: "{{.ConsoleLink}}"
      patterns: {boot: "^BL .*bootloader", app: "^APP .* ready$", recovery: "^RECOVERY ready"}
    coap: {address: "{{index .CoAP 0}}", profile: {{if eq .Strategy "naive-inplace"}}block1{{else}}resumable{{end}}}
    flash: {size: {{.FlashSize}}, base: {{.Base}}, app_address: {{.AppAddr}}, erase_from: {{.EraseFrom}}, slot_size: {{.SlotSize}}}
{{- end}}
`))

type inventoryBoard struct {
	Info
	FlashSize, SlotSize      int
	Base, AppAddr, EraseFrom string
}

// Inventory returns a bench file (YAML) that wires the given boards for a
// bench running in this process. Each board must have been booted once
// (its endpoints are bound at first boot) and have Config.Pins set.
func Inventory(bs []*Board) ([]byte, error) {
	var in []inventoryBoard
	for _, b := range bs {
		if b.powerPin == nil {
			return nil, fmt.Errorf("sim: board %s: inventory needs Config.Pins", b.Name())
		}
		info := b.Info()
		if len(info.CoAP) == 0 || info.GDB == "" {
			return nil, fmt.Errorf("sim: board %s: inventory needs a booted board with CoAP and GDB ports", b.Name())
		}
		lay, cfg := b.Layout(), b.Config()
		in = append(in, inventoryBoard{Info: info, FlashSize: b.fl.Size(), SlotSize: lay.AppSize(),
			Base:      fmt.Sprintf("%#x", cfg.FlashBase),
			AppAddr:   fmt.Sprintf("%#x", cfg.FlashBase+uint32(lay.AppStart)),
			EraseFrom: fmt.Sprintf("%#x", cfg.FlashBase+uint32(lay.BootEnd))})
	}
	var buf bytes.Buffer
	if err := inventoryTmpl.Execute(&buf, in); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
