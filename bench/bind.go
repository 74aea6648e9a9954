package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/fudbench/fudbench/bench/console"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/power"
)

// ErrNotWired marks a board that lacks what an operation needs (no power
// switch, no CoAP endpoint): a configuration error.
var ErrNotWired = errors.New("not wired")

// BindOptions choose what Bind opens.
type BindOptions struct {
	Console bool // open the serial console (it follows the port if it vanishes)
	Tx      coap.Transmission
	Log     *slog.Logger
	// PowerTimeout bounds each power switch call (0: DefaultPowerTimeout).
	PowerTimeout time.Duration
}

// Bind opens a board's drivers as its inventory entry describes them. It
// powers nothing. Configuration errors (an unknown driver, bad settings,
// a missing key) wrap boards.ErrConfig.
func Bind(ctx context.Context, bd *boards.Board, hub *Hub, opt BindOptions) (*Board, error) {
	b := &Board{Name: bd.Name, hub: hub, Patterns: SimPatterns, PowerTimeout: opt.PowerTimeout}
	if bd.Power != nil {
		sw, err := power.Open(bd.Power.Driver, bd.Power)
		if err != nil {
			if errors.Is(err, boards.ErrConfig) {
				return nil, err
			}
			line, col := bd.Power.Pos()
			return nil, fmt.Errorf("%w: board %s: power (%d:%d): %w", boards.ErrConfig, bd.Name, line, col, err)
		}
		b.Power = sw
	}
	if c := bd.CoAP; c != nil {
		b.Endpoint = Endpoint{Addr: c.Address, Tx: opt.Tx}
		if c.DTLS != nil {
			key, err := c.DTLS.Key()
			if err != nil {
				return nil, fmt.Errorf("%w: board %s: %w", boards.ErrConfig, bd.Name, err)
			}
			b.Endpoint.PSK = &coap.PSK{Identity: c.DTLS.Identity, Key: key}
		}
	}
	if c := bd.Console; c != nil {
		for _, p := range []struct {
			re  string
			dst **regexp.Regexp
		}{{c.Patterns.Boot, &b.Patterns.Boot}, {c.Patterns.App, &b.Patterns.App}, {c.Patterns.Recovery, &b.Patterns.Recovery}} {
			if p.re != "" {
				*p.dst = regexp.MustCompile(p.re) // validated at load
			}
		}
		if opt.Console {
			cfg := console.Config{Path: c.Port, Baud: c.Baud}
			if c.USB != nil {
				cfg.USB = &console.USBMatch{VID: c.USB.VID, PID: c.USB.PID, Serial: c.USB.Serial}
			}
			con, err := console.Open(ctx, cfg, console.Options{Board: bd.Name, Clock: hub.Clock(), Sink: hub, Cycle: b.Cycle, Logger: opt.Log})
			if err != nil {
				return nil, fmt.Errorf("board %s: console: %w", bd.Name, err)
			}
			b.Console = con
		}
	}
	return b, nil
}

// Close releases the board's console. It does not touch power: callers
// use Safe for that.
func (b *Board) Close() error {
	if b.Console != nil {
		return b.Console.Close()
	}
	return nil
}

// NeedPower returns ErrNotWired unless the board has a power switch.
func (b *Board) NeedPower() error {
	if b.Power == nil {
		return fmt.Errorf("board %s has no power switch: %w", b.Name, ErrNotWired)
	}
	return nil
}

// NeedCoAP returns ErrNotWired unless the board has a CoAP endpoint.
func (b *Board) NeedCoAP() error {
	if b.Endpoint.Addr == "" {
		return fmt.Errorf("board %s has no coap endpoint: %w", b.Name, ErrNotWired)
	}
	return nil
}
