package cli_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fudbench/fudbench/probes"
	"github.com/fudbench/fudbench/probes/cli"
)

// fakeTool is a /bin/sh stand-in for probe-rs and pyocd. It records its
// argv NUL-separated in $FAKE_DIR/argv, copies the file after "--" to
// $FAKE_DIR/image, and then acts as $FAKE_MODE says, replaying output in
// the documented shape of each tool:
//
//	ok      success output, exit 0
//	fail    the tool's error report on stderr, exit 1
//	usage   the argument parser's complaint (clap, argparse), exit 2
//	exit3   exit 3
//	hang    start a child that sleeps, record its pid, wait
//	flood   an error line on stderr, 230 KB on stdout ending with
//	        "last line", exit 1
//	report  probe-rs with --report: exit 0 even on error (the quirk the
//	        driver must avoid); without --report, as fail
const fakeTool = `#!/bin/sh
tool=$(basename "$0")
printf '%s\0' "$@" > "$FAKE_DIR/argv"
file=
seen=
for a; do
	if [ -n "$seen" ]; then file=$a; fi
	if [ "$a" = "--" ]; then seen=1; fi
done
if [ -n "$file" ]; then cp "$file" "$FAKE_DIR/image"; fi
report=
for a; do [ "$a" = "--report" ] && report=1; done
mode=$FAKE_MODE
if [ "$mode" = report ]; then
	if [ -n "$report" ]; then echo '{"error":"Connecting to the chip was unsuccessful."}' > "$FAKE_DIR/report.json"; exit 0; fi
	mode=fail
fi
case "$tool/$mode" in
probe-rs/ok)
	echo "      Erasing ✔ 100% [####################]  20.00 KiB @  30.81 KiB/s (took 1s)" >&2
	echo "  Programming ✔ 100% [####################]  20.00 KiB @  12.44 KiB/s (took 2s)" >&2
	echo "     Finished in 2.31s" >&2
	exit 0 ;;
probe-rs/fail)
	echo " WARN probe_rs::probe::stlink: send_jtag_command 242 failed: JtagGetIdcodeError" >&2
	echo "Error: Connecting to the chip was unsuccessful." >&2
	echo "" >&2
	echo "Caused by:" >&2
	echo "    0: An ARM specific error occurred." >&2
	echo "    1: The debug probe could not be found." >&2
	exit 1 ;;
probe-rs/usage)
	echo "error: unexpected argument '--frobnicate' found" >&2
	echo "" >&2
	echo "Usage: probe-rs download [OPTIONS] --chip <CHIP> <PATH>" >&2
	echo "" >&2
	echo "For more information, try '--help'." >&2
	exit 2 ;;
pyocd/ok)
	echo "0000391 I Loading $file at 0x08000000 [load_cmd]" >&2
	echo "[==================================================] 100%" 
	echo "0002107 I Erased 20480 bytes (5 sectors), programmed 20480 bytes (20 pages), skipped 0 bytes (0 pages) at 11.62 kB/s [loader]" >&2
	exit 0 ;;
pyocd/fail)
	echo "0000713 C No connected debug probes matching unique ID '0671FF54' [__main__]" >&2
	exit 1 ;;
pyocd/usage)
	echo "usage: pyocd load [-h] [-v] [-q] [-u UNIQUE_ID] [-t TARGET] <file-path> ..." >&2
	echo "pyocd load: error: unrecognized arguments: --frobnicate" >&2
	exit 2 ;;
*/exit3)
	echo "stdout only" ; exit 3 ;;
*/hang)
	sleep 30 &
	echo $! > "$FAKE_DIR/child"
	wait
	exit 0 ;;
*/flood)
	echo "Error: flooded" >&2
	i=0
	while [ $i -lt 2000 ]; do
		echo "progress line $i ................................................................................................"
		i=$((i+1))
	done
	echo "last line"
	exit 1 ;;
esac
echo "fake: unknown mode $tool/$mode" >&2
exit 99
`

// fake puts probe-rs and pyocd fakes on PATH and returns their record
// directory.
func fake(t *testing.T, mode string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{cli.ProbeRS, cli.PyOCD} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fakeTool), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_DIR", dir)
	t.Setenv("FAKE_MODE", mode)
	return dir
}

// recordedArgv reads the argv the fake recorded.
func recordedArgv(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "argv"))
	if err != nil {
		t.Fatalf("the fake recorded no argv: %v", err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
}

func mustNew(t *testing.T, cfg cli.Config) *cli.Probe {
	t.Helper()
	p, err := cli.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func testImage() []byte {
	img := make([]byte, 20<<10+5)
	for i := range img {
		img[i] = byte(i*7 + i>>8)
	}
	// Bytes a shell or a line-oriented reader would mangle.
	copy(img, "\x00\n--;$(rm -rf /)\r\n")
	return img
}

const (
	chip  = "STM32F103C8"
	probe = "0483:3748:0671FF54"
	uid   = "0671FF54"
)

func TestFlashArgv(t *testing.T) {
	tests := []struct {
		name  string
		cfg   cli.Config
		addr  uint32
		want  []string // argv[1:] up to and including "--"
		reset []string
	}{
		{
			name:  "probe-rs",
			cfg:   cli.Config{Tool: cli.ProbeRS, Chip: chip, Probe: probe, Verify: true},
			addr:  0x08000000,
			want:  []string{"download", "--chip", chip, "--probe", probe, "--binary-format", "bin", "--base-address", "0x8000000", "--verify", "--"},
			reset: []string{"reset", "--chip", chip, "--probe", probe},
		},
		{
			name:  "probe-rs no verify, extra, address 0",
			cfg:   cli.Config{Tool: cli.ProbeRS, Chip: "nRF52840_xxAA", Probe: "1366:1015", Extra: []string{"--speed", "4000", "--protocol", "swd"}},
			addr:  0,
			want:  []string{"download", "--chip", "nRF52840_xxAA", "--probe", "1366:1015", "--binary-format", "bin", "--base-address", "0x0", "--speed", "4000", "--protocol", "swd", "--"},
			reset: []string{"reset", "--chip", "nRF52840_xxAA", "--probe", "1366:1015", "--speed", "4000", "--protocol", "swd"},
		},
		{
			name:  "pyocd",
			cfg:   cli.Config{Tool: cli.PyOCD, Chip: "stm32f103rc", Probe: uid},
			addr:  0x08004000,
			want:  []string{"load", "--no-wait", "-t", "stm32f103rc", "-u", uid, "--format", "bin", "--base-address", "0x8004000", "--"},
			reset: []string{"reset", "--no-wait", "-t", "stm32f103rc", "-u", uid},
		},
		{
			name:  "pyocd extra",
			cfg:   cli.Config{Tool: cli.PyOCD, Chip: "nrf52840", Probe: uid, Extra: []string{"-f", "4m", "-M", "under-reset"}},
			addr:  0x1000,
			want:  []string{"load", "--no-wait", "-t", "nrf52840", "-u", uid, "--format", "bin", "--base-address", "0x1000", "-f", "4m", "-M", "under-reset", "--"},
			reset: []string{"reset", "--no-wait", "-t", "nrf52840", "-u", uid, "-f", "4m", "-M", "under-reset"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fake(t, "ok")
			p := mustNew(t, tt.cfg)
			img := testImage()
			var calls [][2]int
			err := p.Flash(context.Background(), tt.addr, img, func(done, total int) { calls = append(calls, [2]int{done, total}) })
			if err != nil {
				t.Fatalf("Flash: %v", err)
			}
			argv := recordedArgv(t, dir)
			if len(argv) != len(tt.want)+1 || !slices.Equal(argv[:len(tt.want)], tt.want) {
				t.Fatalf("argv\n got %q\nwant %q + FILE", argv, tt.want)
			}
			file := argv[len(argv)-1]
			if !strings.HasSuffix(file, ".bin") || !filepath.IsAbs(file) {
				t.Errorf("image file %q: want an absolute path ending in .bin", file)
			}
			if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("image file %q left behind: %v", file, err)
			}
			got, err := os.ReadFile(filepath.Join(dir, "image"))
			if err != nil || !bytes.Equal(got, img) {
				t.Errorf("the tool saw %d bytes (%v), want the %d-byte image", len(got), err, len(img))
			}
			if want := [][2]int{{0, len(img)}, {len(img), len(img)}}; !slices.Equal(calls, want) {
				t.Errorf("progress calls %v, want %v", calls, want)
			}
			if !strings.Contains(p.Output(), "100%") {
				t.Errorf("Output() = %q, want the tool's output", p.Output())
			}
			if slices.Contains(argv, "--report") {
				t.Error("--report passed: probe-rs then exits 0 even on error")
			}

			if err := p.Reset(context.Background()); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			if argv := recordedArgv(t, dir); !slices.Equal(argv, tt.reset) {
				t.Errorf("reset argv\n got %q\nwant %q", argv, tt.reset)
			}
		})
	}
}

func TestProgramSetting(t *testing.T) {
	dir := fake(t, "ok")
	// A program by path, under a name that is not on PATH.
	prog := filepath.Join(t.TempDir(), "probe-rs-0.24")
	if err := os.Symlink(filepath.Join(dir, cli.ProbeRS), prog); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", "/nonexistent")
	p := mustNew(t, cli.Config{Tool: cli.ProbeRS, Chip: chip, Probe: probe, Program: prog})
	if err := p.Reset(context.Background()); err == nil {
		// The fake dispatches on its own name; "probe-rs-0.24" is unknown
		// to it, so it exits 99 — which proves it ran.
		t.Fatal("Reset through the fake under another name succeeded; want its exit 99")
	} else if !strings.Contains(err.Error(), "exit status 99") {
		t.Fatalf("Reset: %v, want the fake's exit status 99", err)
	}
	if argv := recordedArgv(t, dir); argv[0] != "reset" {
		t.Errorf("argv %q", argv)
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name    string
		tool    string
		mode    string
		want    []string // substrings of the error
		notWant string
	}{
		{name: "probe-rs error", tool: cli.ProbeRS, mode: "fail", want: []string{"exit status 1", "Connecting to the chip was unsuccessful", "The debug probe could not be found", "flash at 0x08000000"}},
		{name: "probe-rs usage", tool: cli.ProbeRS, mode: "usage", want: []string{"exit status 2", "usage error", "unexpected argument '--frobnicate'"}},
		{name: "probe-rs report quirk avoided", tool: cli.ProbeRS, mode: "report", want: []string{"exit status 1", "Connecting to the chip was unsuccessful"}},
		{name: "pyocd error", tool: cli.PyOCD, mode: "fail", want: []string{"exit status 1", "No connected debug probes matching unique ID"}},
		{name: "pyocd usage", tool: cli.PyOCD, mode: "usage", want: []string{"exit status 2", "usage error", "unrecognized arguments"}},
		{name: "other status, stdout only", tool: cli.PyOCD, mode: "exit3", want: []string{"exit status 3", "stdout only"}, notWant: "usage"},
		{name: "flood keeps the last lines", tool: cli.ProbeRS, mode: "flood", want: []string{"exit status 1", "Error: flooded"}, notWant: "progress line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fake(t, tt.mode)
			cfg := cli.Config{Tool: tt.tool, Chip: chip, Probe: uid}
			if tt.tool == cli.ProbeRS {
				cfg.Probe = probe
			}
			p := mustNew(t, cfg)
			err := p.Flash(context.Background(), 0x08000000, testImage(), nil)
			if !errors.Is(err, probes.ErrProbe) {
				t.Fatalf("err %v, want ErrProbe", err)
			}
			if errors.Is(err, probes.ErrTimeout) {
				t.Errorf("err %v is also ErrTimeout", err)
			}
			for _, w := range append(tt.want, p.String()) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q lacks %q", err, w)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("err %q contains %q", err, tt.notWant)
			}
			if _, err := os.Stat(filepath.Join(dir, "report.json")); err == nil {
				t.Error("the tool was run with --report")
			}
			if len(p.Output()) > 64<<10 {
				t.Errorf("Output() is %d bytes, want at most 64 KiB", len(p.Output()))
			}
			if out := p.Output(); tt.mode == "flood" && (len(out) != 64<<10 || !strings.Contains(out, "last line\n")) {
				t.Errorf("Output() is %d bytes ending %q, want the last 64 KiB", len(out), out[max(0, len(out)-40):])
			}
		})
	}
}

func TestMissingProgram(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, prog := range []string{"", "/nonexistent/probe-rs"} {
		p := mustNew(t, cli.Config{Tool: cli.ProbeRS, Chip: chip, Probe: probe, Program: prog})
		err := p.Reset(context.Background())
		if !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "not found") {
			t.Errorf("program %q: err %v, want ErrProbe naming a missing program", prog, err)
		}
	}
}

// TestTimeout: a hung tool is killed with its whole process group, and
// the error is ErrTimeout; the caller's deadline and cancel are honoured
// the same way.
func TestTimeout(t *testing.T) {
	tests := []struct {
		name        string
		timeout     time.Duration // the probe's
		deadline    time.Duration // the caller's, if not 0
		cancelAfter time.Duration // the caller cancels, if not 0
		want        []error
	}{
		{name: "timeout setting", timeout: 300 * time.Millisecond, want: []error{probes.ErrTimeout}},
		{name: "ctx deadline", timeout: time.Minute, deadline: 300 * time.Millisecond, want: []error{probes.ErrTimeout, context.DeadlineExceeded}},
		{name: "ctx cancel", timeout: time.Minute, cancelAfter: 300 * time.Millisecond, want: []error{context.Canceled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fake(t, "hang")
			p := mustNew(t, cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: uid, Timeout: tt.timeout})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.deadline != 0 {
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			if tt.cancelAfter != 0 {
				time.AfterFunc(tt.cancelAfter, cancel)
			}
			start := time.Now()
			err := p.Flash(ctx, 0, testImage(), nil)
			took := time.Since(start)
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("err %v, want %v", err, w)
				}
			}
			if took > 5*time.Second {
				t.Errorf("Flash returned after %v; the tool was not killed in time", took)
			}
			b, rerr := os.ReadFile(filepath.Join(dir, "child"))
			if rerr != nil {
				t.Fatalf("the fake recorded no child: %v", rerr)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			// The child may linger a moment as a zombie of a killed
			// parent; it must be gone soon after.
			deadline := time.Now().Add(3 * time.Second)
			for syscall.Kill(pid, 0) == nil && zombieOrAlive(pid) {
				if time.Now().After(deadline) {
					t.Fatalf("the tool's child %d outlived the kill", pid)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// zombieOrAlive reports whether pid still runs (not a zombie).
func zombieOrAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no /proc: rely on kill -0 alone
	}
	// The state follows the ")" that ends the command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestHostileValues: a value that looks like an option is refused; one
// that would mean something to a shell is passed literally.
func TestHostileValues(t *testing.T) {
	refused := []struct {
		name string
		cfg  cli.Config
		want string
	}{
		{"chip option", cli.Config{Tool: cli.ProbeRS, Chip: "--foo", Probe: probe}, `chip: "--foo" starts with "-"`},
		{"chip report", cli.Config{Tool: cli.ProbeRS, Chip: "--report", Probe: probe}, "starts with"},
		{"probe option", cli.Config{Tool: cli.ProbeRS, Chip: chip, Probe: "-h"}, `probe: "-h"`},
		{"probe no selector", cli.Config{Tool: cli.ProbeRS, Chip: chip, Probe: "0671FF54"}, "VID:PID"},
		{"probe bad vid", cli.Config{Tool: cli.ProbeRS, Chip: chip, Probe: "xyz:3748"}, "VID:PID"},
		{"target option", cli.Config{Tool: cli.PyOCD, Chip: "-tfoo", Probe: uid}, `target: "-tfoo"`},
		{"uid option", cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: "--uid=x"}, `uid: "--uid=x"`},
		{"no chip", cli.Config{Tool: cli.ProbeRS, Probe: probe}, "chip: required"},
		{"no uid", cli.Config{Tool: cli.PyOCD, Chip: "k64f"}, "uid: required"},
		{"NUL", cli.Config{Tool: cli.PyOCD, Chip: "k64f\x00--x", Probe: uid}, "NUL"},
		{"extra double dash", cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: uid, Extra: []string{"--", "/etc/passwd"}}, `extra[0]: "--"`},
		{"pyocd verify", cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: uid, Verify: true}, "no verify option"},
		{"unknown tool", cli.Config{Tool: "openocd", Chip: "x", Probe: "y"}, `tool: "openocd"`},
		{"negative timeout", cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: uid, Timeout: -time.Second}, "negative"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cli.New(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: err %v, want one containing %q", err, tt.want)
			}
		})
	}

	literal := []cli.Config{
		{Tool: cli.ProbeRS, Chip: "x; rm -rf /", Probe: "0483:3748:$(touch pwned)"},
		{Tool: cli.PyOCD, Chip: "x; rm -rf /", Probe: "`touch pwned` *"},
	}
	for _, cfg := range literal {
		t.Run("literal "+cfg.Tool, func(t *testing.T) {
			dir := fake(t, "ok")
			wd := t.TempDir()
			t.Chdir(wd)
			p := mustNew(t, cfg)
			if err := p.Flash(context.Background(), 0x08000000, testImage(), nil); err != nil {
				t.Fatal(err)
			}
			argv := recordedArgv(t, dir)
			for _, v := range []string{cfg.Chip, cfg.Probe} {
				if !slices.Contains(argv, v) {
					t.Errorf("argv %q lacks %q as one argument", argv, v)
				}
			}
			if _, err := os.Stat(filepath.Join(wd, "pwned")); err == nil {
				t.Error("a value was run by a shell")
			}
		})
	}
}

func TestClosed(t *testing.T) {
	dir := fake(t, "ok")
	p := mustNew(t, cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: uid})
	p.Close()
	if err := p.Reset(context.Background()); !errors.Is(err, probes.ErrProbe) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Reset after Close: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "argv")); err == nil {
		t.Error("a closed probe ran the tool")
	}
	// Nothing to write is nothing to run.
	p2 := mustNew(t, cli.Config{Tool: cli.PyOCD, Chip: "k64f", Probe: uid})
	if err := p2.Flash(context.Background(), 0, nil, nil); err != nil {
		t.Errorf("empty Flash: %v", err)
	}
	if err := p2.Flash(context.Background(), 0xffffff00, make([]byte, 0x200), nil); !errors.Is(err, probes.ErrProbe) {
		t.Errorf("Flash past 4 GiB: %v, want ErrProbe", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "argv")); err == nil {
		t.Error("the tool ran for nothing")
	}
}

func TestOpenSettings(t *testing.T) {
	tests := []struct {
		name     string
		driver   string
		s        probes.MapSettings
		wantErr  string
		wantName string
		wantArgv []string // reset argv, checked when set
	}{
		{name: "probe-rs minimal", driver: cli.ProbeRS, s: probes.MapSettings{"chip": chip, "probe": probe},
			wantName: "probe-rs:" + probe, wantArgv: []string{"reset", "--chip", chip, "--probe", probe}},
		{name: "probe-rs all", driver: cli.ProbeRS, s: probes.MapSettings{"chip": chip, "probe": probe, "program": "probe-rs", "timeout": "30s", "verify": false, "extra": []any{"--speed", "1000"}},
			wantName: "probe-rs:" + probe, wantArgv: []string{"reset", "--chip", chip, "--probe", probe, "--speed", "1000"}},
		{name: "pyocd minimal", driver: cli.PyOCD, s: probes.MapSettings{"target": "k64f", "uid": uid},
			wantName: "pyocd:" + uid, wantArgv: []string{"reset", "--no-wait", "-t", "k64f", "-u", uid}},
		{name: "pyocd has no chip key", driver: cli.PyOCD, s: probes.MapSettings{"chip": "k64f", "uid": uid}, wantErr: `unknown key "chip"`},
		{name: "probe-rs has no uid key", driver: cli.ProbeRS, s: probes.MapSettings{"chip": chip, "uid": uid}, wantErr: `unknown key "uid"`},
		{name: "pyocd has no verify key", driver: cli.PyOCD, s: probes.MapSettings{"target": "k64f", "uid": uid, "verify": true}, wantErr: `unknown key "verify"`},
		{name: "extra as a string", driver: cli.ProbeRS, s: probes.MapSettings{"chip": chip, "probe": probe, "extra": "--speed 1000"}, wantErr: "extra"},
		{name: "bad timeout", driver: cli.PyOCD, s: probes.MapSettings{"target": "k64f", "uid": uid, "timeout": "soon"}, wantErr: "timeout"},
		{name: "zero timeout", driver: cli.PyOCD, s: probes.MapSettings{"target": "k64f", "uid": uid, "timeout": "0s"}, wantErr: "must be positive"},
		{name: "option as chip", driver: cli.ProbeRS, s: probes.MapSettings{"chip": "--report", "probe": probe}, wantErr: "starts with"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fake(t, "ok")
			f, err := probes.Open(tt.driver, tt.s)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if f.String() != tt.wantName {
				t.Errorf("String() = %q, want %q", f, tt.wantName)
			}
			if err := f.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
			if argv := recordedArgv(t, dir); !slices.Equal(argv, tt.wantArgv) {
				t.Errorf("reset argv %q, want %q", argv, tt.wantArgv)
			}
		})
	}
}

// TestVerifyDefault: probe-rs verifies by default through the registry.
func TestVerifyDefault(t *testing.T) {
	dir := fake(t, "ok")
	f, err := probes.Open(cli.ProbeRS, probes.MapSettings{"chip": chip, "probe": probe})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Flash(context.Background(), 0x08000000, []byte{1, 2, 3}, nil); err != nil {
		t.Fatal(err)
	}
	if argv := recordedArgv(t, dir); !slices.Contains(argv, "--verify") {
		t.Errorf("argv %q lacks --verify", argv)
	}
}
