// Package peers finds the programs written by others that tests use as
// real peers and that Debian does not ship: libcoap 4.3.5 built with
// OSCORE, Q-Block and DTLS, the mcumgr CLI and MCUboot's serial recovery
// built for the host (.ci/run builds them once into a cache outside the
// repository). A test that needs a peer skips without it on a
// developer's machine and fails under CI=true, where .ci/run provides it.
package peers

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Libcoap is a libcoap 4.3.5 build: its example client and server.
type Libcoap struct {
	Client string // coap-client
	Server string // coap-server
}

var (
	once  sync.Once
	found Libcoap
	why   string
)

// libcoapDir is where .ci/run leaves the build: $FUDBENCH_LIBCOAP, else
// the peers cache.
func libcoapDir() string {
	if d := os.Getenv("FUDBENCH_LIBCOAP"); d != "" {
		return d
	}
	cache := os.Getenv("XDG_CACHE_HOME")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache")
	}
	return filepath.Join(cache, "fudbench-peers", "libcoap-4.3.5", "build")
}

func look() {
	dir := libcoapDir()
	l := Libcoap{Client: filepath.Join(dir, "coap-client"), Server: filepath.Join(dir, "coap-server")}
	for _, p := range []string{l.Client, l.Server} {
		if _, err := os.Stat(p); err != nil {
			why = "libcoap 4.3.5 not built (" + p + " missing; bash .ci/run builds it)"
			return
		}
	}
	// The help text names the features the build has.
	out, _ := exec.Command(l.Client, "-h").CombinedOutput()
	if !strings.Contains(string(out), "Have OSCORE") {
		why = "libcoap at " + dir + " was built without OSCORE"
		return
	}
	found = l
}

// NeedLibcoap returns the libcoap 4.3.5 build, or skips t (fails it
// under CI=true) when there is none.
func NeedLibcoap(t testing.TB) Libcoap {
	t.Helper()
	once.Do(look)
	if found.Client == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; CI must have it", why)
		}
		t.Skip(why)
	}
	return found
}
