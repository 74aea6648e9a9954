// Package exec is the power driver "exec": it switches a supply by running
// a program, for relays and smart plugs that come with a command-line tool.
// Importing it registers the driver.
//
// Settings:
//
//	on: [usbrelay, BITFT_1=1]        # argv lists, required
//	off: [usbrelay, BITFT_1=0]
//	state: [relay-state, "1"]        # optional: exit 0 = on, 1 = off
//	timeout: 10s                     # per command (default 10s)
//	env: {RELAY_HOST: 10.0.0.5}      # optional, added to the bench's environment
//
// No shell is involved: argv[0] is run with argv[1:] as its arguments,
// each passed literally, and a string where a list is expected is refused.
// Each command runs in its own process group, which is killed as a whole
// when the timeout or the caller's deadline passes.
//
// A state command reports by its exit status alone: 0 on, 1 off; any other
// status, or being killed, is an error. Its output is ignored, so a tool
// that prints the state is wrapped in a small script of the user's own.
package exec

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fudbench/fudbench/internal/driverreg"
	"github.com/fudbench/fudbench/internal/proc"
	"github.com/fudbench/fudbench/power"
)

// Driver is the name the driver registers under.
const Driver = "exec"

// DefaultTimeout bounds each command when the settings give none.
const DefaultTimeout = 10 * time.Second

// stderrLines is how many of a failing command's last stderr lines go
// into its error.
const stderrLines = 5

func init() {
	power.Register(Driver, open)
}

var (
	_ power.Switch      = (*Switch)(nil)
	_ power.StateReader = (*Switch)(nil)
)

// Config configures a Switch.
type Config struct {
	On, Off []string // required
	State   []string // optional; nil makes State an error
	// Timeout bounds each command; 0 is DefaultTimeout. A caller's
	// earlier deadline wins.
	Timeout time.Duration
	// Env is added to the bench's environment, overriding it.
	Env map[string]string
}

// Switch switches a supply by running commands.
type Switch struct {
	cfg  Config
	env  []string
	name string
	sem  chan struct{} // one command at a time, so calls land in order
}

// New checks c and returns a Switch. It runs nothing.
func New(c Config) (*Switch, error) {
	for _, a := range []struct {
		key  string
		argv []string
		req  bool
	}{{"on", c.On, true}, {"off", c.Off, true}, {"state", c.State, false}} {
		if len(a.argv) == 0 {
			if a.req {
				return nil, fmt.Errorf("%s: required", a.key)
			}
			continue
		}
		if a.argv[0] == "" {
			return nil, fmt.Errorf("%s: program name is empty", a.key)
		}
	}
	if c.Timeout < 0 {
		return nil, fmt.Errorf("timeout: %v is negative", c.Timeout)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	env := os.Environ()
	keys := make([]string, 0, len(c.Env))
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("env: %q is no variable name", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Later entries win in os/exec, so these override the bench's.
		env = append(env, k+"="+c.Env[k])
	}
	return &Switch{cfg: c, env: env, name: Driver + ":" + filepath.Base(c.On[0]), sem: make(chan struct{}, 1)}, nil
}

// String names the switch after its on program, e.g. "exec:usbrelay".
func (s *Switch) String() string { return s.name }

// On runs the on command.
func (s *Switch) On(ctx context.Context) error {
	_, err := s.run(ctx, "on", s.cfg.On)
	return err
}

// Off runs the off command.
func (s *Switch) Off(ctx context.Context) error {
	_, err := s.run(ctx, "off", s.cfg.Off)
	return err
}

// State runs the state command: exit status 0 is on, 1 is off.
func (s *Switch) State(ctx context.Context) (bool, error) {
	if len(s.cfg.State) == 0 {
		return false, fmt.Errorf("%s: state: %w: %w: no state command configured", s, power.ErrDriver, errors.ErrUnsupported)
	}
	code, err := s.run(ctx, "state", s.cfg.State)
	if err != nil {
		return false, err
	}
	return code == 0, nil
}

// run runs argv and returns its exit status, which is 0, or 1 for a state
// command. Any other status, a failure to start, a kill, or ctx or the
// timeout ending it is an error; a failing command's error carries the
// last lines of its stderr.
func (s *Switch) run(ctx context.Context, op string, argv []string) (int, error) {
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return -1, s.ctxErr(op, ctx.Err(), "waiting for the previous command")
	}
	stderr := &proc.Tail{Max: 4 << 10}
	took, err := proc.Run(ctx, argv, proc.Options{Timeout: s.cfg.Timeout, Env: s.env, Stderr: stderr})
	var (
		exit   *osexec.ExitError
		killed *proc.KilledError
	)
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &exit) && exit.Exited():
		if exit.ExitCode() == 1 && op == "state" {
			return 1, nil
		}
		return -1, fmt.Errorf("%s: %s: %w: exit status %d%s", s, op, power.ErrDriver, exit.ExitCode(), stderr.Quoted(": stderr: ", stderrLines))
	case errors.As(err, &killed):
		return -1, s.ctxErr(op, killed.Err, fmt.Sprintf("killed after %v", took.Round(time.Millisecond)))
	default:
		return -1, fmt.Errorf("%s: %s: %w: %w%s", s, op, power.ErrDriver, err, stderr.Quoted(": stderr: ", stderrLines))
	}
}

func (s *Switch) ctxErr(op string, err error, what string) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %s: %w: %s: %w", s, op, power.ErrTimeout, what, err)
	}
	return fmt.Errorf("%s: %s: %s: %w", s, op, what, err)
}

// settings is the driver's part of the inventory.
type settings struct {
	On      argv              `json:"on" yaml:"on"`
	Off     argv              `json:"off" yaml:"off"`
	State   argv              `json:"state" yaml:"state"`
	Timeout string            `json:"timeout" yaml:"timeout"`
	Env     map[string]string `json:"env" yaml:"env"`
}

func open(st power.Settings) (power.Switch, error) {
	var c settings
	if err := st.Decode(&c); err != nil {
		return nil, err
	}
	cfg := Config{On: program(st, c.On), Off: program(st, c.Off), State: program(st, c.State), Env: c.Env}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil {
			return nil, fmt.Errorf("timeout: %w", err)
		}
		if d <= 0 {
			return nil, fmt.Errorf("timeout: %v is not positive", d)
		}
		cfg.Timeout = d
	}
	return New(cfg)
}

// program resolves argv's program against the bench file's directory
// when it is a path (see driverreg.Program).
func program(st power.Settings, a argv) []string {
	if len(a) == 0 {
		return a
	}
	out := append([]string(nil), a...)
	out[0] = driverreg.Program(st, out[0])
	return out
}

// argv is a command line as a list. It refuses a plain string, which
// would need a shell to split.
type argv []string

var errArgvString = errors.New("a list of program and arguments is needed, not a string: no shell splits it")

// UnmarshalJSON decodes a JSON list of strings.
func (a *argv) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '"' {
		return errArgvString
	}
	var l []string
	if err := json.Unmarshal(b, &l); err != nil {
		return err
	}
	*a = l
	return nil
}

// UnmarshalYAML decodes a YAML sequence of strings; the signature is the
// one YAML libraries call with their own decode function.
func (a *argv) UnmarshalYAML(unmarshal func(any) error) error {
	var l []string
	if err := unmarshal(&l); err != nil {
		var s string
		if unmarshal(&s) == nil {
			return errArgvString
		}
		return err
	}
	*a = l
	return nil
}
