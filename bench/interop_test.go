package bench_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/results"
)

// needTool finds a peer program; without it the test skips on a laptop
// and fails under CI, where .ci/run installs it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (Debian libcoap3-bin); CI must have it", name)
		}
		t.Skipf("%s not installed (Debian libcoap3-bin)", name)
	}
	return p
}

// freePorts returns a UDP port p with p+1 also free (libcoap puts DTLS on
// port+1).
func freePorts(t *testing.T) int {
	for i := 0; i < 50; i++ {
		a, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := a.LocalAddr().(*net.UDPAddr).Port
		b, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(p+1))
		a.Close()
		if err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// TestBlock1ToLibcoapServer pushes 1 MiB with the block1 profile to
// libcoap's coap-server (dynamic resources) over UDP and DTLS-PSK and
// reads it back with libcoap's coap-client: identical bytes.
func TestBlock1ToLibcoapServer(t *testing.T) {
	data := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	key := []byte("interop-secret")
	for _, tc := range []struct {
		name   string
		server string
		client string
		dtls   bool
	}{
		{"udp", "coap-server-notls", "coap-client-notls", false},
		{"dtls-psk", "coap-server-openssl", "coap-client-openssl", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := needTool(t, tc.server)
			cli := needTool(t, tc.client)
			port := freePorts(t)
			args := []string{"-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "4", "-v", "0"}
			if tc.dtls {
				args = append(args, "-k", string(key))
			}
			cmd := exec.Command(srv, args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			ep := bench.Endpoint{Addr: fmt.Sprintf("127.0.0.1:%d", port), Tx: coap.Transmission{AckTimeout: 500 * time.Millisecond}}
			scheme := "coap"
			if tc.dtls {
				ep.Addr = fmt.Sprintf("127.0.0.1:%d", port+1)
				ep.PSK = &coap.PSK{Identity: "bench", Key: key}
				scheme = "coaps"
			}
			b := bench.NewBoard("coap-server", nil, ep, boards.ProfileBlock1, bench.NewHub(results.NewClock(), nil))
			var res *bench.Result
			deadline := time.Now().Add(10 * time.Second)
			for {
				// The server needs a moment to bind.
				res = b.Run(context.Background(), bench.Update{Profile: boards.ProfileBlock1, Image: data, SZX: 6, Path: "/upload", NoVerify: true})
				if res.Err == nil || time.Now().After(deadline) || res.BlocksSent > 1 {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if res.BlocksSent != 1024 {
				t.Errorf("%d blocks sent, want 1024", res.BlocksSent)
			}
			out := filepath.Join(t.TempDir(), "back")
			cargs := []string{"-m", "get", "-B", "20", "-o", out}
			if tc.dtls {
				cargs = append(cargs, "-k", string(key), "-u", "reader")
			}
			cargs = append(cargs, fmt.Sprintf("%s://%s/upload", scheme, ep.Addr))
			if msg, err := exec.Command(cli, cargs...).CombinedOutput(); err != nil {
				t.Fatalf("coap-client get: %v\n%s", err, msg)
			}
			back, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, data) {
				t.Fatalf("read back %d bytes, not identical to the %d uploaded", len(back), len(data))
			}
			t.Logf("1 MiB in 1024-byte blocks over %s: %v", tc.name, res.Transfer)
		})
	}
}
