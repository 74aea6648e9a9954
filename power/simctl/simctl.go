// Package simctl is the power driver "sim": it drives a simulated board's
// power input through the control endpoint of `fudbench sim`, for a bench
// whose boards run in another process. Importing it registers the driver.
//
// Settings:
//
//	url: http://127.0.0.1:7890   # the control endpoint
//	board: sim-safe              # the board's name
//
// On and Off are PUT /boards/{board}/power with body "on" or "off"; State
// is GET on the same path. The switch is also the board's witness: its own
// record of each cut (power.CutWitness), its flash counters and update
// cost (power.FlashMeter), and a cut at one of its own flash operations
// (power.CutArmer), so device_work cuts run on boards served by
// `fudbench sim` too.
package simctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fudbench/fudbench/power"
)

// Driver is the name the driver registers under.
const Driver = "sim"

// DefaultTimeout bounds a request when the caller's ctx has no deadline.
const DefaultTimeout = 10 * time.Second

// maxBody bounds how much of a response is read (the flash counters hold
// one number per sector).
const maxBody = 64 << 10

func init() {
	power.Register(Driver, open)
}

var (
	_ power.Switch      = (*Switch)(nil)
	_ power.StateReader = (*Switch)(nil)
)

// Switch drives one simulated board's power input.
type Switch struct {
	board   string
	power   string   // the power resource's URL
	lastCut string   // the board's latest cut record
	base    *url.URL // the board's resource
	client  *http.Client
}

// New returns a Switch for board behind the control endpoint at baseURL.
// A nil client is one with DefaultTimeout.
func New(baseURL, board string, client *http.Client) (*Switch, error) {
	if board == "" {
		return nil, errors.New("board: required")
	}
	if strings.Contains(board, "/") || board == "." || board == ".." {
		return nil, fmt.Errorf("board: %q is no board name", board)
	}
	if baseURL == "" {
		return nil, errors.New("url: required")
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("url: %q: scheme must be http or https", baseURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url: %q: no host", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("url: %q: a query or fragment has no place here", baseURL)
	}
	if client == nil {
		client = &http.Client{Timeout: DefaultTimeout}
	}
	return &Switch{board: board, power: u.JoinPath("boards", board, "power").String(),
		lastCut: u.JoinPath("boards", board, "cuts", "last").String(), base: u.JoinPath("boards", board), client: client}, nil
}

// String names the switch after its board, e.g. "sim:sim-safe".
func (s *Switch) String() string { return Driver + ":" + s.board }

// On powers the board.
func (s *Switch) On(ctx context.Context) error { return s.put(ctx, "on") }

// Off cuts the board's power.
func (s *Switch) Off(ctx context.Context) error { return s.put(ctx, "off") }

// State asks whether the board's power input is on.
func (s *Switch) State(ctx context.Context) (bool, error) {
	body, err := s.do(ctx, "state", http.MethodGet, "")
	if err != nil {
		return false, err
	}
	on, err := ParseState(body)
	if err != nil {
		return false, fmt.Errorf("%s: state: %w: %w", s, power.ErrDriver, err)
	}
	return on, nil
}

var _ power.CutWitness = (*Switch)(nil)

// LastCut asks the simulated board for its own record of its latest power
// cut (GET /boards/{board}/cuts/last).
func (s *Switch) LastCut(ctx context.Context) (power.CutRecord, bool, error) {
	body, err := s.doURL(ctx, "last cut", http.MethodGet, s.lastCut, nil, false)
	if err != nil {
		return power.CutRecord{}, false, err
	}
	rec, err := ParseLastCut(body)
	if err != nil {
		return power.CutRecord{}, false, fmt.Errorf("%s: last cut: %w: %w", s, power.ErrDriver, err)
	}
	return rec, rec.Seq > 0, nil
}

var (
	_ power.FlashMeter = (*Switch)(nil)
	_ power.CutArmer   = (*Switch)(nil)
)

// FlashStats asks the simulated board for its flash counters (GET
// /boards/{board}/flash).
func (s *Switch) FlashStats(ctx context.Context) (power.FlashStats, error) {
	body, err := s.doURL(ctx, "flash counters", http.MethodGet, s.base.JoinPath("flash").String(), nil, false)
	if err != nil {
		return power.FlashStats{}, err
	}
	st, err := ParseFlashStats(body)
	if err != nil {
		return power.FlashStats{}, fmt.Errorf("%s: flash counters: %w: %w", s, power.ErrDriver, err)
	}
	return st, nil
}

// UpdateCost asks the simulated board what its strategy needs for an
// image (GET /boards/{board}/cost).
func (s *Switch) UpdateCost(ctx context.Context, imageSize, blockSize int) (power.UpdateCost, error) {
	u := s.base.JoinPath("cost")
	u.RawQuery = url.Values{"image": {strconv.Itoa(imageSize)}, "block": {strconv.Itoa(blockSize)}}.Encode()
	body, err := s.doURL(ctx, "update cost", http.MethodGet, u.String(), nil, false)
	if err != nil {
		return power.UpdateCost{}, err
	}
	c, err := ParseUpdateCost(body)
	if err != nil {
		return power.UpdateCost{}, fmt.Errorf("%s: update cost: %w: %w", s, power.ErrDriver, err)
	}
	return c, nil
}

// cutPoll is how often an armed cut's board is asked whether it happened.
const cutPoll = 2 * time.Millisecond

// ArmCut arms a cut at the board's own flash operation afterOps
// operations from now (PUT /boards/{board}/cut-at) and watches its cut
// record for it: notify gets the instant the board recorded, a few
// milliseconds after the cut.
func (s *Switch) ArmCut(ctx context.Context, afterOps uint64, notify func(time.Time)) (func(), error) {
	before, _, err := s.LastCut(ctx)
	if err != nil {
		return nil, err
	}
	at := s.base.JoinPath("cut-at").String()
	if _, err := s.doURL(ctx, "arm cut", http.MethodPut, at, strings.NewReader(strconv.FormatUint(afterOps, 10)), true); err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(cutPoll)
		defer t.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-t.C:
			}
			rec, ok, err := s.LastCut(wctx)
			if err == nil && ok && rec.Seq > before.Seq {
				notify(rec.At)
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			stop()
			<-done
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s.doURL(dctx, "disarm cut", http.MethodDelete, at, nil, false)
		})
	}, nil
}

// ParseFlashStats parses the control endpoint's answer to GET .../flash.
func ParseFlashStats(body []byte) (power.FlashStats, error) {
	var st power.FlashStats
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("answer is not flash counters: %w", err)
	}
	if st.Programmed < 0 || st.Erased < 0 {
		return power.FlashStats{}, fmt.Errorf("flash counters out of range: programmed %d erased %d", st.Programmed, st.Erased)
	}
	return st, nil
}

// ParseUpdateCost parses the control endpoint's answer to GET .../cost.
func ParseUpdateCost(body []byte) (power.UpdateCost, error) {
	var c power.UpdateCost
	if err := json.Unmarshal(body, &c); err != nil {
		return c, fmt.Errorf("answer is not an update cost: %w", err)
	}
	if c.Space < 0 || c.Cache < 0 || len(c.Strategy) > 64 {
		return power.UpdateCost{}, fmt.Errorf("update cost out of range: space %d cache %d strategy of %d bytes", c.Space, c.Cache, len(c.Strategy))
	}
	return c, nil
}

// ParseLastCut parses the control endpoint's answer to GET .../cuts/last:
// {"seq": N, "at": …, "flash": {"Kind": …}, "block": …, "last_acked": …}.
func ParseLastCut(body []byte) (power.CutRecord, error) {
	var v struct {
		Seq   int       `json:"seq"`
		At    time.Time `json:"at"`
		Block int64     `json:"block"`
		Acked int64     `json:"last_acked"`
		Flash struct {
			Kind string
		} `json:"flash"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return power.CutRecord{}, fmt.Errorf("answer is not a cut record: %w", err)
	}
	if v.Seq < 0 || v.Block < -1 || v.Acked < -1 {
		return power.CutRecord{}, fmt.Errorf("cut record out of range: seq %d block %d last acked %d", v.Seq, v.Block, v.Acked)
	}
	return power.CutRecord{Seq: v.Seq, At: v.At, Writing: v.Block, LastAcked: v.Acked, Flash: v.Flash.Kind}, nil
}

// ParseState parses the control endpoint's answer to GET .../power.
func ParseState(body []byte) (bool, error) {
	switch strings.TrimSpace(string(body)) {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	if len(body) > 64 {
		body = body[:64]
	}
	return false, fmt.Errorf("answer %q is neither on nor off", body)
}

func (s *Switch) put(ctx context.Context, op string) error {
	// A switch request is not abandoned half-way: cancelling it would
	// leave the bench not knowing whether the board's power changed, and
	// the request may still be carried out after the caller's next one
	// (an off for the safe state). It is bounded by the caller's deadline,
	// or putTimeout.
	if err := ctx.Err(); err != nil {
		return s.wrap(op, err) // not sent
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(putTimeout)
	}
	pctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), dl)
	defer cancel()
	_, err := s.do(pctx, op, http.MethodPut, op)
	return err
}

// putTimeout bounds a switch request made without a deadline.
const putTimeout = 10 * time.Second

func (s *Switch) do(ctx context.Context, op, method, body string) ([]byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	return s.doURL(ctx, op, method, s.power, rd, body != "")
}

func (s *Switch) doURL(ctx context.Context, op, method, url string, rd io.Reader, text bool) ([]byte, error) {
	body := text
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w: %w", s, op, power.ErrDriver, err)
	}
	if body {
		req.Header.Set("Content-Type", "text/plain")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, s.wrap(op, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, s.wrap(op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s: %s: %w: %s %s: %s: %q", s, op, power.ErrDriver, method, url, resp.Status, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// wrap classes a transport error: a deadline is ErrTimeout, a cancel is
// the caller's own, anything else ErrDriver.
func (s *Switch) wrap(op string, err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %s: %w", s, op, err)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%s: %s: %w: %w", s, op, power.ErrTimeout, err)
	default:
		return fmt.Errorf("%s: %s: %w: %w", s, op, power.ErrDriver, err)
	}
}

// settings is the driver's part of the inventory.
type settings struct {
	URL   string `json:"url" yaml:"url"`
	Board string `json:"board" yaml:"board"`
}

func open(st power.Settings) (power.Switch, error) {
	var c settings
	if err := st.Decode(&c); err != nil {
		return nil, err
	}
	return New(c.URL, c.Board, nil)
}
