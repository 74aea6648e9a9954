package coap_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
)

// needTool finds a libcoap program; without it the test skips on a laptop
// and fails under CI, where libcoap3-bin is installed.
func needTool(t testing.TB, name string) string {
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

// peer is one flavour of libcoap's example programs.
type peer struct {
	name   string // udp, dtls
	server string
	client string
	dtls   bool
}

var peers = []peer{
	{"udp", "coap-server-notls", "coap-client-notls", false},
	{"dtls", "coap-server-openssl", "coap-client-openssl", true},
}

const peerKey = "peer-bench-secret"

// libcoapServer is a running coap-server with dynamic resources.
type libcoapServer struct {
	p      peer
	client string // coap-client path
	addr   string // CoAP endpoint: the DTLS one for a dtls peer
	psk    *coap.PSK
}

func (s *libcoapServer) url(path string) string {
	if s.p.dtls {
		return "coaps://" + s.addr + path
	}
	return "coap://" + s.addr + path
}

// clientArgs are coap-client's arguments for method m on path.
func (s *libcoapServer) clientArgs(path string, args ...string) []string {
	if s.p.dtls {
		args = append(args, "-k", peerKey, "-u", "client")
	}
	return append(args, s.url(path))
}

// coapClient runs coap-client and returns its wall time.
func (s *libcoapServer) coapClient(t testing.TB, path string, args ...string) time.Duration {
	took, _ := s.coapClientCPU(t, path, args...)
	return took
}

// coapClientCPU runs coap-client and returns its wall and CPU (user and
// system) time.
func (s *libcoapServer) coapClientCPU(t testing.TB, path string, args ...string) (wall, cpu time.Duration) {
	t.Helper()
	cmd := exec.Command(s.client, s.clientArgs(path, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	wall = time.Since(start)
	if err != nil {
		t.Fatalf("coap-client %v: %v\n%s", args, err, out)
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// cpuTime is this process's CPU time so far (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readBack fetches path with coap-client and compares it with want.
func (s *libcoapServer) readBack(t testing.TB, path string, want []byte) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "back")
	s.coapClient(t, path, "-m", "get", "-B", "60", "-o", out)
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s read back %d bytes, not identical to the %d uploaded", path, len(got), len(want))
	}
}

// startLibcoap starts coap-server for p on a free port pair (libcoap puts
// DTLS on port+1) and waits until it answers.
func startLibcoap(t testing.TB, p peer) *libcoapServer {
	t.Helper()
	srv := needTool(t, p.server)
	cli := needTool(t, p.client)
	port := freePorts(t)
	args := []string{"-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "64", "-v", "0"}
	if p.dtls {
		args = append(args, "-k", peerKey)
	}
	cmd := exec.Command(srv, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &libcoapServer{p: p, client: cli, addr: fmt.Sprintf("127.0.0.1:%d", port)}
	if p.dtls {
		s.addr = fmt.Sprintf("127.0.0.1:%d", port+1)
		s.psk = &coap.PSK{Identity: "bench", Key: []byte(peerKey)}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := exec.Command(cli, s.clientArgs("/", "-m", "get", "-B", "1")...).Run()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering on %s: %v", p.server, s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePorts returns a UDP port p with p+1 also free.
func freePorts(t testing.TB) int {
	t.Helper()
	for range 50 {
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

// uploadTo dials s afresh (a DTLS handshake included), uploads img to path
// in blocks of 16<<szx and closes: what one coap-client PUT does.
func uploadTo(t testing.TB, s *libcoapServer, path string, img []byte, szx uint8) time.Duration {
	took, _ := uploadCPU(t, s, path, img, szx)
	return took
}

// uploadCPU is uploadTo that also returns the process's CPU time spent.
func uploadCPU(t testing.TB, s *libcoapServer, path string, img []byte, szx uint8) (took, cpu time.Duration) {
	t.Helper()
	cpu0 := cpuTime()
	defer func() { cpu = cpuTime() - cpu0 }()
	start := time.Now()
	c, err := coap.Dial(context.Background(), s.addr, s.psk, coap.Transmission{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = upload(context.Background(), c, path, img, szx)
	c.Close()
	took = time.Since(start)
	if err != nil {
		t.Fatalf("upload %s: %v", path, err)
	}
	return took, 0
}

// TestLibcoapPeers uploads to libcoap's coap-server over UDP and DTLS-PSK
// in two block sizes, reads the resource back with coap-client, and reads
// the server's own resource.
func TestLibcoapPeers(t *testing.T) {
	img := randomBytes(96<<10+123, 4)
	for _, p := range peers {
		t.Run(p.name, func(t *testing.T) {
			s := startLibcoap(t, p)
			for _, szx := range []uint8{2, 6} {
				path := fmt.Sprintf("/t%d", szx)
				uploadTo(t, s, path, img, szx)
				s.readBack(t, path, img)
			}
			c := dial(t, s.addr, s.psk, coap.Transmission{AckTimeout: 500 * time.Millisecond})
			r, err := c.Get(context.Background(), "/")
			if err != nil {
				t.Fatal(err)
			}
			if r.Code != codes.Content || !bytes.Contains(r.Payload, []byte("libcoap")) {
				t.Fatalf("GET /: %v %q", r.Code, r.Payload)
			}
			if s.psk != nil && c.DTLSRecords() != "client" {
				t.Errorf("records sealed by %q, want the client's own record path", c.DTLSRecords())
			}
		})
	}
}

// BenchmarkPeersBlock1 compares the block1 upload of this package with
// libcoap's coap-client, both to libcoap's coap-server, for 256 KiB and
// 4 MiB in 64-, 256- and 1024-byte blocks over UDP and DTLS-PSK. Each
// round runs, alternately, `coap-client -m put -b SIZE -f FILE` (a process,
// wall time), an in-process upload (dial, DTLS handshake, every block,
// close) and `coap-client -m get` of the server's small root resource
// (process start, handshake and one exchange: coap-client's fixed cost).
// It reports medians over the rounds (-benchtime Nx): fud-s, cc-s,
// cc-start-s, ratio = fud-s/cc-s and ratio-net = fud-s/(cc-s - cc-start-s),
// which charges coap-client nothing for starting, and the CPU time (user and
// system) of each side: fud-cpu-s for this test process during the upload,
// cc-cpu-s for the coap-client process; CPU time is less disturbed by a
// busy machine than wall time. Each case reads the uploaded resource back
// once and compares it.
func BenchmarkPeersBlock1(b *testing.B) {
	dir := b.TempDir()
	type file struct {
		name string
		path string
		data []byte
	}
	var files []file
	for _, sz := range []struct {
		name string
		n    int
	}{{"256KiB", 256 << 10}, {"4MiB", 4 << 20}} {
		f := file{name: sz.name, path: filepath.Join(dir, sz.name), data: randomBytes(sz.n, uint64(sz.n))}
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			b.Fatal(err)
		}
		files = append(files, f)
	}
	for _, p := range peers {
		b.Run(p.name, func(b *testing.B) {
			s := startLibcoap(b, p)
			for _, f := range files {
				for _, szx := range []uint8{2, 4, 6} {
					bs := 16 << szx
					b.Run(fmt.Sprintf("%s/block%d", f.name, bs), func(b *testing.B) {
						fudPath := fmt.Sprintf("/fud-%s-%d", f.name, bs)
						ccPath := fmt.Sprintf("/cc-%s-%d", f.name, bs)
						var fud, cc, base, fudCPU, ccCPU []float64
						runCC := func() {
							w, c := s.coapClientCPU(b, ccPath, "-m", "put", "-b", strconv.Itoa(bs), "-f", f.path)
							cc, ccCPU = append(cc, w.Seconds()), append(ccCPU, c.Seconds())
						}
						runFud := func() {
							w, c := uploadCPU(b, s, fudPath, f.data, szx)
							fud, fudCPU = append(fud, w.Seconds()), append(fudCPU, c.Seconds())
						}
						for i := 0; b.Loop(); i++ {
							if i%2 == 0 {
								runCC()
								runFud()
							} else {
								runFud()
								runCC()
							}
							base = append(base, s.coapClient(b, "/", "-m", "get").Seconds())
							if i == 0 {
								b.StopTimer()
								s.readBack(b, fudPath, f.data)
								b.StartTimer()
							}
						}
						fm, cm, bm := median(fud), median(cc), median(base)
						b.ReportMetric(fm, "fud-s")
						b.ReportMetric(cm, "cc-s")
						b.ReportMetric(bm, "cc-start-s")
						b.ReportMetric(fm/cm, "ratio")
						if cm > bm {
							b.ReportMetric(fm/(cm-bm), "ratio-net")
						}
						b.ReportMetric(median(fudCPU), "fud-cpu-s")
						b.ReportMetric(median(ccCPU), "cc-cpu-s")
						b.ReportMetric(0, "ns/op")
					})
				}
			}
		})
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
