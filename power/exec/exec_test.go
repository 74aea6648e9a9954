package exec

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/fudbench/fudbench/power"
)

// script writes an executable /bin/sh script into dir. The script file is
// run directly as argv[0]; the driver itself never builds a shell line.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustNew(t *testing.T, c Config) *Switch {
	t.Helper()
	s, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOnOffState(t *testing.T) {
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "relay")
	sw := mustNew(t, Config{
		On:    []string{script(t, dir, "relay.sh", `echo "$1" > "$RELAY_FILE"`), "on"},
		Off:   []string{filepath.Join(dir, "relay.sh"), "off"},
		State: []string{script(t, dir, "state.sh", `[ "$(cat "$RELAY_FILE")" = on ]`)},
		Env:   map[string]string{"RELAY_FILE": stateFile},
	})
	if sw.String() != "exec:relay.sh" {
		t.Errorf("String() = %q", sw)
	}
	ctx := context.Background()
	for _, step := range []struct {
		op   func(context.Context) error
		file string
		on   bool
	}{{sw.On, "on", true}, {sw.Off, "off", false}, {sw.On, "on", true}} {
		if err := step.op(ctx); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(stateFile)
		if err != nil || strings.TrimSpace(string(b)) != step.file {
			t.Errorf("relay file %q, %v; want %q", b, err, step.file)
		}
		on, err := sw.State(ctx)
		if err != nil || on != step.on {
			t.Errorf("State() = %v, %v; want %v", on, err, step.on)
		}
	}
}

func TestFailures(t *testing.T) {
	dir := t.TempDir()
	noisy := script(t, dir, "noisy.sh", `for i in 1 2 3 4 5 6 7 8; do echo "line $i" >&2; done; exit 3`)
	state2 := script(t, dir, "state2.sh", `echo "relay unreachable" >&2; exit 2`)
	killed := script(t, dir, "killed.sh", `kill -9 $$`)
	tests := []struct {
		name     string
		cfg      Config
		call     func(*Switch) error
		want     []string
		wantNot  []string
		wantIs   []error
		wantNotI []error
	}{
		{
			name: "exit status and stderr tail", cfg: Config{On: []string{noisy}, Off: []string{noisy}},
			call:    func(s *Switch) error { return s.On(context.Background()) },
			want:    []string{"exec:noisy.sh: on:", "exit status 3", `line 4\nline 5\nline 6\nline 7\nline 8"`},
			wantNot: []string{"line 3"},
			wantIs:  []error{power.ErrDriver}, wantNotI: []error{power.ErrTimeout},
		},
		{
			name: "state exit 2", cfg: Config{On: []string{noisy}, Off: []string{noisy}, State: []string{state2}},
			call: func(s *Switch) error { _, err := s.State(context.Background()); return err },
			want: []string{"state:", "exit status 2", "relay unreachable"}, wantIs: []error{power.ErrDriver},
		},
		{
			name: "no state command", cfg: Config{On: []string{noisy}, Off: []string{noisy}},
			call: func(s *Switch) error { _, err := s.State(context.Background()); return err },
			want: []string{"no state command"}, wantIs: []error{power.ErrDriver},
		},
		{
			name: "program not found", cfg: Config{On: []string{filepath.Join(dir, "missing")}, Off: []string{noisy}},
			call: func(s *Switch) error { return s.On(context.Background()) },
			want: []string{"no such file"}, wantIs: []error{power.ErrDriver, os.ErrNotExist},
		},
		{
			name: "killed by a signal", cfg: Config{On: []string{noisy}, Off: []string{killed}},
			call: func(s *Switch) error { return s.Off(context.Background()) },
			want: []string{"signal: killed"}, wantIs: []error{power.ErrDriver}, wantNotI: []error{power.ErrTimeout},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(mustNew(t, tt.cfg))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, w := range tt.wantNot {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q contains %q", err, w)
				}
			}
			for _, e := range tt.wantIs {
				if !errors.Is(err, e) {
					t.Errorf("error %v is not %v", err, e)
				}
			}
			for _, e := range tt.wantNotI {
				if errors.Is(err, e) {
					t.Errorf("error %v is %v", err, e)
				}
			}
		})
	}
}

// dead reports whether pid has exited (a zombie counts: it runs no more).
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

func TestTimeout(t *testing.T) {
	sw := mustNew(t, Config{On: []string{"sleep", "5"}, Off: []string{"true"}, Timeout: 200 * time.Millisecond})
	start := time.Now()
	err := sw.On(context.Background())
	took := time.Since(start)
	t.Logf("sleep 5 with a 200ms timeout returned after %v: %v", took, err)
	if !errors.Is(err, power.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err %v, want ErrTimeout", err)
	}
	if took > time.Second {
		t.Errorf("took %v, want about 200ms", took)
	}
	if !strings.Contains(err.Error(), "killed after") {
		t.Errorf("error %q does not say it killed the command", err)
	}
}

func TestTimeoutKillsTheGroup(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc to check processes with")
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// The child keeps stderr open too, so only killing the group (not
	// just the script) lets the call return before internal/proc stops
	// waiting for the pipe (half a second).
	body := `sleep 30 & echo $! > "` + pidFile + `"; wait`
	sw := mustNew(t, Config{On: []string{script(t, dir, "spawn.sh", body)}, Off: []string{"true"}, Timeout: 300 * time.Millisecond})
	start := time.Now()
	err := sw.On(context.Background())
	if !errors.Is(err, power.ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > 300*time.Millisecond+500*time.Millisecond {
		t.Errorf("took %v: the child held the pipe", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !dead(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d of the timed-out command still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestContext(t *testing.T) {
	sw := mustNew(t, Config{On: []string{"sleep", "5"}, Off: []string{"sleep", "5"}})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := sw.On(ctx); !errors.Is(err, power.ErrTimeout) {
		t.Errorf("caller's deadline: err %v, want ErrTimeout", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("caller's deadline of 100ms ignored: took %v", took)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	err := sw.Off(ctx)
	if !errors.Is(err, context.Canceled) || errors.Is(err, power.ErrTimeout) {
		t.Errorf("cancel: err %v, want context.Canceled and no ErrTimeout", err)
	}
}

func TestArgumentsAreLiteral(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "argv")
	pwned := filepath.Join(dir, "pwned")
	echo := script(t, dir, "echo-argv.sh", `printf '%s\0' "$@" > "`+out+`"`)
	args := []string{
		"two words",
		"a; touch " + pwned,
		"$(touch " + pwned + ")",
		"`touch " + pwned + "`",
		"&& touch " + pwned,
		"| cat",
		"*",
		"$HOME",
		`'single' "double" \back`,
		"",
		"new\nline",
	}
	sw := mustNew(t, Config{On: append([]string{echo}, args...), Off: []string{echo}})
	if err := sw.On(context.Background()); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	if !slices.Equal(got, args) {
		t.Errorf("the program got\n%q\nwant\n%q", got, args)
	}
	if _, err := os.Stat(pwned); err == nil {
		t.Error("an argument was run as a command")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "minimal", cfg: Config{On: []string{"a"}, Off: []string{"b"}}},
		{name: "no on", cfg: Config{Off: []string{"b"}}, wantErr: "on: required"},
		{name: "no off", cfg: Config{On: []string{"a"}}, wantErr: "off: required"},
		{name: "empty program", cfg: Config{On: []string{""}, Off: []string{"b"}}, wantErr: "on: program name is empty"},
		{name: "empty state program", cfg: Config{On: []string{"a"}, Off: []string{"b"}, State: []string{"", "x"}}, wantErr: "state: program name is empty"},
		{name: "negative timeout", cfg: Config{On: []string{"a"}, Off: []string{"b"}, Timeout: -time.Second}, wantErr: "timeout: -1s is negative"},
		{name: "bad env name", cfg: Config{On: []string{"a"}, Off: []string{"b"}, Env: map[string]string{"A=B": "c"}}, wantErr: `env: "A=B" is no variable name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if s.cfg.Timeout != DefaultTimeout {
					t.Errorf("timeout %v, want the default", s.cfg.Timeout)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	tests := []struct {
		name        string
		settings    power.MapSettings
		wantErr     string
		wantTimeout time.Duration
		wantEnv     string
	}{
		{
			name:        "full",
			settings:    power.MapSettings{"on": []string{"relay", "1"}, "off": []string{"relay", "0"}, "state": []string{"relay-state"}, "timeout": "2s", "env": map[string]string{"RELAY": "x"}},
			wantTimeout: 2 * time.Second, wantEnv: "RELAY=x",
		},
		{name: "default timeout", settings: power.MapSettings{"on": []string{"a"}, "off": []string{"b"}}, wantTimeout: DefaultTimeout},
		{name: "string for a list", settings: power.MapSettings{"on": "relay 1", "off": []string{"b"}}, wantErr: "not a string: no shell"},
		{name: "number in a list", settings: power.MapSettings{"on": []any{"relay", 1}, "off": []string{"b"}}, wantErr: "cannot unmarshal number"},
		{name: "missing off", settings: power.MapSettings{"on": []string{"a"}}, wantErr: "off: required"},
		{name: "bad timeout", settings: power.MapSettings{"on": []string{"a"}, "off": []string{"b"}, "timeout": "10"}, wantErr: "timeout: time: missing unit"},
		{name: "zero timeout", settings: power.MapSettings{"on": []string{"a"}, "off": []string{"b"}, "timeout": "0s"}, wantErr: "timeout: 0s is not positive"},
		{name: "unknown key", settings: power.MapSettings{"on": []string{"a"}, "off": []string{"b"}, "shell": true}, wantErr: `unknown key "shell"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sw, err := power.Open(Driver, tt.settings)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := sw.(*Switch)
			if s.cfg.Timeout != tt.wantTimeout {
				t.Errorf("timeout %v, want %v", s.cfg.Timeout, tt.wantTimeout)
			}
			if tt.wantEnv != "" && s.env[len(s.env)-1] != tt.wantEnv {
				t.Errorf("last env entry %q, want %q", s.env[len(s.env)-1], tt.wantEnv)
			}
		})
	}
}

// TestYAML decodes settings the way an inventory loader would, to show
// the string refusal also holds there.
func TestYAML(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    []string
		wantErr string
	}{
		{name: "flow list", doc: `{on: [relay, "1; reboot"], off: [relay, "0"]}`, want: []string{"relay", "1; reboot"}},
		{name: "block list", doc: "on:\n  - relay\n  - $(id)\noff: [relay]\n", want: []string{"relay", "$(id)"}},
		{name: "string", doc: "on: relay 1\noff: [relay]\n", wantErr: "not a string: no shell"},
		{name: "map", doc: "on: {a: b}\noff: [relay]\n", wantErr: "sequence is expected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s settings
			err := yaml.UnmarshalWithOptions([]byte(tt.doc), &s, yaml.Strict())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.On, tt.want) {
				t.Errorf("on = %q, want %q", s.On, tt.want)
			}
		})
	}
}

func FuzzArgvJSON(f *testing.F) {
	for _, s := range []string{`["a","b c"]`, `"a b"`, ` "x"`, `[]`, `null`, `[1]`, `["\u0000"]`, `{"a":1}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var a argv
		if err := a.UnmarshalJSON(b); err != nil {
			return
		}
		if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '"' {
			panic("a JSON string was accepted as a command line")
		}
	})
}
