package main

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionCommand runs `version`, `--version` and `version --json`:
// the same version and commit in each. The tests' binary is stamped by
// the go command in a plain git checkout and not in a worktree, so both
// forms are accepted.
func TestVersionCommand(t *testing.T) {
	out, errOut, code := cli(t, "version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, errOut)
	}
	re := regexp.MustCompile(`^fudbench ` + regexp.QuoteMeta(version) + ` \(commit (unknown|([0-9a-f]{7})(, [0-9TZ:-]+)?(, modified)?)\)\n$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("version printed %q", out)
	}
	flag, _, code := cli(t, "--version")
	if code != 0 || flag != out {
		t.Errorf("--version: exit %d, %q; version printed %q", code, flag, out)
	}
	js, errOut, code := cli(t, "version", "--json")
	if code != 0 {
		t.Fatalf("version --json: exit %d: %s", code, errOut)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(js), &v); err != nil {
		t.Fatalf("version --json: %v: %q", err, js)
	}
	for _, k := range []string{"version", "commit", "time", "modified", "go"} {
		if _, ok := v[k]; !ok {
			t.Errorf("version --json lacks %q: %s", k, js)
		}
	}
	if v["version"] != version || v["go"] != runtime.Version() {
		t.Errorf("version --json: %s", js)
	}
	switch c := v["commit"].(type) {
	case nil:
		if m[1] != "unknown" {
			t.Errorf("text says %q, JSON has no commit", m[1])
		}
	case string:
		if !strings.HasPrefix(c, m[2]) || m[2] == "" {
			t.Errorf("text says %q, JSON commit %q", m[1], c)
		}
	default:
		t.Errorf("commit %v (%T)", c, c)
	}
	if _, _, code := cli(t, "version", "extra"); code != 2 {
		t.Errorf("version with an argument: exit %d, want 2", code)
	}
}

// TestVersionLdflagsCommit builds the binary the way a release does
// without VCS stamping: the commit comes from -X main.commit.
func TestVersionLdflagsCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a second binary")
	}
	bin := filepath.Join(t.TempDir(), "fudbench")
	const rev = "0123456789abcdef0123456789abcdef01234567"
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags", "-X main.commit="+rev, "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "--version").Output()
	if want := "fudbench " + version + " (commit 0123456)\n"; err != nil || string(out) != want {
		t.Errorf("--version: %v %q, want %q", err, out, want)
	}
	out, err = exec.Command(bin, "version", "--json").Output()
	want := `{"version":"` + version + `","commit":"` + rev + `","time":null,"modified":null,"go":"` + runtime.Version() + `"}` + "\n"
	if err != nil || string(out) != want {
		t.Errorf("version --json: %v\n got %s\nwant %s", err, out, want)
	}
}

func TestVersionFrom(t *testing.T) {
	stamp := func(kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{}
		for i := 0; i < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	const rev = "96edfa193f82e31ea3d9591b7f461f975c776768"
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ld   string
		want string
	}{
		{"stamped, modified", stamp("vcs", "git", "vcs.revision", rev, "vcs.time", "2026-12-02T04:39:17Z", "vcs.modified", "true"), "", "(commit 96edfa1, 2026-12-02T04:39:17Z, modified)"},
		{"stamped, clean", stamp("vcs.revision", rev, "vcs.time", "2026-12-02T04:39:17Z", "vcs.modified", "false"), "", "(commit 96edfa1, 2026-12-02T04:39:17Z)"},
		{"stamp wins over -X", stamp("vcs.revision", rev, "vcs.modified", "false"), "ffffffffffffffffffffffffffffffffffffffff", "(commit 96edfa1)"},
		{"-X hash", stamp("-compiler", "gc"), rev, "(commit 96edfa1)"},
		{"-X describe", nil, " v0.1.0-3-g96edfa1\n", "(commit v0.1.0-3-g96edfa1)"},
		{"-X not a hash", nil, strings.Repeat("g", 40), "(commit " + strings.Repeat("g", 40) + ")"},
		{"no build info", nil, "", "(commit unknown)"},
		{"time without revision", stamp("vcs.time", "2026-12-02T04:39:17Z", "vcs.modified", "true"), "", "(commit unknown)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := versionFrom(tc.bi, tc.ld)
			if got, want := v.String(), version+" "+tc.want; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
