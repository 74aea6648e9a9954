package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// checkInvocation checks one fudbench command line of an example: the
// subcommand exists and takes every --flag the line gives it.
func checkInvocation(t *testing.T, where, line string) {
	t.Helper()
	args := strings.Fields(line)
	if len(args) < 2 {
		t.Errorf("%s: %q names no subcommand", where, line)
		return
	}
	sub := args[1]
	help, errOut, code := cli(t, sub, "--help")
	if code != 0 || !strings.Contains(help, "fudbench "+sub) {
		t.Errorf("%s: fudbench %s: no such command (exit %d): %s", where, sub, code, errOut)
		return
	}
	for _, a := range args[2:] {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		flag, _, _ := strings.Cut(a, "=")
		if !strings.Contains(help, "  "+flag+" ") && !strings.Contains(help, ", "+flag+" ") {
			t.Errorf("%s: fudbench %s has no flag %s", where, sub, flag)
		}
	}
}

var fudbenchLine = regexp.MustCompile(`(?:^|exec |/)(fudbench [a-z].*?)(?:'|$)`)

// invocations finds the fudbench command lines in a script.
func invocations(script string) []string {
	var out []string
	for _, l := range strings.Split(script, "\n") {
		if m := fudbenchLine.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// TestCIExamples: the GitHub Actions workflow and the GitLab CI job parse
// as YAML and every fudbench command they run exists with its flags.
func TestCIExamples(t *testing.T) {
	var gh struct {
		Jobs map[string]struct {
			Steps []struct {
				Run  string `yaml:"run"`
				Uses string `yaml:"uses"`
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	data, err := os.ReadFile("../../examples/ci/github-actions.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &gh); err != nil {
		t.Fatalf("github-actions.yml: %v", err)
	}
	var lines []string
	for _, j := range gh.Jobs {
		for _, s := range j.Steps {
			lines = append(lines, invocations(s.Run)...)
		}
	}
	var gl map[string]struct {
		Script []string `yaml:"script"`
	}
	data, err = os.ReadFile("../../examples/ci/gitlab-ci.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &gl); err != nil {
		t.Fatalf("gitlab-ci.yml: %v", err)
	}
	for _, j := range gl {
		for _, s := range j.Script {
			lines = append(lines, invocations(s)...)
		}
	}
	if len(lines) < 4 {
		t.Fatalf("found %d fudbench commands in the CI examples: %q", len(lines), lines)
	}
	for _, l := range lines {
		checkInvocation(t, "examples/ci", l)
	}
}

// TestSystemdExamples: the soak service and timer and the lab units pass
// systemd-analyze verify (with the test's binary where they name
// /usr/local/bin/fudbench), and the fudbench commands they start exist
// with their flags.
func TestSystemdExamples(t *testing.T) {
	units, _ := filepath.Glob("../../examples/systemd/*")
	lab, _ := filepath.Glob("../../examples/lab/*.service")
	units = append(units, lab...)
	if len(units) < 4 {
		t.Fatalf("units %v", units)
	}
	dir := t.TempDir()
	var copies []string
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "ExecStart=") {
				for _, inv := range invocations(strings.ReplaceAll(l, "$$", "$")) {
					checkInvocation(t, u, inv)
				}
			}
		}
		c := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(c, []byte(strings.ReplaceAll(string(data), "/usr/local/bin/fudbench", binary)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is needed under CI=true (Debian package systemd; bash .ci/run installs it)")
		}
		t.Skip("no systemd-analyze")
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, copies...)...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUdevExample: every rule of the udev example matches a tty by a USB
// adapter's identity and gives it a link under /dev/fudbench, in udev's
// KEY=="value" / KEY+="value" form.
func TestUdevExample(t *testing.T) {
	data, err := os.ReadFile("../../examples/udev/99-fudbench.rules")
	if err != nil {
		t.Fatal(err)
	}
	pair := regexp.MustCompile(`^([A-Z]+(?:\{[a-zA-Z_]+\})?)(==|!=|\+=|=|:=)"([^"]*)"$`)
	rules := 0
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		rules++
		keys := map[string]string{}
		for _, kv := range strings.Split(l, ", ") {
			m := pair.FindStringSubmatch(kv)
			if m == nil {
				t.Errorf("line %d: %q is not KEY==\"value\"", i+1, kv)
				continue
			}
			keys[m[1]+m[2]] = m[3]
		}
		if keys["SUBSYSTEM=="] != "tty" || keys["ATTRS{idVendor}=="] == "" || keys["ATTRS{idProduct}=="] == "" ||
			!strings.HasPrefix(keys["SYMLINK+="], "fudbench/") {
			t.Errorf("line %d: want a tty matched by vendor and product with a link under /dev/fudbench: %v", i+1, keys)
		}
	}
	if rules < 2 {
		t.Errorf("%d rules", rules)
	}
}
