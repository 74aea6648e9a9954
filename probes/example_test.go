package probes_test

import (
	"context"
	"fmt"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/probetest"
)

// A driver registers itself in init, under the name the inventory uses.
func init() {
	probes.Register("loader-example", func(s probes.Settings) (probes.Flasher, error) {
		var cfg struct {
			Base uint32 `json:"base" yaml:"base"`
		}
		if err := s.Decode(&cfg); err != nil {
			return nil, err
		}
		// A fake stands in for the hardware here.
		return &probetest.Flasher{Name: "loader", Base: cfg.Base}, nil
	})
}

// The bench opens a driver by name with the settings from its inventory,
// flashes with progress, uses optional abilities when the probe has them,
// and resets.
func Example() {
	f, err := probes.Open("loader-example", probes.MapSettings{"base": 0x08000000})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	ctx := context.Background()
	img := make([]byte, 2500)
	err = f.Flash(ctx, 0x08000000, img, func(done, total int) {
		fmt.Printf("%s: %d/%d\n", f, done, total)
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if r, ok := f.(probes.Reader); ok {
		head := make([]byte, 4)
		if err := r.Read(ctx, 0x08000000, head); err == nil {
			fmt.Printf("read back % x\n", head)
		}
	}
	if err := f.Reset(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// fake:loader: 1024/2500
	// fake:loader: 2048/2500
	// fake:loader: 2500/2500
	// read back 00 00 00 00
}
