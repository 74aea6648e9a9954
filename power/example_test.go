package power_test

import (
	"context"
	"fmt"
	"time"

	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/power/powertest"
)

// A driver registers itself in init, under the name the inventory uses.
func init() {
	power.Register("relay-example", openRelay)
}

// openRelay decodes the driver's settings strictly and makes its Switch;
// a fake stands in for the hardware here.
func openRelay(s power.Settings) (power.Switch, error) {
	var cfg struct {
		Channel int `json:"channel" yaml:"channel"`
	}
	if err := s.Decode(&cfg); err != nil {
		return nil, err
	}
	return &powertest.Switch{Name: fmt.Sprintf("relay%d", cfg.Channel)}, nil
}

// The bench opens a driver by name with the settings from its inventory
// and then depends only on power.Switch.
func Example() {
	sw, err := power.Open("relay-example", power.MapSettings{"channel": 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	if err := power.Cycle(ctx, sw, 10*time.Millisecond); err != nil {
		fmt.Println(err)
	}
	if err := power.Safe(ctx, sw); err != nil {
		fmt.Println(err)
	}
	fmt.Println(sw, sw.(*powertest.Switch).Ops())

	_, err = power.Open("relay-example", power.MapSettings{"chanel": 1})
	fmt.Println(err)
	// Output:
	// fake:relay1 [off on off]
	// power: open relay-example: power: settings: unknown key "chanel" (known: channel)
}
