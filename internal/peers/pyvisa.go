package peers

import (
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// Pyvisa is Debian's PyVISA 1.11 with its pure-Python backend pyvisa-py
// 0.5 (python3-pyvisa, python3-pyvisa-py): the VISA client labs script
// SCPI instruments with, here the reference client of the bench supply
// emulator over TCP (TCPIP::HOST::PORT::SOCKET) and serial (ASRL).
type Pyvisa struct {
	Python  string // /usr/bin/python3, which has Debian's packages
	Version string // pyvisa.__version__
}

// Command runs a Python script with args (sys.argv[1:]).
func (p Pyvisa) Command(script string, args ...string) *exec.Cmd {
	return exec.Command(p.Python, append([]string{"-c", script}, args...)...)
}

var (
	pyvisaOnce sync.Once
	pyvisa     Pyvisa
	pyvisaWhy  string
)

func lookPyvisa() {
	p := Pyvisa{Python: "/usr/bin/python3"}
	out, err := p.Command("import pyvisa, pyvisa_py; pyvisa.ResourceManager('@py'); print(pyvisa.__version__)").CombinedOutput()
	if err != nil {
		pyvisaWhy = "PyVISA with the pyvisa-py backend does not run under " + p.Python + " (" + strings.TrimSpace(string(out)) + "; apt-get install python3-pyvisa python3-pyvisa-py, as .ci/run does)"
		return
	}
	p.Version = strings.TrimSpace(string(out))
	pyvisa = p
}

// NeedPyvisa returns PyVISA with pyvisa-py. Without it the test is skipped
// on a developer's machine and fails under CI=true.
func NeedPyvisa(t testing.TB) Pyvisa {
	t.Helper()
	pyvisaOnce.Do(lookPyvisa)
	if pyvisa.Python == "" {
		need(t, pyvisaWhy)
	}
	return pyvisa
}
