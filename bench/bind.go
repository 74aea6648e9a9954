package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fudbench/fudbench/bench/console"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/coap/oscore"
	"github.com/fudbench/fudbench/inputs"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/internal/gpiopin"
	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/probes"
)

// BindOptions choose what Bind opens.
type BindOptions struct {
	Console bool // open the serial console (it follows the port if it vanishes)
	Probe   bool // open the probe driver (it connects when first used)
	Inputs  bool // open the trigger inputs
	Tx      coap.Transmission
	Log     *slog.Logger
	// PowerTimeout bounds each power switch call (0: DefaultPowerTimeout).
	PowerTimeout time.Duration
	// Witness is the device's own cut record when the caller has it (a
	// simulated board in this process); otherwise a power switch that is
	// a power.CutWitness serves.
	Witness power.CutWitness
	// Link replaces the board's link (its entry's coap.link) when not nil:
	// a job's link. A link that is Off means none.
	Link *link.Config
}

// Bind opens a board's drivers as its inventory entry describes them and
// reads its DTLS key. It powers nothing. When the board (or opt) has an
// impaired link, the link's forwarder is started and the board's
// endpoint points at it; Close stops it. A wiring mistake (an unknown
// driver, bad settings, a pin that is not on this host, an unreadable
// key) is a *config.Error at its line in the bench file; other failures
// are the bench's (infra).
func Bind(ctx context.Context, bd *boards.Board, hub *Hub, opt BindOptions) (_ *Board, err error) {
	b := &Board{Name: bd.Name, hub: hub, Patterns: SimPatterns, PowerTimeout: opt.PowerTimeout,
		Flash: bd.Flash, Entry: bd, Profile: boards.ProfileResumable, Inputs: map[string]inputs.Input{}, log: opt.Log}
	defer func() {
		if err != nil {
			b.Close()
		}
	}()
	if bd.Power != nil {
		sw, err := power.Open(bd.Power.Driver, bd.Power)
		if err != nil {
			return nil, wiringError(bd, &bd.Power.Section, "power", err)
		}
		b.Power = sw
		if w, ok := sw.(power.CutWitness); ok {
			b.Witness = w
		}
	}
	if opt.Witness != nil {
		b.Witness = opt.Witness
	}
	if c := bd.CoAP; c != nil {
		b.Endpoint = Endpoint{Addr: c.Address, Tx: opt.Tx}
		b.Profile, b.Path, b.VersionCheck = c.Profile, c.Path, c.Version
		if q := c.QBlock; q != nil {
			b.QBlock = &coap.QBlock{MaxPayloads: q.MaxPayloads, NonTimeout: q.NonTimeout}
		}
		if c.DTLS != nil {
			key, err := c.DTLS.Key()
			if err != nil {
				return nil, config.Errorf(bd.File, c.DTLS.IdentityAt, "board %s: %v", bd.Name, err)
			}
			b.Endpoint.PSK = &coap.PSK{Identity: c.DTLS.Identity, Key: key}
			b.Endpoint.DTLS = c.DTLS
			if b.Endpoint.PSK.Cache, err = coap.NewDTLSCache(c.DTLS.Cache); err != nil {
				return nil, config.Errorf(bd.File, c.DTLS.IdentityAt, "board %s: %v", bd.Name, err)
			}
			b.Nonces = NewNonceLedger()
		}
		if o := c.OSCORE; o != nil {
			secret, err := o.Secret()
			if err != nil {
				return nil, config.Errorf(bd.File, o.At, "board %s: %v", bd.Name, err)
			}
			p := oscore.Params{MasterSecret: secret, MasterSalt: o.Salt, SenderID: o.SenderID,
				RecipientID: o.RecipientID, IDContext: o.IDContext, ReplayWindow: o.ReplayWindow}
			var seq *coap.SeqFile
			if o.SequenceFile != "" {
				seq = coap.NewSeqFile(o.SequenceFile)
			}
			if b.Endpoint.OSCORE, err = coap.NewOSCORE(p, seq); err != nil {
				return nil, config.Errorf(bd.File, o.At, "board %s: %v", bd.Name, err)
			}
			b.Nonces = NewNonceLedger()
		}
		lc := c.Link
		if opt.Link != nil {
			lc = opt.Link
		}
		if lc != nil && !lc.Off {
			if err := b.startLink(c.Address, lc); err != nil {
				return nil, err
			}
		}
	}
	if opt.Probe && bd.Probe != nil {
		if !slices.Contains(probes.Drivers(), bd.Probe.Driver) {
			return nil, bd.Probe.Errorf("board %s: probe driver %q is not built into this fudbench (have: %s)", bd.Name, bd.Probe.Driver, strings.Join(probes.Drivers(), ", "))
		}
		p, err := probes.Open(bd.Probe.Driver, bd.Probe)
		if err != nil {
			return nil, wiringError(bd, &bd.Probe.Section, "probe", err)
		}
		b.Probe = p
	}
	if opt.Inputs {
		for _, in := range bd.Inputs {
			i, err := inputs.Open(in.Driver, in.DriverConfig)
			if err != nil {
				return nil, wiringError(bd, &in.Section, "input "+in.Name, err)
			}
			b.Inputs[in.Name] = i
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

// wiringError places a driver's open error in the bench file: its own
// position when it has one, else the driver's entry. A pin that is not on
// this host is a wiring mistake too (a typo in the bench file, or the
// wrong host); a driver that failed otherwise is the bench's.
func wiringError(bd *boards.Board, sec *boards.Section, what string, err error) error {
	var ce *config.Error
	if errors.As(err, &ce) {
		if ce.Line > 0 {
			return &config.Error{File: ce.File, Line: ce.Line, Column: ce.Column, Msg: fmt.Sprintf("board %s: %s", bd.Name, ce.Msg)}
		}
		return sec.Errorf("board %s: %s: %s", bd.Name, what, ce.Msg)
	}
	if errors.Is(err, gpiopin.ErrNotFound) || !(errors.Is(err, power.ErrDriver) || errors.Is(err, probes.ErrProbe) || errors.Is(err, inputs.ErrDriver)) {
		return sec.Errorf("board %s: %s: %v", bd.Name, what, err)
	}
	return fmt.Errorf("board %s: %s: %w", bd.Name, what, err)
}
