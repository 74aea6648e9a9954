package simctl

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/sim"
)

// startSim runs a real simulated bench with its control endpoint.
func startSim(t *testing.T, name string) (*sim.Sim, string) {
	t.Helper()
	s, err := sim.Start([]sim.Config{{Name: name, DTLSAddr: "-", GDBAddr: "-", UDPAddrs: []string{"127.0.0.1:0"}}}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addr, err := s.ServeControl("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return s, "http://" + addr.String()
}

func TestSimBoard(t *testing.T) {
	s, base := startSim(t, "simctl-a")
	board := s.Board("simctl-a")

	sw, err := power.Open(Driver, power.MapSettings{"url": base, "board": "simctl-a"})
	if err != nil {
		t.Fatal(err)
	}
	if sw.String() != "sim:simctl-a" {
		t.Errorf("String() = %q", sw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	state := func(want bool) {
		t.Helper()
		on, err := sw.(power.StateReader).State(ctx)
		if err != nil || on != want {
			t.Errorf("State() = %v, %v; want %v", on, err, want)
		}
	}

	state(false)
	w := sw.(power.CutWitness)
	if _, ok, err := w.LastCut(ctx); ok || err != nil {
		t.Errorf("LastCut before any cut: ok %v err %v", ok, err)
	}
	if err := sw.On(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := board.WaitMode(ctx, sim.ModeApp); err != nil {
		t.Fatal(err)
	}
	state(true)
	if err := sw.Off(ctx); err != nil {
		t.Fatal(err)
	}
	if board.Powered() {
		t.Error("board still powered after Off")
	}
	if cuts := board.Cuts(); len(cuts) != 1 || cuts[0].Cause != "power-input" {
		t.Errorf("cuts = %+v, want one from the power input", cuts)
	}
	// The board's own record, through the control endpoint: the app was
	// idle, nothing being written.
	rec, ok, err := w.LastCut(ctx)
	if err != nil || !ok || rec.Seq != 1 || rec.Writing != -1 || rec.LastAcked != -1 || rec.Flash != "idle" || !rec.At.Equal(board.Cuts()[0].At) {
		t.Errorf("LastCut = %+v ok %v err %v", rec, ok, err)
	}
	state(false)

	boots := board.Boots()
	if err := power.Cycle(ctx, sw, 10*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := board.WaitBoot(ctx, boots); err != nil {
		t.Fatal(err)
	}
	if err := power.Safe(ctx, sw); err != nil {
		t.Fatal(err)
	}
	if board.Powered() {
		t.Error("board powered after Safe")
	}
}

func TestErrors(t *testing.T) {
	_, base := startSim(t, "simctl-b")
	hang := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hang) })
	garbled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("maybe\n"))
	}))
	t.Cleanup(garbled.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()

	tests := []struct {
		name    string
		url     string
		board   string
		call    func(context.Context, *Switch) error
		ctxTime time.Duration
		want    string
		wantIs  error
	}{
		{
			name: "unknown board", url: base, board: "nope",
			call: func(ctx context.Context, s *Switch) error { return s.On(ctx) },
			want: `404 Not Found: "no board \"nope\""`, wantIs: power.ErrDriver,
		},
		{
			name: "unknown board state", url: base, board: "nope",
			call: func(ctx context.Context, s *Switch) error { _, err := s.State(ctx); return err },
			want: "state: power: driver failed: GET", wantIs: power.ErrDriver,
		},
		{
			name: "deadline", url: slow.URL, board: "b", ctxTime: 100 * time.Millisecond,
			call: func(ctx context.Context, s *Switch) error { return s.Off(ctx) },
			want: "sim:b: off:", wantIs: power.ErrTimeout,
		},
		{
			name: "refused", url: refused, board: "b",
			call: func(ctx context.Context, s *Switch) error { return s.On(ctx) },
			want: "connection refused", wantIs: power.ErrDriver,
		},
		{
			name: "garbled state", url: garbled.URL, board: "b",
			call: func(ctx context.Context, s *Switch) error { _, err := s.State(ctx); return err },
			want: `answer "maybe\n" is neither on nor off`, wantIs: power.ErrDriver,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.url, tt.board, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if tt.ctxTime > 0 {
				ctx, cancel = context.WithTimeout(context.Background(), tt.ctxTime)
			}
			defer cancel()
			start := time.Now()
			err = tt.call(ctx, s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
			if !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			if tt.ctxTime > 0 && time.Since(start) > tt.ctxTime+time.Second {
				t.Errorf("took %v with a deadline of %v", time.Since(start), tt.ctxTime)
			}
		})
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s, _ := New(slow.URL, "b", nil)
	if err := s.On(ctx); !errors.Is(err, context.Canceled) || errors.Is(err, power.ErrTimeout) || errors.Is(err, power.ErrDriver) {
		t.Errorf("cancelled: err %v, want context.Canceled only", err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name, url, board string
		wantURL          string
		wantErr          string
	}{
		{name: "plain", url: "http://127.0.0.1:7890", board: "sim-safe", wantURL: "http://127.0.0.1:7890/boards/sim-safe/power"},
		{name: "trailing slash and prefix", url: "http://[::1]:7890/bench/", board: "a b", wantURL: "http://[::1]:7890/bench/boards/a%20b/power"},
		{name: "no board", url: "http://127.0.0.1:1", wantErr: "board: required"},
		{name: "slash in board", url: "http://127.0.0.1:1", board: "../x", wantErr: "is no board name"},
		{name: "no url", board: "b", wantErr: "url: required"},
		{name: "no scheme", url: "127.0.0.1:7890", board: "b", wantErr: "url:"},
		{name: "bad scheme", url: "ftp://127.0.0.1", board: "b", wantErr: "scheme must be http or https"},
		{name: "no host", url: "http:///x", board: "b", wantErr: "no host"},
		{name: "query", url: "http://127.0.0.1:1/?x=1", board: "b", wantErr: "query or fragment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.url, tt.board, nil)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.power != tt.wantURL {
				t.Errorf("power URL %q, want %q", s.power, tt.wantURL)
			}
		})
	}
	if _, err := power.Open(Driver, power.MapSettings{"url": "http://127.0.0.1:1", "board": "b", "pin": "x"}); err == nil || !strings.Contains(err.Error(), `unknown key "pin"`) {
		t.Errorf("unknown key: err %v", err)
	}
}

func TestParseState(t *testing.T) {
	tests := []struct {
		body    string
		want    bool
		wantErr bool
	}{
		{"on\n", true, false},
		{"off\n", false, false},
		{" on ", true, false},
		{"ON", false, true},
		{"", false, true},
		{"onoff", false, true},
	}
	for _, tt := range tests {
		got, err := ParseState([]byte(tt.body))
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("ParseState(%q) = %v, %v; want %v, error %v", tt.body, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseLastCut(t *testing.T) {
	rec, err := ParseLastCut([]byte(`{"seq":3,"at":"2026-12-02T05:00:00Z","mode":"recovery","flash":{"Op":7,"Kind":"program","Addr":32768,"Torn":true},"block":5,"last_acked":4,"cause":"power-input"}`))
	if err != nil || rec.Seq != 3 || rec.Writing != 5 || rec.LastAcked != 4 || rec.Flash != "program" {
		t.Errorf("parse: %+v %v", rec, err)
	}
	for _, bad := range []string{``, `[]`, `{"seq":-1}`, `{"seq":1,"block":-7}`, `{"seq":"x"}`} {
		if _, err := ParseLastCut([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseLastCut: whatever a control endpoint answers, the parser
// returns a record in range or an error.
func FuzzParseLastCut(f *testing.F) {
	f.Add([]byte(`{"seq":1,"flash":{"Kind":"erase"},"block":-1,"last_acked":-1}`))
	f.Add([]byte(`{"seq":0}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		rec, err := ParseLastCut(body)
		if err == nil && (rec.Seq < 0 || rec.Writing < -1 || rec.LastAcked < -1) {
			t.Fatalf("out of range record accepted: %+v", rec)
		}
	})
}

func FuzzParseState(f *testing.F) {
	for _, s := range []string{"on\n", "off\n", "", "maybe", "\x00on", strings.Repeat("x", 100)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		on, err := ParseState(b)
		trimmed := strings.TrimSpace(string(b))
		switch {
		case err == nil && on && trimmed != "on", err == nil && !on && trimmed != "off":
			t.Fatalf("ParseState(%q) = %v with no error", b, on)
		case err != nil && len(err.Error()) > 64*4+40: // 64 bytes quoted at worst as \xNN
			t.Fatalf("error of %d bytes: the answer is not bounded", len(err.Error()))
		}
	})
}

// TestSimBoardFlashWork: the flash counters, the update cost and a cut at
// one of the board's own flash operations, through the control endpoint.
func TestSimBoardFlashWork(t *testing.T) {
	s, base := startSim(t, "simctl-w")
	board := s.Board("simctl-w")
	sw, err := New(base, "simctl-w", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sw.On(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := board.WaitMode(ctx, sim.ModeApp); err != nil {
		t.Fatal(err)
	}
	st, err := sw.FlashStats(ctx)
	if err != nil || len(st.Erases) != board.Flash().NumSectors() {
		t.Fatalf("FlashStats = %+v, %v", st, err)
	}
	c, err := sw.UpdateCost(ctx, 16<<10, 1024)
	if err != nil || c.Strategy != "inplace-recovery" || c.Space <= 16<<10 || c.Cache <= 0 {
		t.Fatalf("UpdateCost = %+v, %v", c, err)
	}

	// Armed one operation ahead: the board loses power at its next flash
	// operation, here one the test starts itself.
	fired := make(chan time.Time, 1)
	disarm, err := sw.ArmCut(ctx, 1, func(at time.Time) { fired <- at })
	if err != nil {
		t.Fatal(err)
	}
	defer disarm()
	if err := board.Flash().EraseSector(board.Flash().NumSectors() - 1); err == nil {
		t.Fatal("the armed cut did not stop the erase")
	}
	select {
	case at := <-fired:
		rec, ok, err := sw.LastCut(ctx)
		if err != nil || !ok || !rec.At.Equal(at) || rec.Flash != "erase" {
			t.Errorf("cut record %+v ok %v err %v, notified at %v", rec, ok, err, at)
		}
	case <-ctx.Done():
		t.Fatal("the armed cut was never reported")
	}
	if board.Powered() {
		t.Error("board still powered after its armed cut")
	}

	// Disarmed before it is reached: nothing happens.
	if err := sw.On(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := board.WaitMode(ctx, sim.ModeApp); err != nil {
		t.Fatal(err)
	}
	disarm2, err := sw.ArmCut(ctx, 1, func(time.Time) { t.Error("a disarmed cut fired") })
	if err != nil {
		t.Fatal(err)
	}
	disarm2()
	if err := board.Flash().EraseSector(board.Flash().NumSectors() - 1); err != nil {
		t.Errorf("erase after disarm: %v", err)
	}
	if !board.Powered() {
		t.Error("a disarmed cut cut the power")
	}
}

func FuzzParseFlashStats(f *testing.F) {
	f.Add([]byte(`{"ops":12,"programmed":1024,"erased":4096,"erases":[1,0,2]}`))
	f.Add([]byte(`{"programmed":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseFlashStats(b)
		if err == nil && (st.Programmed < 0 || st.Erased < 0) {
			t.Fatalf("accepted %+v", st)
		}
	})
}

func FuzzParseUpdateCost(f *testing.F) {
	f.Add([]byte(`{"strategy":"ab-swap","space":53248,"cache":88}`))
	f.Add([]byte(`{"space":-5}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseUpdateCost(b)
		if err == nil && (c.Space < 0 || c.Cache < 0 || len(c.Strategy) > 64) {
			t.Fatalf("accepted %+v", c)
		}
	})
}

// TestSwitchRequestNotAbandoned: a power request already sent is carried
// to the board's answer even when the caller cancels meanwhile, so the
// bench knows the board's power and its next request (the safe state's
// off) cannot overtake it.
func TestSwitchRequestNotAbandoned(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		time.Sleep(200 * time.Millisecond)
		got.Store(string(b))
		fmt.Fprintln(w, "on")
	}))
	defer srv.Close()
	s, err := New(srv.URL, "b", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if err := s.On(ctx); err != nil {
		t.Fatalf("on, cancelled after it was sent: %v", err)
	}
	if took := time.Since(start); took < 200*time.Millisecond || got.Load() != "on" {
		t.Errorf("returned after %v with the board told %v: want the board's answer", took, got.Load())
	}
}
