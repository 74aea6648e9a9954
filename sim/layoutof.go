package sim

import (
	"fmt"

	"github.com/fudbench/fudbench/sim/flash"
)

// LayoutOf computes the flash layout a board with cfg will have, without
// making the board (no pty, no port, no file): for describing a bench
// before its boards are started.
func LayoutOf(cfg Config) (Layout, Config, error) {
	if err := cfg.defaults(); err != nil {
		return Layout{}, cfg, err
	}
	var sectors []int
	switch cfg.Layout {
	case "", "uniform":
		if cfg.FlashSize%cfg.SectorSize != 0 {
			return Layout{}, cfg, fmt.Errorf("sim: board %s: flash size %d is not a multiple of sector size %d", cfg.Name, cfg.FlashSize, cfg.SectorSize)
		}
		sectors = flash.Uniform(cfg.FlashSize, cfg.SectorSize)
	case "stm32f4":
		sectors = flash.STM32F4Like(cfg.FlashSize)
	default:
		return Layout{}, cfg, fmt.Errorf("sim: board %s: unknown flash layout %q (want uniform or stm32f4)", cfg.Name, cfg.Layout)
	}
	f, err := flash.New(flash.Config{Sectors: sectors, WriteAlign: cfg.WriteAlign, Erased: 0xFF})
	if err != nil {
		return Layout{}, cfg, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
	}
	defer f.Close()
	lay, err := computeLayout(f, cfg.Strategy)
	if err != nil {
		return Layout{}, cfg, fmt.Errorf("sim: board %s: %w", cfg.Name, err)
	}
	return lay, cfg, nil
}
