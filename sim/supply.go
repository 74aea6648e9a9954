package sim

// The bench supply of a board with Config.Supply: a SCPI power-supply
// emulator (sim/supply) whose output is the board's power input and whose
// voltage setting is the board's supply level. The power pin and the
// control endpoint drive the same input: whichever switched it last wins,
// and the supply's OUTP? reads it back.

import (
	"fmt"

	"github.com/fudbench/fudbench/sim/supply"
)

// benchSupply is the emulator serving a board.
type benchSupply = supply.Supply

var _ supply.Load = (*Board)(nil)

func (b *Board) startSupply() error {
	s, err := supply.New(b, supply.Options{
		Name:    b.cfg.Name,
		TCP:     b.cfg.SupplyAddr,
		Serial:  b.cfg.SupplySerial,
		Nominal: b.cfg.NominalVoltage,
		Logger:  b.log,
	})
	if err != nil {
		return fmt.Errorf("sim: board %s: bench supply: %w", b.cfg.Name, err)
	}
	b.bench = s
	return nil
}

func (b *Board) stopSupply() error {
	if b.bench == nil {
		return nil
	}
	return b.bench.Close()
}

// Supply returns the board's bench supply emulator (nil unless
// Config.Supply).
func (b *Board) Supply() *supply.Supply { return b.bench }

// SupplyAddr is the bench supply's SCPI TCP address, host:port ("" with
// none).
func (b *Board) SupplyAddr() string {
	if b.bench == nil {
		return ""
	}
	return b.bench.Addr()
}

// SupplySerial is the path of the bench supply's serial port, a
// pseudo-terminal ("" with none).
func (b *Board) SupplySerial() string {
	if b.bench == nil {
		return ""
	}
	return b.bench.SerialPath()
}
