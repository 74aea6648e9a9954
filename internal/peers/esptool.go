package peers

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Esptool is Espressif's esptool v4.12.0, run from its source tree with
// Debian's Python (python3-serial, python3-intelhex): the reference
// client of the ESP ROM serial loader.
type Esptool struct {
	Python string // /usr/bin/python3
	Script string // .../esptool-v4.12.0/esptool.py
}

// Command is esptool with args: exec.Command(Python, Script, args...).
func (e Esptool) Command(args ...string) *exec.Cmd {
	return exec.Command(e.Python, append([]string{e.Script}, args...)...)
}

var (
	esptoolOnce sync.Once
	esptool     Esptool
	esptoolWhy  string
)

func lookEsptool() {
	e := Esptool{Python: "/usr/bin/python3", Script: filepath.Join(cacheDir(), "esptool-v4.12.0", "esptool.py")}
	out, err := e.Command("version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "4.12.0") {
		esptoolWhy = "esptool v4.12.0 is not unpacked or does not run (" + e.Script + ": " + strings.TrimSpace(string(out)) + "; bash .ci/run unpacks it; it needs Debian's python3-serial and python3-intelhex)"
		return
	}
	esptool = e
}

// NeedEsptool returns esptool v4.12.0. Without it the test is skipped on
// a developer's machine and fails under CI=true.
func NeedEsptool(t testing.TB) Esptool {
	t.Helper()
	esptoolOnce.Do(lookEsptool)
	if esptool.Script == "" {
		need(t, esptoolWhy)
	}
	return esptool
}
