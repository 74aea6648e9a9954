package lab

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/results"
	"github.com/fudbench/fudbench/results/report"
)

// Tokens are the HTTP API's bearer tokens: Read lists and follows runs,
// Submit also submits and cancels them.
type Tokens struct {
	Read, Submit string
}

// NewToken returns a random token.
func NewToken() string {
	var b [24]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Limits of the HTTP API.
const (
	// MaxSubmitBody bounds a submission: a job file at its limit, as
	// JSON (base64), with room for its fields.
	MaxSubmitBody = config.MaxFileSize*4/3 + 64<<10
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes = 16 << 10
)

type scope int

const (
	scopeRead scope = iota
	scopeSubmit
)

// API is the coordinator's HTTP API and dashboard.
type API struct {
	C      *Coordinator
	Tokens Tokens
	// NATS is the URL agents connect to, as the API tells them.
	NATS string
	// Keys enrol agents on the embedded server; nil when the lab's NATS
	// is external (its own configuration names the agents).
	Keys *Keys
	Log  *slog.Logger
}

// Handler returns the API's routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.dashboard)
	mux.Handle("GET /api/v1/lab", a.auth(scopeRead, a.lab))
	mux.Handle("GET /api/v1/agents", a.auth(scopeRead, a.listAgents))
	mux.Handle("PUT /api/v1/agents/{name}/nkey", a.auth(scopeSubmit, a.enroll))
	mux.Handle("GET /api/v1/runs", a.auth(scopeRead, a.listRuns))
	mux.Handle("POST /api/v1/runs", a.auth(scopeSubmit, a.submit))
	mux.Handle("GET /api/v1/runs/{id}", a.auth(scopeRead, a.getRun))
	mux.Handle("POST /api/v1/runs/{id}/cancel", a.auth(scopeSubmit, a.cancel))
	mux.Handle("GET /api/v1/runs/{id}/cycles", a.auth(scopeRead, a.cycles))
	mux.Handle("GET /api/v1/runs/{id}/state", a.auth(scopeRead, a.state))
	mux.Handle("GET /api/v1/runs/{id}/junit.xml", a.auth(scopeRead, a.junit))
	mux.Handle("GET /api/v1/runs/{id}/summary.json", a.auth(scopeRead, a.summary))
	mux.Handle("GET /api/v1/runs/{id}/report.html", a.auth(scopeRead, a.report))
	mux.Handle("PUT /api/v1/images/{digest}", a.auth(scopeSubmit, a.putImage))
	mux.Handle("GET /api/v1/live", a.auth(scopeRead, a.live))
	return mux
}

// NewHTTPServer wraps h with the API's limits: header size and timeouts
// against slow clients (the live stream has no write timeout).
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
	}
}

// auth admits a request carrying a token of at least the scope, as a
// bearer header or (for the browser's live stream, which cannot set
// headers) an access_token query parameter.
func (a *API) auth(need scope, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			tok = r.URL.Query().Get("access_token")
		}
		var have scope = -1
		switch {
		case tok == "":
			w.Header().Set("WWW-Authenticate", `Bearer realm="fudbench"`)
			httpError(w, http.StatusUnauthorized, "a bearer token is required (see fudbench serve --help)")
			return
		case a.Tokens.Submit != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Tokens.Submit)) == 1:
			have = scopeSubmit
		case a.Tokens.Read != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Tokens.Read)) == 1:
			have = scopeRead
		}
		switch {
		case have < 0:
			w.Header().Set("WWW-Authenticate", `Bearer realm="fudbench", error="invalid_token"`)
			httpError(w, http.StatusUnauthorized, "the token is not one of this coordinator's")
		case have < need:
			httpError(w, http.StatusForbidden, "this token may read, not submit or cancel")
		default:
			h(w, r)
		}
	})
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// fail answers err with the status its kind calls for.
func (a *API) fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		httpError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrNoRun), errors.Is(err, results.ErrNoRun):
		httpError(w, http.StatusNotFound, err.Error())
	default:
		a.Log.Error("api", "err", err)
		httpError(w, http.StatusInternalServerError, err.Error())
	}
}

// LabInfo is what GET /api/v1/lab answers: where agents connect, and the
// lab's timings every agent must share.
type LabInfo struct {
	NATS     string        `json:"nats"`
	AckWait  time.Duration `json:"ack_wait"`
	LeaseTTL time.Duration `json:"lease_ttl"`
	// External says the NATS server is not the coordinator's: agents
	// are enrolled in its own configuration, not through the API.
	External bool `json:"external,omitempty"`
}

func (a *API) lab(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, LabInfo{NATS: a.NATS, AckWait: a.C.queue.ackWait, LeaseTTL: a.C.leases.ttl, External: a.Keys == nil})
}

// enroll admits an agent's public nkey (submit scope: enrolling an agent
// gives it the lab's jobs).
func (a *API) enroll(w http.ResponseWriter, r *http.Request) {
	if a.Keys == nil {
		httpError(w, http.StatusConflict, "this lab's NATS is external: enrol the agent in its configuration (docs/lab.md)")
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 256))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, "a public key is 56 bytes")
		return
	}
	err = a.Keys.Enroll(r.PathValue("name"), strings.TrimSpace(string(b)))
	switch {
	case errors.Is(err, ErrKeyConflict):
		httpError(w, http.StatusConflict, err.Error())
	case err != nil:
		a.fail(w, err)
	default:
		a.Log.Info("agent enrolled", "agent", r.PathValue("name"))
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *API) listAgents(w http.ResponseWriter, r *http.Request) {
	ags, err := a.C.Agents(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, ags)
}

func (a *API) listRuns(w http.ResponseWriter, r *http.Request) {
	runs, err := a.C.Runs(r.Context())
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, runs)
}

// SubmitRequest is the body of POST /api/v1/runs.
type SubmitRequest struct {
	JobFile string            `json:"job_file"`
	Job     []byte            `json:"job"`
	Images  map[string]string `json:"images,omitempty"`
	Pool    string            `json:"pool,omitempty"`
}

func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	var req SubmitRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxSubmitBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("submission over %d bytes", MaxSubmitBody))
		return
	}
	if err := json.Unmarshal(body, &req); err != nil {
		httpError(w, http.StatusBadRequest, "submission: "+err.Error())
		return
	}
	if req.JobFile == "" {
		req.JobFile = "job.yaml"
	}
	out, err := a.C.Submit(r.Context(), Submission(req))
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(out)
}

func (a *API) getRun(w http.ResponseWriter, r *http.Request) {
	st, err := a.C.Run(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, st)
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	st, err := a.C.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, st)
}

func (a *API) cycles(w http.ResponseWriter, r *http.Request) {
	var cs []results.Cycle
	var err error
	if since := r.URL.Query().Get("since"); since != "" {
		n, perr := strconv.Atoi(since)
		if perr != nil || n < 0 {
			httpError(w, http.StatusBadRequest, "since: want a count of cycles already seen")
			return
		}
		cs, err = a.C.db.CyclesSince(r.PathValue("id"), n)
	} else {
		cs, err = a.C.db.Cycles(r.PathValue("id"))
	}
	if err != nil {
		a.fail(w, err)
		return
	}
	if cs == nil {
		cs = []results.Cycle{}
	}
	writeJSON(w, cs)
}

func (a *API) state(w http.ResponseWriter, r *http.Request) {
	rs, err := a.C.ResumeState(r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, rs)
}

// finished reads a finished run's summary and cycles.
func (a *API) finished(w http.ResponseWriter, r *http.Request) (results.Summary, []results.Cycle, bool) {
	id := r.PathValue("id")
	s, ok, err := a.C.db.Summary(id)
	if err == nil && !ok {
		err = fmt.Errorf("run %s has not finished: %w", id, ErrNoRun)
	}
	var cs []results.Cycle
	if err == nil {
		cs, err = a.C.db.Cycles(id)
	}
	if err != nil {
		a.fail(w, err)
		return s, nil, false
	}
	return s, cs, true
}

func (a *API) junit(w http.ResponseWriter, r *http.Request) {
	s, cs, ok := a.finished(w, r)
	if !ok {
		return
	}
	b, err := results.MarshalJUnit(results.BuildJUnit(s, cs))
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.Write(b)
}

func (a *API) summary(w http.ResponseWriter, r *http.Request) {
	s, _, ok := a.finished(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(s)
}

func (a *API) report(w http.ResponseWriter, r *http.Request) {
	if _, _, ok := a.finished(w, r); !ok {
		return
	}
	in, err := report.FromDB(a.C.db, r.PathValue("id"))
	if err != nil {
		a.fail(w, err)
		return
	}
	rep, err := report.Build(*in)
	if err != nil {
		a.fail(w, err)
		return
	}
	var b bytes.Buffer
	if err := report.Render(&b, rep); err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b.Bytes())
}

func (a *API) putImage(w http.ResponseWriter, r *http.Request) {
	want := r.PathValue("digest")
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, fwimage.MaxImageSize))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("image over %d bytes", fwimage.MaxImageSize))
		return
	}
	if got := Digest(data); got != want {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("image bytes hash to %s, not %s", got, want))
		return
	}
	if _, err := a.C.images.Put(r.Context(), data); err != nil {
		a.fail(w, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// live streams updates as server-sent events: "run" with a RunState,
// "agents" with every agent (every few seconds).
func (a *API) live(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	rc := http.NewResponseController(w)
	ch, cancel := a.C.hub.subscribe()
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	send := func(kind string, data []byte) bool {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", kind, data)
		fl.Flush()
		return err == nil
	}
	agents := func(ctx context.Context) bool {
		ags, err := a.C.Agents(ctx)
		if err != nil {
			return true
		}
		b, _ := json.Marshal(ags)
		return send("agents", b)
	}
	runs, err := a.C.Runs(r.Context())
	if err == nil {
		for i := len(runs) - 1; i >= 0; i-- {
			b, _ := json.Marshal(runs[i])
			if !send("run", b) {
				return
			}
		}
	}
	if !agents(r.Context()) {
		return
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case m := <-ch:
			kind, data, _ := bytes.Cut(m, []byte("\n"))
			if !send(string(kind), data) {
				return
			}
		case <-tick.C:
			if !agents(r.Context()) {
				return
			}
		}
	}
}

//go:embed dashboard.html
var dashboardHTML []byte

func (a *API) dashboard(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	w.Write(dashboardHTML)
}
