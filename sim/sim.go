package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/fwimage"
)

// DefaultBench is the built-in simulated bench: sim-safe runs the
// resumable in-place scheme, sim-naive the unsafe one. sim-naive's console
// re-enumerates on every power-on (a new pty behind a stable link), so a
// bench's reopen logic is exercised for real.
func DefaultBench() []Config {
	return []Config{
		{Name: "sim-safe", Strategy: InplaceRecovery},
		{Name: "sim-naive", Strategy: NaiveInplace, Reenumerate: true},
	}
}

// BaselineSpec is the image a new simulated board is factory-programmed
// with when it has none.
var BaselineSpec = fwimage.Spec{Version: "1.0.0", Seq: 1, Size: 64 << 10, Seed: 1}

// Sim is a set of running boards.
type Sim struct {
	Boards []*Board
	log    *slog.Logger
	http   *http.Server
	ln     net.Listener

	armMu sync.Mutex
	armed map[string]func() // disarm of the cut armed through the control endpoint, by board
}

// Start makes the boards, factory-programs the baseline image on any
// board whose app slot holds no valid image, and powers them on when
// powerOn is set.
func Start(cfgs []Config, powerOn bool, log *slog.Logger) (*Sim, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sim{log: log}
	seen := map[string]bool{}
	for _, c := range cfgs {
		if seen[c.Name] {
			s.Close()
			return nil, fmt.Errorf("sim: duplicate board name %q", c.Name)
		}
		seen[c.Name] = true
		if c.Logger == nil {
			c.Logger = log
		}
		b, err := New(c)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.Boards = append(s.Boards, b)
		if !b.hasImage() {
			img, err := fwimage.Build(BaselineSpec, fwimage.DevKey())
			if err != nil {
				s.Close()
				return nil, err
			}
			if err := b.FactoryProgram(img); err != nil {
				s.Close()
				return nil, err
			}
		}
	}
	if powerOn {
		for _, b := range s.Boards {
			b.SetPower(true)
		}
	}
	return s, nil
}

// Board returns the board called name.
func (s *Sim) Board(name string) *Board {
	for _, b := range s.Boards {
		if b.Name() == name {
			return b
		}
	}
	return nil
}

// WaitReady waits until every powered board has finished booting.
func (s *Sim) WaitReady(ctx context.Context) error {
	for _, b := range s.Boards {
		if !b.Powered() {
			continue
		}
		if _, err := b.WaitMode(ctx, ModeApp, ModeRecovery, ModeHalted, ModeSerialRecovery); err != nil {
			return err
		}
	}
	return nil
}

// Close powers every board off and releases everything.
func (s *Sim) Close() error {
	var errs []error
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		errs = append(errs, s.http.Shutdown(ctx))
		cancel()
	}
	for _, b := range s.Boards {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}

// LastCutInfo is the control endpoint's answer about a board's latest
// cut: Seq is the number of cuts recorded (0: none yet).
type LastCutInfo struct {
	Seq int `json:"seq"`
	CutRecord
}

// Info is what the control endpoint and `fudbench sim` report per board.
type Info struct {
	Name        string   `json:"name"`
	Strategy    Strategy `json:"strategy"`
	Mode        string   `json:"mode"`
	Powered     bool     `json:"powered"`
	CoAP        []string `json:"coap"`
	CoAPS       string   `json:"coaps,omitempty"`
	PSKIdentity string   `json:"psk_identity,omitempty"`
	// OSCORE is the OSCORE endpoint (host:port), "" when the board has none.
	OSCORE string `json:"oscore,omitempty"`
	// Security says how the board keeps its security context across
	// power cuts (dtls_cache, ssn_persist, replay_after_boot).
	Security    string `json:"security,omitempty"`
	GDB         string `json:"gdb,omitempty"`
	Console     string `json:"console"`
	ConsoleLink string `json:"console_link"`
	PowerPin    string `json:"power_pin,omitempty"`
	BusyPin     string `json:"busy_pin,omitempty"`
	Boots       uint32 `json:"boots"`
	// Confirm is what an image booted in test mode does (ab-swap and
	// ab-direct boards only): boot or never.
	Confirm string `json:"confirm,omitempty"`
	// Flash is the board's flash counters since it was made.
	Flash FlashStats `json:"flash"`
	// Supply is the board's bench supply (SCPI over TCP, host:port) and
	// SupplySerial its serial port (a pty), "" when it has none.
	Supply       string `json:"supply,omitempty"`
	SupplySerial string `json:"supply_serial,omitempty"`
	// WeakPrograms counts the write units its flash programmed on a
	// marginal supply (between bor and flash_min) and WeakBits the bits
	// they left erased: the damage the firmware was not told of.
	WeakPrograms uint64 `json:"weak_programs,omitempty"`
	WeakBits     uint64 `json:"weak_bits,omitempty"`
}

// Info describes the board's wiring and state.
func (b *Board) Info() Info {
	udp, dtls := b.Endpoints()
	in := Info{
		Name: b.Name(), Strategy: b.Strategy(), Mode: b.Mode(), Powered: b.Powered(),
		CoAP: udp, CoAPS: dtls, GDB: b.GDBAddr(), Console: b.ConsolePath(), ConsoleLink: b.ConsoleLink(),
		Boots: b.Boots(), OSCORE: b.OSCOREAddr(), Security: b.securityInfo(),
	}
	if dtls != "" {
		in.PSKIdentity = b.cfg.PSKIdentity
	}
	if b.cfg.Strategy == ABSwap || b.cfg.Strategy == ABDirect {
		in.Confirm = b.cfg.Confirm
	}
	in.Flash = b.FlashStats()
	in.Supply, in.SupplySerial = b.SupplyAddr(), b.SupplySerial()
	st := b.fl.Stats()
	in.WeakPrograms, in.WeakBits = st.WeakUnits, st.WeakBits
	if b.powerPin != nil {
		in.PowerPin, in.BusyPin = PinNames(b.Name())
	}
	return in
}

// ServeControl starts the control endpoint on addr (loopback unless
// configured otherwise): an HTTP API through which a bench process
// reaches the boards' power inputs when the boards run in another process.
//
//	GET  /boards                  all boards' Info as JSON
//	GET  /boards/{name}           one board's Info
//	GET  /boards/{name}/power     "on" or "off": the power input (PowerInput)
//	PUT  /boards/{name}/power     body "on" or "off": drive the power input
//	POST /boards/{name}/reset     software reset
//	GET  /boards/{name}/cuts      the board's record of every power cut
//	GET  /boards/{name}/cuts/last the latest one and its number ({"seq": 0} when none)
//	GET  /boards/{name}/flash     the board's flash counters (FlashStats)
//	GET  /boards/{name}/cost?image=BYTES&block=BYTES
//	                              what its strategy needs for one image (UpdateCost)
//	PUT  /boards/{name}/cut-at    body N: cut its power at its flash operation N
//	                              operations from now (ArmCut); replaces one armed before
//	DELETE /boards/{name}/cut-at  disarm it
func (s *Sim) ServeControl(addr string) (net.Addr, error) {
	mux := http.NewServeMux()
	get := func(w http.ResponseWriter, r *http.Request) *Board {
		b := s.Board(r.PathValue("name"))
		if b == nil {
			http.Error(w, fmt.Sprintf("no board %q", r.PathValue("name")), http.StatusNotFound)
		}
		return b
	}
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /boards", func(w http.ResponseWriter, r *http.Request) {
		var out []Info
		for _, b := range s.Boards {
			out = append(out, b.Info())
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /boards/{name}", func(w http.ResponseWriter, r *http.Request) {
		if b := get(w, r); b != nil {
			writeJSON(w, b.Info())
		}
	})
	mux.HandleFunc("GET /boards/{name}/power", func(w http.ResponseWriter, r *http.Request) {
		if b := get(w, r); b != nil {
			if b.PowerInput() {
				fmt.Fprintln(w, "on")
			} else {
				fmt.Fprintln(w, "off")
			}
		}
	})
	mux.HandleFunc("PUT /boards/{name}/power", func(w http.ResponseWriter, r *http.Request) {
		b := get(w, r)
		if b == nil {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 16))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		switch strings.TrimSpace(string(body)) {
		case "on":
			b.SetPower(true)
		case "off":
			b.SetPower(false)
		default:
			http.Error(w, `body must be "on" or "off"`, http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /boards/{name}/reset", func(w http.ResponseWriter, r *http.Request) {
		if b := get(w, r); b != nil {
			if !b.Powered() {
				http.Error(w, "board is not powered", http.StatusConflict)
				return
			}
			b.Reset()
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /boards/{name}/cuts", func(w http.ResponseWriter, r *http.Request) {
		if b := get(w, r); b != nil {
			writeJSON(w, b.Cuts())
		}
	})
	mux.HandleFunc("GET /boards/{name}/cuts/last", func(w http.ResponseWriter, r *http.Request) {
		if b := get(w, r); b != nil {
			rec, n := b.LastCut()
			writeJSON(w, LastCutInfo{Seq: n, CutRecord: rec})
		}
	})
	mux.HandleFunc("GET /boards/{name}/flash", func(w http.ResponseWriter, r *http.Request) {
		if b := get(w, r); b != nil {
			writeJSON(w, b.FlashStats())
		}
	})
	mux.HandleFunc("GET /boards/{name}/cost", func(w http.ResponseWriter, r *http.Request) {
		b := get(w, r)
		if b == nil {
			return
		}
		image, err1 := strconv.Atoi(r.URL.Query().Get("image"))
		block, err2 := strconv.Atoi(r.URL.Query().Get("block"))
		if err1 != nil || err2 != nil || image < 1 || image > 1<<30 || block < 16 || block > 1<<20 {
			http.Error(w, "want ?image=BYTES&block=BYTES (an image of 1 B to 1 GiB, blocks of 16 B to 1 MiB)", http.StatusBadRequest)
			return
		}
		writeJSON(w, b.UpdateCost(image, block))
	})
	mux.HandleFunc("PUT /boards/{name}/cut-at", func(w http.ResponseWriter, r *http.Request) {
		b := get(w, r)
		if b == nil {
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 32))
		if err != nil {
			http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
			return
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(body)), 10, 64)
		if err != nil || n < 1 || n > 1<<40 {
			http.Error(w, "body must be the number of flash operations from now, 1 or more", http.StatusBadRequest)
			return
		}
		s.armMu.Lock()
		if s.armed == nil {
			s.armed = map[string]func(){}
		}
		if disarm := s.armed[b.Name()]; disarm != nil {
			disarm()
		}
		s.armed[b.Name()] = b.ArmCut(n, nil)
		s.armMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("DELETE /boards/{name}/cut-at", func(w http.ResponseWriter, r *http.Request) {
		b := get(w, r)
		if b == nil {
			return
		}
		s.armMu.Lock()
		if disarm := s.armed[b.Name()]; disarm != nil {
			disarm()
			delete(s.armed, b.Name())
		}
		s.armMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sim: control endpoint %s: %w", addr, err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go s.http.Serve(ln)
	return ln.Addr(), nil
}
