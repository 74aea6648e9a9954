package sim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/fwproto"
)

// controlClient speaks to a Sim's control endpoint.
type controlClient struct {
	t    *testing.T
	base string
}

func (c controlClient) do(method, path, body string) (int, []byte) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp.StatusCode, b
}

func (c controlClient) json(path string, v any) {
	c.t.Helper()
	code, b := c.do(http.MethodGet, path, "")
	if code != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		c.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

func startControl(t *testing.T) (*Sim, controlClient) {
	t.Helper()
	s, err := Start(DefaultBench(), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	addr, err := s.ServeControl("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return s, controlClient{t: t, base: "http://" + addr.String()}
}

// bootReport reads /boot over the CoAP endpoint the control API listed.
func bootReport(t *testing.T, addr string) fwproto.Boot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := fwclient.Dial(ctx, addr, nil, fastTx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	boot, err := c.Boot(ctx)
	if err != nil {
		t.Fatalf("GET /boot at %s: %v", addr, err)
	}
	return boot
}

func TestControlListsBoards(t *testing.T) {
	s, c := startControl(t)
	var infos []Info
	c.json("/boards", &infos)
	if len(infos) != 2 || infos[0].Name != "sim-naive" || infos[1].Name != "sim-safe" {
		t.Fatalf("GET /boards: %+v", infos)
	}
	for _, in := range infos {
		b := s.Board(in.Name)
		udp, dtls := b.Endpoints()
		if strings.Join(in.CoAP, ",") != strings.Join(udp, ",") || len(in.CoAP) != 2 || in.CoAPS != dtls || dtls == "" {
			t.Errorf("%s: endpoints %v %q, board has %v %q", in.Name, in.CoAP, in.CoAPS, udp, dtls)
		}
		if in.GDB != b.GDBAddr() || in.GDB == "" || in.PSKIdentity != "fudbench" {
			t.Errorf("%s: gdb %q psk identity %q", in.Name, in.GDB, in.PSKIdentity)
		}
		if !strings.HasPrefix(in.Console, "/dev/pts/") || in.ConsoleLink != b.ConsoleLink() {
			t.Errorf("%s: console %q link %q", in.Name, in.Console, in.ConsoleLink)
		}
		if in.Mode != ModeApp || !in.Powered || in.Boots != 1 || in.Strategy != b.Strategy() {
			t.Errorf("%s: %+v", in.Name, in)
		}
		// The listed endpoints are live: both address families answer.
		for _, a := range in.CoAP {
			if boot := bootReport(t, a); boot.Mode != ModeApp || boot.Version != BaselineSpec.Version {
				t.Errorf("%s at %s: boot %+v", in.Name, a, boot)
			}
		}
		var one Info
		c.json("/boards/"+in.Name, &one)
		if one.Name != in.Name || one.GDB != in.GDB {
			t.Errorf("GET /boards/%s: %+v", in.Name, one)
		}
	}
}

func TestControlPowerAndReset(t *testing.T) {
	s, c := startControl(t)
	b := s.Board("sim-safe")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if code, body := c.do(http.MethodPut, "/boards/sim-safe/power", "off\n"); code != http.StatusNoContent {
		t.Fatalf("power off: %d %s", code, body)
	}
	if b.Powered() || b.Mode() != ModeOff {
		t.Fatalf("after power off: powered %v mode %s", b.Powered(), b.Mode())
	}
	if code, body := c.do(http.MethodGet, "/boards/sim-safe/power", ""); code != http.StatusOK || strings.TrimSpace(string(body)) != "off" {
		t.Errorf("GET power: %d %q", code, body)
	}
	var cuts []CutRecord
	c.json("/boards/sim-safe/cuts", &cuts)
	if len(cuts) != 1 || cuts[0].Cause != "power-input" || cuts[0].Mode != ModeApp || cuts[0].Flash.Kind != "idle" || cuts[0].Block != -1 {
		t.Fatalf("cuts %+v", cuts)
	}
	if !cuts[0].At.Equal(b.Cuts()[0].At) {
		t.Errorf("cut time %v, board recorded %v", cuts[0].At, b.Cuts()[0].At)
	}
	var other []CutRecord
	c.json("/boards/sim-naive/cuts", &other)
	if len(other) != 0 {
		t.Errorf("sim-naive has cuts %+v", other)
	}

	boots := b.Boots()
	if code, body := c.do(http.MethodPut, "/boards/sim-safe/power", "on"); code != http.StatusNoContent {
		t.Fatalf("power on: %d %s", code, body)
	}
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
		t.Fatalf("after power on: %s %v", m, err)
	}
	udp, _ := b.Endpoints()
	if boot := bootReport(t, udp[0]); boot.ResetCause != fwproto.ResetPower || boot.Boots != boots+1 {
		t.Errorf("after power on: %+v", boot)
	}

	boots = b.Boots()
	if code, body := c.do(http.MethodPost, "/boards/sim-safe/reset", ""); code != http.StatusNoContent {
		t.Fatalf("reset: %d %s", code, body)
	}
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
		t.Fatalf("after reset: %s %v", m, err)
	}
	if boot := bootReport(t, udp[0]); boot.ResetCause != fwproto.ResetSoftware || boot.Boots != boots+1 {
		t.Errorf("after reset: %+v", boot)
	}
	if got := len(b.Cuts()); got != 1 {
		t.Errorf("a reset recorded a power cut: %d cuts", got)
	}
}

func TestControlErrors(t *testing.T) {
	s, c := startControl(t)
	s.Board("sim-naive").SetPower(false)
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		want   int
	}{
		{"bad power body", http.MethodPut, "/boards/sim-safe/power", "maybe", http.StatusBadRequest},
		{"empty power body", http.MethodPut, "/boards/sim-safe/power", "", http.StatusBadRequest},
		{"unknown board", http.MethodGet, "/boards/nope", "", http.StatusNotFound},
		{"unknown board power", http.MethodPut, "/boards/nope/power", "on", http.StatusNotFound},
		{"unknown board reset", http.MethodPost, "/boards/nope/reset", "", http.StatusNotFound},
		{"unknown board cuts", http.MethodGet, "/boards/nope/cuts", "", http.StatusNotFound},
		{"reset unpowered", http.MethodPost, "/boards/sim-naive/reset", "", http.StatusConflict},
		{"wrong method", http.MethodDelete, "/boards/sim-safe", "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, body := c.do(tt.method, tt.path, tt.body); code != tt.want {
				t.Errorf("%s %s %q: %d %s, want %d", tt.method, tt.path, tt.body, code, body, tt.want)
			}
		})
	}
	// None of that touched the boards.
	if b := s.Board("sim-safe"); !b.Powered() || b.Boots() != 1 || len(b.Cuts()) != 0 {
		t.Errorf("sim-safe changed: powered %v boots %d cuts %d", b.Powered(), b.Boots(), len(b.Cuts()))
	}
	if b := s.Board("sim-naive"); b.Powered() {
		t.Error("sim-naive powered by a refused request")
	}
}
