// Package gpio is the trigger-input driver "gpio": a board's signal wired
// to a GPIO line of the bench host, through periph.io. Importing it
// registers the driver.
//
// Settings (an entry of the board's inputs section in the inventory):
//
//	pin: GPIO27            # a name periph.io registered (gpioreg), or CHIP:LINE
//	chip: gpiochip0        # a character-device chip (name, label or path)
//	line: 27               #   and line offset, for lines the kernel left unnamed
//	pull: down             # none (default), up or down
package gpio

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"

	"github.com/fudbench/fudbench/inputs"
	"github.com/fudbench/fudbench/internal/gpiopin"
)

// Driver is the name the driver registers under.
const Driver = "gpio"

func init() {
	inputs.Register(Driver, open)
}

var (
	_ inputs.Input  = (*Input)(nil)
	_ inputs.Halter = (*Input)(nil)
)

// poll bounds each wait for an edge, so that Wait notices its context
// ending: periph's WaitForEdge takes a timeout, not a context.
const poll = 20 * time.Millisecond

// Input watches one GPIO line.
type Input struct {
	pin  gpio.PinIn
	pull gpio.Pull
}

// New returns an Input on p. It does not touch the pin.
func New(p gpio.PinIn, pull gpio.Pull) *Input {
	return &Input{pin: p, pull: pull}
}

// String names the input after its pin, e.g. "gpio:SIM-SAFE-BUSY".
func (in *Input) String() string { return Driver + ":" + in.pin.Name() }

// Arm configures the line as an input reporting edge. Reconfiguring the
// line drops the edges pending from before (periph's line drivers request
// the line afresh), so Wait reports only edges after Arm.
func (in *Input) Arm(ctx context.Context, edge inputs.Edge) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: arm: %w", in, err)
	}
	var e gpio.Edge
	switch edge {
	case inputs.Rising, "":
		e = gpio.RisingEdge
	case inputs.Falling:
		e = gpio.FallingEdge
	case inputs.Both:
		e = gpio.BothEdges
	default:
		return fmt.Errorf("%s: arm: unknown edge %q", in, edge)
	}
	if err := in.pin.In(in.pull, e); err != nil {
		return fmt.Errorf("%s: arm %s edge: %w: %w", in, edge, inputs.ErrDriver, err)
	}
	return nil
}

// Wait returns when the next armed edge was seen.
func (in *Input) Wait(ctx context.Context) (time.Time, error) {
	for {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		if in.pin.WaitForEdge(poll) {
			return time.Now(), nil
		}
	}
}

// Halt leaves the line an input without edge detection.
func (in *Input) Halt() error {
	if err := in.pin.In(gpio.PullNoChange, gpio.NoEdge); err != nil {
		return fmt.Errorf("%s: halt: %w", in, err)
	}
	return nil
}

type settings struct {
	gpiopin.Settings `yaml:",inline"`
	Pull             string `json:"pull" yaml:"pull"`
}

func open(st inputs.Settings) (inputs.Input, error) {
	var c settings
	if err := st.Decode(&c); err != nil {
		return nil, err
	}
	if err := c.Settings.Validate(); err != nil {
		return nil, err
	}
	pull := gpio.Float
	switch c.Pull {
	case "", "none":
	case "up":
		pull = gpio.PullUp
	case "down":
		pull = gpio.PullDown
	default:
		return nil, errors.New("pull: want none, up or down")
	}
	p, err := gpiopin.Open(c.Settings)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", inputs.ErrDriver, err)
	}
	return New(p, pull), nil
}
