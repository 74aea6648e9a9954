// Command fudbench is the bench controller: it serves simulated boards,
// builds and inspects test images, and (as the project grows) flashes
// boards, pushes updates over CoAP and cuts power at chosen points.
//
// Exit codes, for every command: 0 ok, 1 a device test failed, 2 usage or
// configuration error, 3 bench/infrastructure error, 130 interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/fudbench/fudbench/internal/simbench"

	"github.com/spf13/cobra"

	// The driver set: like database/sql drivers, each registers itself.
	_ "github.com/fudbench/fudbench/inputs/gpio"
	_ "github.com/fudbench/fudbench/power/exec"
	_ "github.com/fudbench/fudbench/power/gpio"
	_ "github.com/fudbench/fudbench/power/scpi"
	_ "github.com/fudbench/fudbench/power/simctl"
	_ "github.com/fudbench/fudbench/probes/cli"
	_ "github.com/fudbench/fudbench/probes/esprom"
	_ "github.com/fudbench/fudbench/probes/gdbrsp"
	_ "github.com/fudbench/fudbench/probes/openocd"
	_ "github.com/fudbench/fudbench/probes/smp"
	_ "github.com/fudbench/fudbench/probes/stm32uart"
)

// Exit codes.
const (
	ExitOK          = 0
	ExitDeviceFail  = 1
	ExitUsage       = 2
	ExitInfra       = 3
	ExitInterrupted = 130
)

// exitError carries an exit code with its cause.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(err error) error { return &exitError{ExitUsage, err} }
func infraErr(err error) error { return &exitError{ExitInfra, err} }

var errInterrupted = errors.New("interrupted")

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, errInterrupted), errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ee):
		return ee.code
	default:
		return ExitInfra
	}
}

type globals struct {
	verbose bool
	log     *slog.Logger
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "fudbench",
		Short:         "Power-cut firmware update bench",
		Long:          "fudbench tests that firmware updates survive a power cut at any moment, and measures how long a device takes to come back.",
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version, like the version command.
		Version: readVersion().String(),
		PersistentPreRun: func(cmd *cobra.Command, args []string) {
			g.log = slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: logLevel(g.verbose)}))
		},
	}
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "debug logging")
	// Defined here only for its help text; cobra still handles it.
	root.Flags().Bool("version", false, "print the version and the commit (see the version command)")
	root.SetVersionTemplate("fudbench {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageErr(err) })
	root.AddCommand(newSimCmd(g), newImageCmd(g), newBoardsCmd(g), newPowerCmd(g), newConsoleCmd(g), newUpdateCmd(g), newRunCmd(g), newCheckCmd(g), newFlashCmd(g), newReportCmd(g), newServeCmd(g), newAgentCmd(g), newSubmitCmd(g), newRunsCmd(g), newCancelCmd(g), newVersionCmd())
	return root
}

// run executes the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	// The built-in simulated bench names its boards' development secrets
	// by environment variable (docs/sim.md).
	simbench.DevSecrets()
	g := &globals{log: slog.New(slog.NewTextHandler(stderr, nil))}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil && ctx.Err() != nil && !errors.Is(err, errInterrupted) {
		err = errors.Join(errInterrupted, err)
	}
	if err != nil {
		// Cobra's own argument errors are usage errors.
		var ee *exitError
		if !errors.As(err, &ee) && !errors.Is(err, errInterrupted) && isCobraUsage(err) {
			err = usageErr(err)
		}
		fmt.Fprintln(stderr, "fudbench:", err)
	}
	return exitCode(err)
}

func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "accepts ", "requires at least", "invalid argument", "unknown shorthand", "flag needs an argument", "required flag"} {
		if len(msg) >= len(p) && contains(msg, p) {
			return true
		}
	}
	return false
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// EnvCPUProfile names a file to write a CPU profile of the whole command
// to (go tool pprof reads it): FUDBENCH_CPUPROFILE=cpu.out fudbench ….
const EnvCPUProfile = "FUDBENCH_CPUPROFILE"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	endProfile := startCPUProfile(os.Getenv(EnvCPUProfile))
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	endProfile()
	stop()
	os.Exit(code)
}

// startCPUProfile starts a CPU profile into path ("": none) and returns
// what ends it.
func startCPUProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "fudbench: %s: %v\n", EnvCPUProfile, err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}
