package bench_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/power/powertest"
	"github.com/fudbench/fudbench/results"
)

// A hostile device: a real UDP socket on loopback that speaks CoAP with
// go-coap's message codec and follows the resumable protocol well enough
// to get a transfer going, with a hook that lets each test make it
// misbehave in one way. The bench must end every such update in bounded
// time, without panicking, with the reason in Result.Err and the events,
// and never blame itself (Result.Infra) for the device's behaviour.

// hreq is a request as the device decoded it.
type hreq struct {
	Code    codes.Code
	Path    string
	Block1  *coap.Block
	Tag     []byte
	Payload []byte
}

// hresp is what the device sends back. Raw, when set, is sent as it is
// instead of an encoded CoAP message.
type hresp struct {
	Code    codes.Code
	Payload []byte
	Block1  *uint32 // raw Block1 option value
	Size1   *uint32
	Token   []byte // replaces the request's token when set
	MIDAdd  uint16 // added to the request's message ID
	Raw     []byte
	Silent  bool
}

// protoDevice is the well-behaved part: app mode until prepared, then
// recovery taking blocks in order; the last block makes the new image run.
type protoDevice struct {
	mu       sync.Mutex
	recovery bool
	prep     fwproto.Prepare
	next     uint32
	got      []byte
	running  []byte // digest of the running image
	// hook answers in its place when it returns ok; post changes an
	// answer of the protocol logic.
	hook func(d *protoDevice, r hreq) (resp *hresp, ok bool)
	post func(r hreq, resp *hresp)
}

func (d *protoDevice) state() fwproto.State {
	return fwproto.State{Mode: fwproto.ModeRecovery, State: fwproto.StateReceiving, Size: d.prep.Size, Digest: d.prep.Digest, SZX: d.prep.SZX, Tag: d.prep.Tag, Next: d.next}
}

func cborResp(code codes.Code, v any) *hresp {
	return &hresp{Code: code, Payload: fwproto.MustMarshal(v)}
}

func (d *protoDevice) handle(r hreq) *hresp {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hook != nil {
		if resp, ok := d.hook(d, r); ok {
			return resp
		}
	}
	resp := d.proto(r)
	if d.post != nil {
		d.post(r, resp)
	}
	return resp
}

func (d *protoDevice) proto(r hreq) *hresp {
	switch {
	case r.Code == codes.GET && r.Path == fwproto.PathBoot:
		mode := fwproto.ModeApp
		if d.recovery {
			mode = fwproto.ModeRecovery
		}
		return cborResp(codes.Content, fwproto.Boot{Mode: mode, Boots: 1, ResetCause: fwproto.ResetSoftware, Version: "1.0.0"})
	case r.Code == codes.GET && r.Path == fwproto.PathVersion && !d.recovery:
		return cborResp(codes.Content, fwproto.Version{Version: "1.0.0", Seq: 1, Digest: d.running, Mode: fwproto.ModeApp})
	case r.Code == codes.POST && r.Path == fwproto.PathPrepare:
		p, err := fwproto.DecodePrepare(r.Payload)
		if err != nil {
			return &hresp{Code: codes.BadRequest}
		}
		d.prep, d.next, d.got, d.recovery = p, 0, nil, true
		return &hresp{Code: codes.Changed}
	case r.Code == codes.GET && r.Path == fwproto.PathState && d.recovery:
		return cborResp(codes.Content, d.state())
	case r.Code == codes.PUT && r.Path == fwproto.PathFW && d.recovery && r.Block1 != nil:
		b := r.Block1
		echo := b.Num<<4 | uint32(b.SZX)
		if b.More {
			echo |= 8
		}
		switch {
		case b.Num < d.next:
			return &hresp{Code: codes.Continue, Block1: &echo}
		case b.Num > d.next || !bytes.Equal(r.Tag, d.prep.Tag):
			return cborResp(codes.RequestEntityIncomplete, d.state())
		}
		d.got = append(d.got, r.Payload...)
		d.next++
		if b.More {
			return &hresp{Code: codes.Continue, Block1: &echo}
		}
		sum := sha256.Sum256(d.got)
		if !bytes.Equal(sum[:], d.prep.Digest) {
			return cborResp(codes.BadRequest, fwproto.Failure{State: fwproto.StateFailed, Error: "digest"})
		}
		d.recovery, d.running = false, sum[:]
		return &hresp{Code: codes.Changed, Block1: &echo}
	}
	return &hresp{Code: codes.NotFound}
}

// startHostile serves dev on a loopback UDP port until the test ends.
func startHostile(t *testing.T, dev *protoDevice) string {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { conn.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, peer, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			m := message.Message{Options: make(message.Options, 0, 16)}
			if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil || m.Type != message.Confirmable {
				continue
			}
			r := hreq{Code: m.Code, Payload: append([]byte(nil), m.Payload...)}
			r.Path, _ = m.Options.Path()
			if v, err := m.Options.GetUint32(message.Block1); err == nil {
				r.Block1 = &coap.Block{Num: v >> 4, More: v&8 != 0, SZX: uint8(v & 7)}
			}
			r.Tag, _ = m.Options.GetBytes(fwproto.OptionRequestTag)
			resp := dev.handle(r)
			if resp == nil || resp.Silent {
				continue
			}
			out := resp.Raw
			if out == nil {
				out = encodeResp(t, m, resp)
			}
			conn.WriteToUDP(out, peer)
		}
	}()
	return conn.LocalAddr().String()
}

func encodeResp(t *testing.T, req message.Message, r *hresp) []byte {
	tok := req.Token
	if r.Token != nil {
		tok = r.Token
	}
	var opts message.Options
	uintOpt := func(id message.OptionID, v uint32) {
		b := make([]byte, 4)
		n, _ := message.EncodeUint32(b, v)
		opts = append(opts, message.Option{ID: id, Value: b[:n]})
	}
	if r.Payload != nil {
		uintOpt(message.ContentFormat, fwproto.MediaTypeCBOR)
	}
	if r.Block1 != nil {
		uintOpt(message.Block1, *r.Block1)
	}
	if r.Size1 != nil {
		uintOpt(message.Size1, *r.Size1)
	}
	m := message.Message{Code: r.Code, Token: tok, Type: message.Acknowledgement, MessageID: req.MessageID + int32(r.MIDAdd), Options: opts, Payload: r.Payload}
	size, err := coder.DefaultCoder.Size(m)
	if err != nil {
		t.Error(err)
		return nil
	}
	b := make([]byte, size)
	if _, err := coder.DefaultCoder.Encode(m, b); err != nil {
		t.Error(err)
		return nil
	}
	return b
}

// afterBlock cuts once block n is acknowledged (the cut kinds proper live
// in package jobs).
type afterBlock struct{ n uint32 }

func (t *afterBlock) String() string                        { return fmt.Sprintf("after_block %d", t.n) }
func (t *afterBlock) Arm(context.Context, bench.Fire) error { return nil }
func (t *afterBlock) Sent(uint32, time.Time)                {}
func (t *afterBlock) Acked(num uint32, _ time.Time) bool    { return num == t.n }
func (t *afterBlock) Disarm()                               {}

// hostileBoard binds a board to dev with short CoAP timers.
func hostileBoard(t *testing.T, dev *protoDevice) (*bench.Board, *results.Memory) {
	t.Helper()
	addr := startHostile(t, dev)
	mem := &results.Memory{}
	hub := bench.NewHub(results.NewClock(), mem)
	ep := bench.Endpoint{Addr: addr, Tx: coap.Transmission{AckTimeout: 100 * time.Millisecond, MaxRetransmit: 1}, Poll: 50 * time.Millisecond}
	return bench.NewBoard("hostile", &powertest.Switch{}, ep, "", hub), mem
}

// hostileRun runs one update against a hostile device and checks what
// every case must hold: bounded time, a device error (not infra) whose
// text holds want, and the reason in an update-error event when the
// transfer was under way.
func hostileRun(t *testing.T, dev *protoDevice, u bench.Update, want string) (*bench.Result, *results.Memory) {
	t.Helper()
	if dev.running == nil {
		d := sha256.Sum256([]byte("baseline"))
		dev.running = d[:]
	}
	b, mem := hostileBoard(t, dev)
	if u.Image == nil {
		u.Image = img(t, "2.0.0", 2, 2<<10, 2)
	}
	if u.Profile == "" {
		u.Profile = boards.ProfileResumable
	}
	if u.RecoveryTimeout == 0 {
		u.RecoveryTimeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	res := b.Run(ctx, u)
	took := time.Since(start)
	// Generous: the longest case waits a recovery timeout (1 s) or a few
	// exchanges of MAX_TRANSMIT_WAIT (under 1 s with these timers).
	if took > 20*time.Second || ctx.Err() != nil {
		t.Errorf("update took %v", took)
	}
	if res.Err == nil {
		t.Fatalf("hostile device accepted as updated: %+v", res)
	}
	if res.Infra {
		t.Errorf("device behaviour blamed on the bench: %v", res.Err)
	}
	if !strings.Contains(res.Err.Error(), want) {
		t.Errorf("error %q lacks %q", res.Err, want)
	}
	t.Logf("%v: %v", took.Round(time.Millisecond), res.Err)
	return res, mem
}

func TestHostileGarbageVersion(t *testing.T) {
	for name, payload := range map[string][]byte{
		"not cbor":     []byte("\xff\x00 certainly not CBOR"),
		"wrong types":  fwproto.MustMarshal(map[string]any{"version": 7, "seq": "one", "digest": "x", "mode": "app"}),
		"not a map":    fwproto.MustMarshal([]int{1, 2, 3}),
		"huge payload": bytes.Repeat([]byte{0x60}, 1100),
		"short digest": fwproto.MustMarshal(fwproto.Version{Version: "1", Seq: 1, Digest: []byte{1, 2}, Mode: fwproto.ModeApp}),
	} {
		t.Run(name, func(t *testing.T) {
			dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
				if r.Path == fwproto.PathVersion {
					return &hresp{Code: codes.Content, Payload: payload}, true
				}
				return nil, false
			}}
			hostileRun(t, dev, bench.Update{}, "read version before the update")
		})
	}
}

func TestHostileGarbageState(t *testing.T) {
	for name, payload := range map[string][]byte{
		"not cbor":    []byte("{\"mode\":\"recovery\"}"),
		"wrong types": fwproto.MustMarshal(map[string]any{"mode": "recovery", "state": "receiving", "size": "big", "next": -1}),
		"bad state":   fwproto.MustMarshal(map[string]any{"mode": "recovery", "state": "dancing"}),
	} {
		t.Run(name, func(t *testing.T) {
			dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
				if r.Path == fwproto.PathState {
					return &hresp{Code: codes.Content, Payload: payload}, true
				}
				return nil, false
			}}
			hostileRun(t, dev, bench.Update{}, "no recovery within")
		})
	}
}

// TestHostileNextBeyondImage: a state report naming a block past the
// image is refused, whether it comes from GET /fw/state or with a 4.08.
func TestHostileNextBeyondImage(t *testing.T) {
	t.Run("state", func(t *testing.T) {
		dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			if r.Path == fwproto.PathState && d.recovery {
				st := d.state()
				st.Next = 1 << 20
				return cborResp(codes.Content, st), true
			}
			return nil, false
		}}
		hostileRun(t, dev, bench.Update{SZX: 4}, "beyond the")
	})
	t.Run("4.08 of another transfer", func(t *testing.T) {
		// The device claims a transfer of 4 GiB and asks to go on at a
		// block the image does not have: following it would end the
		// transfer at once without sending a block.
		dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			if r.Code == codes.PUT && r.Block1 != nil && r.Block1.Num == 3 {
				st := d.state()
				st.Size, st.Next = 0xffffffff, 0xffffff
				return cborResp(codes.RequestEntityIncomplete, st), true
			}
			return nil, false
		}}
		res, mem := hostileRun(t, dev, bench.Update{SZX: 4}, "another transfer")
		if n := len(mem.OfKind(results.UpdateDone)); n != 0 {
			t.Errorf("%d update-done events: the transfer was taken as finished", n)
		}
		if len(res.Resumes) != 0 {
			t.Errorf("resumed at %v", res.Resumes)
		}
		if len(mem.OfKind(results.UpdateError)) != 1 {
			t.Errorf("no update-error event with the reason")
		}
	})
}

// TestHostileResyncForever: a device that answers every block with 4.08
// and its (valid) state is given up on after MaxRestarts.
func TestHostileResyncForever(t *testing.T) {
	for _, max := range []int{0, 3} {
		dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			if r.Code == codes.PUT {
				return cborResp(codes.RequestEntityIncomplete, d.state()), true
			}
			return nil, false
		}}
		res, mem := hostileRun(t, dev, bench.Update{SZX: 4, MaxRestarts: max}, "gave up after")
		want := max
		if want == 0 {
			want = 8 // the default
		}
		if len(res.Resumes) != want || res.BlocksSent != want+1 {
			t.Errorf("MaxRestarts %d: %d resyncs, %d blocks sent; want %d and %d", max, len(res.Resumes), res.BlocksSent, want, want+1)
		}
		if n := len(mem.OfKind(results.Resync)); n != want {
			t.Errorf("%d resync events, want %d", n, want)
		}
		evs := mem.OfKind(results.UpdateError)
		if len(evs) != 1 || !strings.Contains(evs[0].Text, "gave up after") {
			t.Errorf("update-error events %+v", evs)
		}
	}
}

// TestHostileResyncBackwards: a device that accepts a block and then asks
// for an earlier one each time (it "forgets") is bounded the same way.
func TestHostileResyncBackwards(t *testing.T) {
	dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
		if r.Code == codes.PUT && r.Block1 != nil && r.Block1.Num == 2 {
			d.next, d.got = 0, nil
			return cborResp(codes.RequestEntityIncomplete, d.state()), true
		}
		return nil, false
	}}
	res, _ := hostileRun(t, dev, bench.Update{SZX: 4, MaxRestarts: 4}, "gave up after 4 resynchronisations")
	if res.BlocksSent != 5*3 {
		t.Errorf("%d blocks sent, want 15", res.BlocksSent)
	}
}

func TestHostileBlock1Answers(t *testing.T) {
	huge := uint32(0xffffffff)
	t.Run("huge Size1 in 4.13", func(t *testing.T) {
		dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			if r.Code == codes.PUT {
				return &hresp{Code: codes.RequestEntityTooLarge, Size1: &huge}, true
			}
			return nil, false
		}}
		hostileRun(t, dev, bench.Update{Profile: boards.ProfileBlock1, SZX: 4, NoVerify: true}, "4.13")
	})
	t.Run("ack of a huge block number", func(t *testing.T) {
		dev := &protoDevice{recovery: true, hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			if r.Code == codes.PUT && r.Block1 != nil && r.Block1.Num == 1 {
				v := uint32(1<<20-1)<<4 | 8 | uint32(r.Block1.SZX)
				return &hresp{Code: codes.Continue, Block1: &v}, true
			}
			return nil, false
		}}
		res, _ := hostileRun(t, dev, bench.Update{Profile: boards.ProfileBlock1, SZX: 4, NoVerify: true}, "device acknowledged block 1048575")
		if res.BlocksSent != 2 {
			t.Errorf("%d blocks sent after a bad acknowledgement", res.BlocksSent)
		}
	})
	t.Run("4.08 with a state to block1", func(t *testing.T) {
		dev := &protoDevice{recovery: true, hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			if r.Code == codes.PUT && r.Block1 != nil && r.Block1.Num == 1 {
				return cborResp(codes.RequestEntityIncomplete, fwproto.State{Mode: fwproto.ModeRecovery, State: fwproto.StateReceiving, Size: 0xffffffff, Digest: make([]byte, 32), SZX: 4, Tag: []byte{1}, Next: 0xffffff}), true
			}
			return nil, false
		}}
		hostileRun(t, dev, bench.Update{Profile: boards.ProfileBlock1, SZX: 4, NoVerify: true}, "block1 transfer")
	})
}

// TestHostileBiggerBlockSize: a device that acknowledges each block with
// a larger SZX than asked is not followed (only a smaller size is a
// request, RFC 7959 §2.5): the transfer goes on in the asked size and the
// device receives every byte once, at its offset.
func TestHostileBiggerBlockSize(t *testing.T) {
	dev := &protoDevice{post: func(r hreq, resp *hresp) {
		if r.Code == codes.PUT && resp.Block1 != nil {
			v := *resp.Block1&^7 | 6
			resp.Block1 = &v
		}
	}}
	d := sha256.Sum256([]byte("baseline"))
	dev.running = d[:]
	b, _ := hostileBoard(t, dev)
	up := img(t, "2.0.0", 2, 2<<10, 2)
	res := b.Run(context.Background(), bench.Update{Profile: boards.ProfileResumable, Image: up, SZX: 2, RecoveryTimeout: 2 * time.Second})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.BlocksSent != int(res.Blocks) || res.Blocks != 32 {
		t.Errorf("sent %d of %d blocks", res.BlocksSent, res.Blocks)
	}
	dev.mu.Lock()
	defer dev.mu.Unlock()
	if !bytes.Equal(dev.got, up) {
		t.Errorf("device received %d bytes that are not the image", len(dev.got))
	}
}

// TestHostileWrongMessages: answers the client must not take for its
// own — another token, another message ID, bytes that are no CoAP at all —
// end in a timeout, not a hang and not a wrong answer.
func TestHostileWrongMessages(t *testing.T) {
	for name, mk := range map[string]func() *hresp{
		"wrong token": func() *hresp {
			return &hresp{Code: codes.Content, Token: []byte{0xde, 0xad, 0xbe, 0xef}, Payload: []byte{0xa0}}
		},
		"wrong message id": func() *hresp { return &hresp{Code: codes.Content, MIDAdd: 7, Payload: []byte{0xa0}} },
		"not coap":         func() *hresp { return &hresp{Raw: []byte("\x00\x01garbage datagram")} },
	} {
		t.Run(name, func(t *testing.T) {
			dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) { return mk(), true }}
			hostileRun(t, dev, bench.Update{}, "read version before the update")
		})
	}
}

// TestHostileSilentMidTransfer: a device that stops answering after a few
// blocks ends the update with the block it stopped at, once that block
// has gone again as a new request for as long as the device may be silent
// (a lossy link loses whole exchanges; a silent device stays silent).
func TestHostileSilentMidTransfer(t *testing.T) {
	dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
		if r.Code == codes.PUT && r.Block1 != nil && r.Block1.Num >= 5 {
			return &hresp{Silent: true}, true
		}
		return nil, false
	}}
	res, mem := hostileRun(t, dev, bench.Update{SZX: 4}, "block 5")
	again := 0
	for _, e := range mem.OfKind(results.BlockRetry) {
		if strings.Contains(e.Text, "sent again as a new request") {
			if e.Block != 5 {
				t.Errorf("block %d sent again, want 5", e.Block)
			}
			again++
		}
	}
	if res.BlocksSent != 6+again || again == 0 || again > 4 || len(mem.OfKind(results.BlockAcked)) != 5 {
		t.Errorf("%d blocks sent, %d of them block 5 again, %d acknowledged", res.BlocksSent, again, len(mem.OfKind(results.BlockAcked)))
	}
	if errors.Is(res.Err, fwclient.ErrResync) {
		t.Errorf("silence taken for a resync: %v", res.Err)
	}
}

// TestHostileGarbageBootAfterCut: after a cut the device answers /boot
// with garbage only; recovery gives up after its timeout with the reason.
func TestHostileGarbageBootAfterCut(t *testing.T) {
	dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
		if r.Path == fwproto.PathBoot {
			return &hresp{Code: codes.Content, Payload: fwproto.MustMarshal(map[string]any{"mode": 3, "boots": "x"})}, true
		}
		return nil, false
	}}
	res, _ := hostileRun(t, dev, bench.Update{SZX: 4, Trigger: &afterBlock{2}}, "no usable answer on CoAP")
	if res.Cut == nil || res.Cut.LastAcked != 2 {
		t.Errorf("cut %+v", res.Cut)
	}
	if !strings.Contains(res.Err.Error(), "fwproto") {
		t.Errorf("reason does not say what was wrong with the answer: %v", res.Err)
	}
}

// FuzzHostileAnswer replaces one answer of an otherwise well-behaved
// device — the n-th of the update, whatever request it is — by a fuzzed
// code, payload and Block1 option. Whatever comes back, the update ends
// in bounded time without a panic, the bench never blames itself, and it
// reports success only when the device really verified the new image.
func FuzzHostileAnswer(f *testing.F) {
	st := fwproto.MustMarshal(fwproto.State{Mode: fwproto.ModeRecovery, State: fwproto.StateReceiving, Size: 0xffffffff, Digest: make([]byte, 32), SZX: 0, Tag: []byte("1"), Next: 0xffffff})
	f.Add(uint8(0), uint8(codes.Content), []byte("garbage"), uint32(0))
	f.Add(uint8(3), uint8(codes.RequestEntityIncomplete), st, uint32(0))
	f.Add(uint8(4), uint8(codes.Continue), []byte(nil), uint32(0xfffff<<4|8))
	f.Add(uint8(20), uint8(codes.RequestEntityIncomplete), st, uint32(0))
	f.Add(uint8(35), uint8(codes.Continue), []byte(nil), uint32(30<<4))
	f.Add(uint8(5), uint8(codes.Changed), []byte(nil), uint32(0))
	f.Add(uint8(6), uint8(codes.RequestEntityTooLarge), []byte{0xa0}, uint32(6))
	f.Add(uint8(9), uint8(codes.Content), fwproto.MustMarshal(fwproto.Boot{Mode: "x"}), uint32(1))
	img := img(f, "2.0.0", 2, 512, 2)
	f.Fuzz(func(t *testing.T, n uint8, code uint8, payload []byte, block1 uint32) {
		count := 0
		dev := &protoDevice{hook: func(d *protoDevice, r hreq) (*hresp, bool) {
			count++
			if count != int(n%48)+1 {
				return nil, false
			}
			resp := &hresp{Code: codes.Code(code), Payload: payload}
			if block1 != 0 {
				v := block1 & 0xffffff
				resp.Block1 = &v
			}
			return resp, true
		}}
		d := sha256.Sum256([]byte("baseline"))
		dev.running = d[:]
		b, _ := hostileBoard(t, dev)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		start := time.Now()
		res := b.Run(ctx, bench.Update{Profile: boards.ProfileResumable, Image: img, SZX: 0, RecoveryTimeout: 100 * time.Millisecond, MaxRestarts: 3, Tag: []byte("1")})
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("update took %v", took)
		}
		if res.Infra {
			t.Errorf("device answer blamed on the bench: %v", res.Err)
		}
		dev.mu.Lock()
		defer dev.mu.Unlock()
		sum := sha256.Sum256(img)
		if res.Err == nil && !bytes.Equal(dev.running, sum[:]) {
			t.Errorf("update reported done, the device never verified the image")
		}
		if max := 4 * int(res.Blocks+1); res.BlocksSent > max {
			t.Errorf("%d blocks sent for a %d-block image", res.BlocksSent, res.Blocks)
		}
	})
}

// TestLastAnswerLost: the device takes the last block, verifies it and
// restarts into the new image, but its answer is lost; the retransmission
// reaches the new image, which knows no transfer and refuses it. The
// device took the image: the bench checks the new version and the update
// succeeds, with no error.
func TestLastAnswerLost(t *testing.T) {
	lost := false
	dev := &protoDevice{post: func(r hreq, resp *hresp) {
		if !lost && r.Block1 != nil && !r.Block1.More && resp.Code == codes.Changed {
			lost, resp.Silent = true, true
		}
	}}
	d := sha256.Sum256([]byte("baseline"))
	dev.running = d[:]
	b, mem := hostileBoard(t, dev)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res := b.Run(ctx, bench.Update{SZX: 4, Image: img(t, "2.0.0", 2, 2<<10, 2), Profile: boards.ProfileResumable, RecoveryTimeout: time.Second})
	dev.mu.Lock() // the device's goroutine writes both under it
	wasLost, running := lost, dev.running
	dev.mu.Unlock()
	if res.Err != nil || !wasLost {
		t.Fatalf("update: %v (answer lost: %v)", res.Err, wasLost)
	}
	if res.Final == nil || !bytes.Equal(res.Final.Digest, running) {
		t.Errorf("final version %+v", res.Final)
	}
	if errs := mem.OfKind(results.UpdateError); len(errs) != 0 {
		t.Errorf("update errors on the timeline: %+v", errs)
	}
}
