package coap_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	peerbuild "github.com/fudbench/fudbench/internal/peers"
	"github.com/fudbench/fudbench/link"
)

// Uploads over an impaired link: each client talks to libcoap 4.3.5's
// coap-server through a link.Forwarder that drops datagrams (both ways)
// and delays them.

// linkSZX is the block size of every upload over the link: 1024 bytes.
const linkSZX = 6

// startLibcoapQ starts libcoap 4.3.5's coap-server with dynamic resources
// and libcoap's block handling, single bodies and Q-Block (-L 7) on a free
// port, and waits until it answers. Its log (warnings) is shown if t
// fails.
func startLibcoapQ(t testing.TB, lc peerbuild.Libcoap) *libcoapServer {
	t.Helper()
	port := freePorts(t)
	s := &libcoapServer{p: peer{name: "udp", server: lc.Server, client: lc.Client}, client: lc.Client,
		addr: fmt.Sprintf("127.0.0.1:%d", port)}
	var log syncBuffer
	cmd := exec.Command(lc.Server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "16", "-L", "7", "-v", "4")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("coap-server's log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command(lc.Client, "-B", "1", "-m", "get", s.url("/")).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("coap-server not answering on %s", s.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// linkTo starts a forwarder to addr with cfg whose decisions come from
// stream round of cfg.Seed, so that every client of a round meets the
// same decisions for the same sequence of datagrams.
func linkTo(t testing.TB, addr string, cfg link.Config, round int) *link.Forwarder {
	t.Helper()
	f, err := link.Listen(addr, cfg, link.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f.Reseed(uint64(round))
	t.Cleanup(func() { f.Close() })
	return f
}

// linkBlock1 uploads img to path at addr with RFC 7959 Block1, one
// confirmable block at a time at RFC 7252's default transmission
// parameters. An exchange that ends without an answer after all its
// retransmissions sends the block again as a new request. resent counts
// the retransmissions and the blocks sent again.
func linkBlock1(ctx context.Context, addr, path string, img []byte) (resent int, err error) {
	c, err := coap.Dial(ctx, addr, nil, coap.Transmission{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.OnRetransmit = func(int) { resent++ }
	n := uint32((len(img) + coap.BlockSize(linkSZX) - 1) / coap.BlockSize(linkSZX))
	for num := uint32(0); num < n; {
		_, err := c.SendBlock(ctx, path, img, num, linkSZX, nil)
		switch {
		case errors.Is(err, coap.ErrNoResponse) && ctx.Err() == nil:
			resent++
			continue
		case err != nil:
			return resent, err
		}
		num++
	}
	return resent, nil
}

// linkQBlock1 uploads img to path at addr with Q-Block1 at RFC 9177's
// default parameters; resent counts the blocks sent more than once.
func linkQBlock1(ctx context.Context, addr, path string, img []byte) (resent int, err error) {
	c, err := coap.Dial(ctx, addr, nil, coap.Transmission{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	r, err := c.QPut(ctx, path, img, 0, linkSZX, nil, coap.QBlock{}, coap.QEvents{Sending: func(_ uint32, again bool) {
		if again {
			resent++
		}
	}})
	if err != nil {
		return resent, err
	}
	return resent, coap.Expect("PUT "+path, r, codes.Created, codes.Changed)
}

// sentBlock matches, in coap-client's debug log (-v 7), a request it
// wrote: the PDU line after "netif: sent", with its (Q-)Block1 number.
var sentBlock = regexp.MustCompile(`^v:1 t:\S+ c:PUT .*\b(?:Q-)?Block1:(\d+)/`)

// ccAnswer matches, in coap-client's debug log, a response handed to
// the program: the final answer of a block-wise PUT.
var ccAnswer = regexp.MustCompile(`process incoming (\d\.\d\d) response`)

// ccLog reads coap-client's debug log: the PUT requests it sent more than
// once for the same block, and the code of the last response it took
// ("" for none).
func ccLog(log []byte) (resent int, code string) {
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	seen := map[string]bool{}
	total := 0
	afterSend := false
	for sc.Scan() {
		line := sc.Text()
		if afterSend {
			if m := sentBlock.FindStringSubmatch(line); m != nil {
				seen[m[1]] = true
				total++
			}
		}
		if m := ccAnswer.FindStringSubmatch(line); m != nil {
			code = m[1]
		}
		afterSend = strings.Contains(line, "netif: sent")
	}
	return total - len(seen), code
}

// linkCoapClient runs coap-client -m put -b 1024 -f file with extra
// arguments (-N -L 5 for Q-Block1) towards addr and reads its debug log
// for the blocks it sent again and its final answer, which must be 2.01
// or 2.04 (coap-client exits 0 whatever the answer, and also when it
// gives up waiting, after 90 s in all by default, -B).
func linkCoapClient(ctx context.Context, client, addr, path, file string, extra ...string) (resent int, err error) {
	args := append([]string{"-v", "7", "-m", "put", "-b", strconv.Itoa(coap.BlockSize(linkSZX)), "-f", file}, extra...)
	args = append(args, "coap://"+addr+path)
	cmd := exec.CommandContext(ctx, client, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	resent, code := ccLog(out.Bytes())
	if err == nil && code != "2.01" && code != "2.04" {
		err = fmt.Errorf("final answer %q", code)
	}
	if err != nil {
		return resent, fmt.Errorf("coap-client %v: %w", extra, err)
	}
	return resent, nil
}

// linkClients are the clients BenchmarkLinkUpload compares.
var linkClients = []struct {
	name   string
	upload func(ctx context.Context, lc peerbuild.Libcoap, addr, path, file string, img []byte) (int, error)
}{
	{"fud-block1", func(ctx context.Context, _ peerbuild.Libcoap, addr, path, _ string, img []byte) (int, error) {
		return linkBlock1(ctx, addr, path, img)
	}},
	{"fud-qblock1", func(ctx context.Context, _ peerbuild.Libcoap, addr, path, _ string, img []byte) (int, error) {
		return linkQBlock1(ctx, addr, path, img)
	}},
	{"cc-block1", func(ctx context.Context, lc peerbuild.Libcoap, addr, path, file string, _ []byte) (int, error) {
		return linkCoapClient(ctx, lc.Client, addr, path, file)
	}},
	{"cc-qblock1", func(ctx context.Context, lc peerbuild.Libcoap, addr, path, file string, _ []byte) (int, error) {
		return linkCoapClient(ctx, lc.Client, addr, path, file, "-N", "-L", "5")
	}},
}

// linkImage is the size of the image BenchmarkLinkUpload uploads: 16
// blocks, so that a Block1 upload at 20 % loss (about 30 s) stays well
// within the 93 s (MAX_TRANSMIT_WAIT) after which coap-server 4.3.5 gives
// a Block1 body up, counted from its first block.
const linkImage = 16 << 10

// linkAttempts bounds the uploads tried, from the start each time, for one
// image in BenchmarkLinkUpload.
const linkAttempts = 5

// BenchmarkLinkUpload uploads the same image in 1024-byte blocks to
// libcoap 4.3.5's coap-server (-L 7) through a link.Forwarder with 0, 1, 5
// and 20 % loss in each direction and 40 ms delay each way, with four
// clients: this package's Block1 (confirmable, one block at a time) and
// Q-Block1 (QPut, bursts of non-confirmable blocks), and coap-client
// with Block1 and with Q-Block1 (-N -L 5), all at the RFCs' default
// timers. Round i of every client uses the forwarder's stream i of the
// same seed, so that the clients of a round meet the same decisions for
// the same sequence of datagrams. An upload that fails (the server gave
// up the body, or the client gave up) starts again from the first block,
// up to linkAttempts times, and its time runs on. Each upload is read
// back and compared (directly, not through the forwarder), then deleted.
//
// It reports the median seconds per upload (s), image bits per second
// over that median (goodput-kbit/s), and per upload, means: the blocks
// sent again (resent: retransmissions and blocks sent again for this
// package, the blocks of PUT requests coap-client logged sending more than
// once at -v 7) and the uploads started again (restarts); and the share of
// datagrams the forwarder dropped, both directions (lost-pct).
func BenchmarkLinkUpload(b *testing.B) {
	lc := peerbuild.NeedLibcoap(b)
	img := randomBytes(linkImage, 42)
	file := filepath.Join(b.TempDir(), "image")
	if err := os.WriteFile(file, img, 0o644); err != nil {
		b.Fatal(err)
	}
	for _, loss := range []link.Percent{0, 100, 500, 2000} {
		b.Run("loss"+strings.TrimSuffix(loss.String(), "%")+"pct", func(b *testing.B) {
			s := startLibcoapQ(b, lc)
			cfg := link.Config{Loss: loss, Delay: 40 * time.Millisecond, Seed: 7}
			for _, cl := range linkClients {
				b.Run(cl.name, func(b *testing.B) {
					var took []float64
					var resent, restarts int
					var st link.Stats
					path := "/" + cl.name
					for i := 0; b.Loop(); i++ {
						f := linkTo(b, s.addr, cfg, i)
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
						start := time.Now()
						n, tries := 0, 0
						for {
							tries++
							k, err := cl.upload(ctx, lc, f.Addr(), path, file, img)
							n += k
							if err == nil {
								break
							}
							if tries == linkAttempts || ctx.Err() != nil {
								cancel()
								b.Fatalf("round %d, attempt %d: %v", i, tries, err)
							}
							b.Logf("round %d, attempt %d: %v", i, tries, err)
						}
						d := time.Since(start)
						cancel()
						b.StopTimer()
						f.Close()
						fs := f.Stats()
						for dir := range st {
							st[dir].Datagrams += fs[dir].Datagrams
							st[dir].Lost += fs[dir].Lost
						}
						took = append(took, d.Seconds())
						resent += n
						restarts += tries - 1
						s.readBack(b, path, img)
						s.coapClient(b, path, "-m", "delete")
						b.Logf("round %d: %.2f s, %d attempts, resent %d, lost %d/%d to the server, %d/%d from it",
							i, d.Seconds(), tries, n, fs[link.ToDevice].Lost, fs[link.ToDevice].Datagrams,
							fs[link.FromDevice].Lost, fs[link.FromDevice].Datagrams)
						b.StartTimer()
					}
					m := median(took)
					b.ReportMetric(m, "s")
					b.ReportMetric(float64(len(img))*8/m/1000, "goodput-kbit/s")
					b.ReportMetric(float64(resent)/float64(len(took)), "resent")
					b.ReportMetric(float64(restarts)/float64(len(took)), "restarts")
					if all := st[0].Datagrams + st[1].Datagrams; all > 0 {
						b.ReportMetric(100*float64(st[0].Lost+st[1].Lost)/float64(all), "lost-pct")
					}
					b.ReportMetric(0, "ns/op")
				})
			}
		})
	}
}

// TestLinkUploadQBlockLossy pushes 32 KiB with QPut to libcoap 4.3.5's
// coap-server through a forwarder that drops 10 % of the datagrams each
// way, 10 ms away, reads the body back and compares it. With seed 4 the
// link drops the 8th datagram to the server (block 7 of the first burst)
// and the 23rd, so the server must list missing blocks (4.08) and the
// client send them again. NonTimeout is longer than coap-server's
// NON_RECEIVE_TIMEOUT (4 s): after a burst with a hole the client waits
// for the server's list rather than sending the next burst, which could
// open more holes than coap-server keeps track of (it records the blocks
// received as at most three ranges and gives the body up with 4.08 "Too
// many missing blocks" beyond that).
func TestLinkUploadQBlockLossy(t *testing.T) {
	lc := peerbuild.NeedLibcoap(t)
	s := startLibcoapQ(t, lc)
	f := linkTo(t, s.addr, link.Config{Loss: 1000, Delay: 10 * time.Millisecond, Seed: 4}, 0)
	img := randomBytes(32<<10, 9177)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := dial(t, f.Addr(), nil, coap.Transmission{})
	var resent, lists int
	r, err := c.QPut(ctx, "/lossy", img, 0, linkSZX, nil, coap.QBlock{NonTimeout: 5 * time.Second}, coap.QEvents{
		Sending: func(_ uint32, again bool) {
			if again {
				resent++
			}
		},
		Answer: func(_ *coap.Response, missing []uint32) {
			if missing != nil {
				lists++
			}
		},
	})
	if err != nil {
		t.Fatalf("QPut: %v", err)
	}
	if err := coap.Expect("PUT /lossy", r, codes.Created, codes.Changed); err != nil {
		t.Fatal(err)
	}
	st := f.Stats()
	t.Logf("lost %d of %d datagrams to the server, %d of %d from it; %d blocks sent again, %d missing-blocks lists",
		st[link.ToDevice].Lost, st[link.ToDevice].Datagrams, st[link.FromDevice].Lost, st[link.FromDevice].Datagrams, resent, lists)
	if st[link.ToDevice].Lost == 0 {
		t.Fatalf("the link dropped none of the %d datagrams to the server", st[link.ToDevice].Datagrams)
	}
	if resent == 0 || lists == 0 {
		t.Errorf("%d blocks sent again after %d missing-blocks lists, with %d blocks lost on the way to the server",
			resent, lists, st[link.ToDevice].Lost)
	}
	s.readBack(t, "/lossy", img)
}
