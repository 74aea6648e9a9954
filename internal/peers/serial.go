package peers

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Serial-flashing peers (../shared/peers/serial.md), which .ci/run builds
// into the peers cache: Apache Mynewt's mcumgr CLI (an SMP client), and
// MCUboot v2.4.0's own serial recovery (boot_serial.c and bootutil,
// unmodified) built for Linux with a pty for its UART and a file for its
// flash, with the MCUboot tree it came from (scripts/imgtool.py signs
// test images).
type MCUboot struct {
	Host    string // mcuboot-serial-host: -f FLASH -p PTYLINK [-s SLOT -S SECTOR -a ALIGN -x -T TRACE]
	Source  string // the extracted mcuboot-v2.4.0 tree
	Imgtool string // Source/scripts/imgtool.py, to run with /usr/bin/python3
}

// cacheDir is the peers cache: $FUDBENCH_PEERS_CACHE, else
// ${XDG_CACHE_HOME:-~/.cache}/fudbench-peers.
func cacheDir() string {
	if d := os.Getenv("FUDBENCH_PEERS_CACHE"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "fudbench-peers")
}

var (
	serialOnce sync.Once
	mcumgr     string
	mcumgrWhy  string
	mcuboot    MCUboot
	mcubootWhy string
)

func lookSerial() {
	dir := cacheDir()
	p := filepath.Join(dir, "mcumgr", "mcumgr")
	if out, err := exec.Command(p, "version").CombinedOutput(); err != nil {
		mcumgrWhy = "the mcumgr CLI is not built (" + p + ": " + err.Error() + " " + string(out) + "; bash .ci/run builds it)"
	} else {
		mcumgr = p
	}
	m := MCUboot{
		Host:   filepath.Join(dir, "mcuboot-serial-host", "mcuboot-serial-host"),
		Source: filepath.Join(dir, "mcuboot-v2.4.0"),
	}
	m.Imgtool = filepath.Join(m.Source, "scripts", "imgtool.py")
	for _, f := range []string{m.Host, m.Imgtool} {
		if _, err := os.Stat(f); err != nil {
			mcubootWhy = "MCUboot's serial recovery host build is missing (" + f + "; bash .ci/run builds it)"
			return
		}
	}
	mcuboot = m
}

// NeedMcumgr returns the path of the mcumgr CLI. Without it the test is
// skipped on a developer's machine and fails under CI=true.
func NeedMcumgr(t testing.TB) string {
	t.Helper()
	serialOnce.Do(lookSerial)
	if mcumgr == "" {
		need(t, mcumgrWhy)
	}
	return mcumgr
}

// NeedMCUboot returns MCUboot's serial recovery built for the host. Without
// it the test is skipped on a developer's machine and fails under CI=true.
func NeedMCUboot(t testing.TB) MCUboot {
	t.Helper()
	serialOnce.Do(lookSerial)
	if mcuboot.Host == "" {
		need(t, mcubootWhy)
	}
	return mcuboot
}

func need(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s; CI must have it", why)
	}
	t.Skip(why)
}
