package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	peerbuild "github.com/fudbench/fudbench/internal/peers"
	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

// qprepare prepares the resumable update of img on b and waits for the
// recovery bootloader; it returns the block to start from.
func qprepare(t *testing.T, b *Board, img []byte, szx uint8, tag []byte) uint32 {
	t.Helper()
	c := dial(t, b)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	digest := sha256.Sum256(img)
	p := fwproto.Prepare{Size: uint32(len(img)), Digest: digest[:], SZX: szx, Tag: tag}
	if b.Mode() == ModeApp {
		boots := b.Boots()
		if err := c.Prepare(ctx, p); err != nil {
			t.Fatal(err)
		}
		if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeRecovery {
			t.Fatalf("after prepare: %s, %v", m, err)
		}
	}
	st, err := c.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !fwproto.SameTransfer(st, p) {
		t.Fatalf("recovery reports another transfer: %+v", st)
	}
	return st.Next
}

// waitApp waits for the board to boot its app after boots and checks
// that it runs img.
func waitApp(t *testing.T, b *Board, boots uint32, img []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
		t.Fatalf("after the last block: mode %s, %v; cuts %+v", m, err, b.Cuts())
	}
	if got, want := runningDigest(t, b), sha256.Sum256(img); got != want {
		t.Fatalf("running digest %x, want the image's %x", got, want)
	}
}

// TestQBlock1Recovery: the recovery bootloader takes a Q-Block1 body in
// bursts, over a clean link and over a lossy one whose lost blocks it
// lists in 4.08s (at set ends, and after NON_RECEIVE_TIMEOUT when a burst's
// tail is lost).
func TestQBlock1Recovery(t *testing.T) {
	for _, tc := range []struct {
		name string
		loss link.Percent
		dtls bool
	}{{"clean", 0, false}, {"lossy-10pct", 1000, false}, {"dtls", 0, true}} {
		t.Run(tc.name, func(t *testing.T) {
			base := buildImage(t, "1.0.0", 1, 4<<10, 1)
			cfg := Config{NonReceiveTimeout: 300 * time.Millisecond}
			if tc.dtls {
				cfg.DTLSAddr = "127.0.0.1:0"
			}
			b := newBoard(t, cfg, base)
			img := buildImage(t, "2.0.0", 2, 40<<10+77, 2)
			tag := []byte{7, 7}
			next := qprepare(t, b, img, 6, tag)
			udp, dtls := b.Endpoints()
			addr := udp[0]
			var psk *coap.PSK
			if tc.dtls {
				addr, psk = dtls, &coap.PSK{Identity: b.Config().PSKIdentity, Key: b.Config().PSK}
			}
			var fw *link.Forwarder
			if tc.loss > 0 {
				var err error
				fw, err = link.Listen(addr, link.Config{Loss: tc.loss, Seed: 3}, link.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer fw.Close()
				addr = fw.Addr()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := coap.Dial(ctx, addr, psk, fastTx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			var resent, missing int
			boots := b.Boots()
			r, err := c.QPut(ctx, fwproto.PathFW, img, next, 6, tag, coap.QBlock{NonTimeout: 300 * time.Millisecond},
				coap.QEvents{
					Sending: func(_ uint32, again bool) {
						if again {
							resent++
						}
					},
					Answer: func(_ *coap.Response, m []uint32) { missing += len(m) },
				})
			if err != nil {
				t.Fatalf("QPut: %v (%+v)", err, r)
			}
			if r.Code != codes.Changed {
				t.Fatalf("final answer %v", r.Code)
			}
			waitApp(t, b, boots, img)
			if tc.loss > 0 {
				st := fw.Stats()
				if st[link.ToDevice].Lost == 0 || resent == 0 || missing == 0 {
					t.Errorf("lossy link: %d lost to the device, %d blocks re-sent, %d listed missing; want all > 0", st[link.ToDevice].Lost, resent, missing)
				}
				t.Logf("lost %d/%d to the device, %d/%d from it; %d blocks listed missing, %d re-sent",
					st[link.ToDevice].Lost, st[link.ToDevice].Datagrams, st[link.FromDevice].Lost, st[link.FromDevice].Datagrams, missing, resent)
			} else if resent != 0 {
				t.Errorf("clean link: %d blocks re-sent", resent)
			}
		})
	}
}

// TestQBlock1CutMidBurst: power goes while a burst is on the wire; the
// blocks held in RAM are gone, the journal says where to resume, and the
// rest of the body goes in bursts again.
func TestQBlock1CutMidBurst(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 4<<10, 1)
	b := newBoard(t, Config{TimeScale: 0.05}, base)
	img := buildImage(t, "2.0.0", 2, 30<<10, 3)
	tag := []byte{9}
	next := qprepare(t, b, img, 6, tag)
	udp, _ := b.Endpoints()
	ctx, cancel := cutCtx(b)
	defer cancel()
	c, err := coap.Dial(ctx, udp[0], nil, fastTx)
	if err != nil {
		t.Fatal(err)
	}
	const cutAt = 14 // inside the second set of 10
	_, err = c.QPut(ctx, fwproto.PathFW, img, next, 6, tag, coap.QBlock{NonTimeout: 300 * time.Millisecond}, coap.QEvents{
		Sending: func(num uint32, _ bool) {
			if num == cutAt {
				b.SetPower(false)
			}
		},
	})
	c.Close()
	if err == nil {
		t.Fatal("the transfer went through a power cut")
	}
	cuts := b.Cuts()
	if len(cuts) != 1 {
		t.Fatalf("cuts %+v", cuts)
	}
	powerOn(t, b, ModeRecovery)
	resume := qprepare(t, b, img, 6, tag)
	if resume == 0 || resume > cutAt {
		t.Fatalf("recovery resumes at block %d, want within 1..%d (cut record %+v)", resume, cutAt, cuts[0])
	}
	c2, err := coap.Dial(context.Background(), udp[0], nil, fastTx)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	boots := b.Boots()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if _, err := c2.QPut(ctx2, fwproto.PathFW, img, resume, 6, tag, coap.QBlock{NonTimeout: 300 * time.Millisecond}, coap.QEvents{}); err != nil {
		t.Fatal(err)
	}
	waitApp(t, b, boots, img)
	t.Logf("cut as block %d went out; resumed at block %d (last acknowledged %d)", cutAt, resume, cuts[0].LastAcked)
}

// qsend sends one non-confirmable Q-Block1 request for block num of img.
func qsend(t *testing.T, conn *net.UDPConn, img []byte, num uint32, szx uint8, tag []byte) {
	t.Helper()
	bs := uint32(16 << szx)
	n := (uint32(len(img)) + bs - 1) / bs
	end := min((num+1)*bs, uint32(len(img)))
	v := num<<4 | uint32(szx)
	if num+1 < n {
		v |= 8
	}
	var ob [4]byte
	opts := message.Options{{ID: message.URIPath, Value: []byte("fw")}}
	opts = opts.Add(message.Option{ID: message.QBlock1, Value: putUint(ob[:], v)})
	opts = opts.Add(message.Option{ID: message.RequestTag, Value: tag})
	var sb [4]byte
	opts = opts.Add(message.Option{ID: message.Size1, Value: putUint(sb[:], uint32(len(img)))})
	m := message.Message{Code: codes.PUT, Type: message.NonConfirmable, MessageID: int32(num + 100), Token: []byte{0xa0, byte(num)}, Options: opts, Payload: img[num*bs : end]}
	buf := make([]byte, 2048)
	k, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf[:k]); err != nil {
		t.Fatal(err)
	}
}

// qread reads the board's next answer.
func qread(t *testing.T, conn *net.UDPConn, wait time.Duration) *message.Message {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := conn.Read(buf)
	if err != nil {
		return nil
	}
	m := message.Message{Options: make(message.Options, 0, 16)}
	if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

// TestQBlock1Answers drives the receiver block by block: nothing inside a
// set, 2.31 at a whole set's end, 4.08 listing a gap, blocks out of order
// held and written once the gap is filled (2.31 then), a 4.08 of its own after
// NON_RECEIVE_TIMEOUT of silence, and 2.04 for the body.
func TestQBlock1Answers(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 4<<10, 1)
	b := newBoard(t, Config{MaxPayloads: 4, NonReceiveTimeout: 200 * time.Millisecond}, base)
	img := buildImage(t, "2.0.0", 2, 10<<10, 4) // 10 blocks of 1 KiB
	tag := []byte{1}
	if next := qprepare(t, b, img, 6, tag); next != 0 {
		t.Fatalf("fresh transfer starts at %d", next)
	}
	udp, _ := b.Endpoints()
	ua, _ := net.ResolveUDPAddr("udp", udp[0])
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	expect := func(what string, code codes.Code, missing []uint32) {
		t.Helper()
		m := qread(t, conn, 2*time.Second)
		if m == nil {
			t.Fatalf("%s: no answer, want %v", what, code)
		}
		if m.Code != code {
			t.Fatalf("%s: %v %q, want %v", what, m.Code, m.Payload, code)
		}
		if code == codes.RequestEntityIncomplete {
			got, err := coap.DecodeMissingBlocks(m.Payload, 100)
			if err != nil || !slices.Equal(got, missing) {
				t.Fatalf("%s: missing %v (%v), want %v", what, got, err, missing)
			}
		}
	}
	silent := func(what string) {
		t.Helper()
		if m := qread(t, conn, 50*time.Millisecond); m != nil {
			t.Fatalf("%s: answered %v, want nothing", what, m.Code)
		}
	}
	for i := uint32(0); i < 3; i++ {
		qsend(t, conn, img, i, 6, tag)
	}
	silent("blocks 0–2")
	qsend(t, conn, img, 3, 6, tag)
	expect("set 0–3 whole", codes.Continue, nil)
	qsend(t, conn, img, 4, 6, tag)
	qsend(t, conn, img, 6, 6, tag)
	qsend(t, conn, img, 7, 6, tag)
	expect("set 4–7 without 5", codes.RequestEntityIncomplete, []uint32{5})
	b.mu.Lock()
	r := b.ram
	b.mu.Unlock()
	b.cpu.Lock()
	next := r.next
	b.cpu.Unlock()
	if next != 5 {
		t.Fatalf("journal next %d after blocks 0–4, want 5", next)
	}
	qsend(t, conn, img, 5, 6, tag)
	expect("block 5 fills the gap (6, 7 held, written now)", codes.Continue, nil)
	// 8 is lost: the board's own timer asks for 8 and 9 (the rest of
	// the set it last heard of).
	expect("silence", codes.RequestEntityIncomplete, []uint32{8, 9})
	qsend(t, conn, img, 9, 6, tag)
	expect("last block, 8 missing", codes.RequestEntityIncomplete, []uint32{8})
	boots := b.Boots()
	qsend(t, conn, img, 8, 6, tag)
	expect("body whole", codes.Changed, nil)
	waitApp(t, b, boots, img)
}

// TestCoapClientQBlock1Upload: libcoap 4.3.5's coap-client (built with
// Q-Block) pushes an image with Q-Block1 to the plain Block1 firmware of
// the naive and A/B boards, confirmable and non-confirmable.
func TestCoapClientQBlock1Upload(t *testing.T) {
	lc := peerbuild.NeedLibcoap(t)
	for _, tc := range []struct {
		name     string
		strategy Strategy
		non      bool
		loss     link.Percent
	}{
		{"naive-con", NaiveInplace, false, 0},
		{"naive-non", NaiveInplace, true, 0},
		{"ab-overwrite-non", ABOverwrite, true, 0},
		// Lost blocks: the board lists them in a 4.08 of its own after
		// NON_RECEIVE_TIMEOUT, which is all coap-client waits for.
		{"naive-non-lossy", NaiveInplace, true, 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := buildImage(t, "1.0.0", 1, 4<<10, 1)
			b := newBoard(t, Config{Strategy: tc.strategy, NonReceiveTimeout: 500 * time.Millisecond}, base)
			img := buildImage(t, "2.0.0", 2, 30<<10+5, 5)
			file := filepath.Join(t.TempDir(), "fw.img")
			if err := os.WriteFile(file, img, 0o600); err != nil {
				t.Fatal(err)
			}
			udp, _ := b.Endpoints()
			addr := udp[0]
			var fw *link.Forwarder
			if tc.loss > 0 {
				var err error
				fw, err = link.Listen(addr, link.Config{Loss: tc.loss, Seed: 5}, link.Options{})
				if err != nil {
					t.Fatal(err)
				}
				defer fw.Close()
				addr = fw.Addr()
			}
			args := []string{"-B", "30", "-L", "5", "-v", "7", "-m", "put", "-b", "1024", "-f", file}
			if tc.non {
				args = append(args, "-N")
			}
			args = append(args, "coap://"+addr+"/fw")
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			boots := b.Boots()
			cmd := exec.CommandContext(ctx, lc.Client, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			log := out.String()
			if err != nil {
				t.Fatalf("coap-client: %v\n%s", err, log)
			}
			// coap-client probes with Q-Block2 on /.well-known/core (RFC
			// 9177 §4.1) and falls back to Block1 if the answer lacks it.
			if !strings.Contains(log, "Q-Block support available") || strings.Contains(log, "Replaced option Q-Block1 with Block1") ||
				!strings.Contains(log, fmt.Sprintf("Q-Block1:%d/_/1024", len(img)/1024)) {
				t.Errorf("coap-client did not send the body with Q-Block1:\n%s", tail(log, 60))
			}
			if fw != nil {
				st := fw.Stats()
				if st[link.ToDevice].Lost == 0 {
					t.Errorf("the lossy link lost nothing (%+v)", st)
				}
				t.Logf("lost %d of %d datagrams to the device, %d of %d from it", st[link.ToDevice].Lost, st[link.ToDevice].Datagrams, st[link.FromDevice].Lost, st[link.FromDevice].Datagrams)
			}
			waitApp(t, b, boots, img)
		})
	}
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// FuzzQBlock1Receiver drives the recovery bootloader's Q-Block1 receiver
// with any sequence of blocks: numbers in and past the body, confirmable
// or not, wrong More flags, block sizes and tags, short payloads. It must
// never hold more blocks than MaxPayloads, never move its journal past the
// body, and a body it takes whole must be the image.
func FuzzQBlock1Receiver(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0})
	f.Add([]byte{5, 1, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 4, 0, 0})
	f.Add([]byte{0, 2, 0, 0, 4, 0, 0, 8, 0, 7, 0, 9})
	f.Add([]byte{9, 0, 0, 8, 0, 0, 7, 0, 0, 6, 0, 0, 5, 0, 0, 4, 0, 0, 3, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0, 0})
	base := buildImage(f, "1.0.0", 1, 4<<10, 1)
	img := buildImage(f, "2.0.0", 2, 10<<10, 4) // 10 blocks of 1 KiB
	tag := []byte{1}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 3*64 {
			data = data[:3*64]
		}
		b := newBoard(t, Config{MaxPayloads: 4, NonReceiveTimeout: time.Hour}, base)
		qprepare(t, b, img, 6, tag)
		b.mu.Lock()
		ep, r := b.epoch, b.ram
		b.mu.Unlock()
		for i := 0; i+3 <= len(data); i += 3 {
			num, flags, cut := uint32(data[i]%16), data[i+1], data[i+2]
			szx, btag := uint8(6), tag
			if flags&4 != 0 {
				szx = 5
			}
			if flags&8 != 0 {
				btag = []byte{2}
			}
			bs := uint32(16 << szx)
			off := min(num*bs, uint32(len(img)))
			end := min(off+bs, uint32(len(img)))
			payload := img[off:end]
			if cut > 0 && int(cut) < len(payload) {
				payload = payload[:cut]
			}
			more := end < uint32(len(img))
			if flags&2 != 0 {
				more = !more
			}
			typ := message.NonConfirmable
			if flags&1 != 0 {
				typ = message.Confirmable
			}
			var vb, sb [4]byte
			v := num<<4 | uint32(szx)
			if more {
				v |= 8
			}
			req := &coapsrv.Request{Code: codes.PUT, Type: typ, MessageID: uint16(i), Token: []byte{byte(i)}, Path: fwproto.PathFW, Payload: payload,
				Options: message.Options{
					{ID: message.QBlock1, Value: putUint(vb[:], v)},
					{ID: message.Size1, Value: putUint(sb[:], uint32(len(img)))},
					{ID: message.RequestTag, Value: btag},
				}}
			b.serve(ep, req)
			if !b.alive(ep) {
				break // the body was taken whole: the board rebooted
			}
			b.cpu.Lock()
			held, next := len(r.q.held), r.next
			b.cpu.Unlock()
			if held > 4 {
				t.Fatalf("%d blocks held in RAM, MaxPayloads 4", held)
			}
			if next > 10 {
				t.Fatalf("journal at block %d of a 10-block body", next)
			}
		}
		if !b.alive(ep) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if m, err := b.WaitMode(ctx, ModeApp, ModeRecovery, ModeHalted); err != nil || m == ModeHalted {
				t.Fatalf("after the body: %s %v", m, err)
			}
			if m := b.Mode(); m == ModeApp {
				if got, want := runningDigest(t, b), sha256.Sum256(img); got != want {
					t.Fatalf("running %x, not the image", got)
				}
			}
		}
	})
}
