package sim

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/fudbench/fudbench/fwproto"
)

// pollBoot sends a confirmable GET /boot to addr every interval, each with
// a new message ID, until one is answered or stop closes; it reports when
// the first answer arrived, measured from t0 (or an error).
func pollBoot(addr string, t0 time.Time, interval time.Duration, stop <-chan struct{}) (time.Duration, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for mid := int32(1); ; mid++ {
		select {
		case <-stop:
			return 0, errors.New("stopped before any answer")
		default:
		}
		req := message.Message{
			Token: []byte{0x42}, Code: codes.GET, Type: message.Confirmable, MessageID: mid,
			Options: message.Options{{ID: message.URIPath, Value: []byte(strings.TrimPrefix(fwproto.PathBoot, "/"))}},
		}
		out := make([]byte, 64)
		n, err := coder.DefaultCoder.Encode(req, out)
		if err != nil {
			return 0, err
		}
		if _, err := c.Write(out[:n]); err != nil {
			return 0, err
		}
		_ = c.SetReadDeadline(time.Now().Add(interval))
		for {
			n, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			if err != nil {
				return 0, err
			}
			at := time.Since(t0)
			var resp message.Message
			resp.Options = make(message.Options, 0, 8)
			if _, err := coder.DefaultCoder.Decode(buf[:n], &resp); err != nil {
				return 0, err
			}
			if resp.Code != codes.Content {
				return 0, errors.New("GET /boot answered " + resp.Code.String())
			}
			return at, nil
		}
	}
}

// TestNetDelay: a board whose network comes up after its console prints
// its ready line at once, and answers CoAP only NetDelay later; requests
// before that get no answer at all. A bench that times recovery must take
// each milestone from its own evidence.
func TestNetDelay(t *testing.T) {
	const netDelay = 500 * time.Millisecond
	b := newConsoleBoard(t, Config{Name: "net-delay", TimeScale: 1, NetDelay: netDelay})
	// The first boot binds the board's port; the one measured is the next.
	powerOn(t, b, ModeApp)
	b.SetPower(false)
	udp, _ := b.Endpoints()
	r := openConsole(t, b, b.ConsoleLink())

	stop := make(chan struct{})
	type result struct {
		at  time.Duration
		err error
	}
	answered := make(chan result, 1)
	t0 := time.Now()
	b.SetPower(true)
	go func() {
		at, err := pollBoot(udp[0], t0, 20*time.Millisecond, stop)
		answered <- result{at, err}
	}()
	r.expect(t, "APP ")
	ready := time.Since(t0)
	var first result
	select {
	case first = <-answered:
	case <-time.After(10 * time.Second):
		close(stop)
		first = <-answered
	}
	if first.err != nil {
		t.Fatalf("no CoAP answer: %v", first.err)
	}
	t.Logf("console ready line after %v, first CoAP answer after %v", ready, first.at)
	if first.at < netDelay {
		t.Errorf("first CoAP answer %v after power-on, want at least the network delay %v", first.at, netDelay)
	}
	if ready >= first.at {
		t.Errorf("console ready line after %v, not before the first CoAP answer (%v)", ready, first.at)
	}
}
