package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fudbench/fudbench/results"
)

// Client talks to a coordinator's HTTP API.
type Client struct {
	URL   string // http://host:port
	Token string
	HTTP  *http.Client
}

// Errors of the API, by kind.
var (
	// ErrUnauthorized is the API refusing the client's token.
	ErrUnauthorized = errors.New("not authorized")
	// ErrConflict is a request the lab's state refuses (an agent name
	// enrolled with another key).
	ErrConflict = errors.New("refused")
)

// MaxResponse bounds what the client reads of one answer.
const MaxResponse = 256 << 20

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, ctype string, out any) error {
	path, query, _ := strings.Cut(path, "?")
	u, err := url.JoinPath(c.URL, path)
	if err != nil {
		return fmt.Errorf("server URL %q: %w", c.URL, err)
	}
	if query != "" {
		u += "?" + query
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Minute}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("coordinator %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	if err != nil {
		return fmt.Errorf("coordinator %s: %s: %w", c.URL, path, err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("coordinator %s: %w: %s", c.URL, ErrUnauthorized, msg)
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			return fmt.Errorf("%w: %s", ErrInvalid, msg)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", ErrNoRun, msg)
		case http.StatusConflict:
			return fmt.Errorf("%w: %s", ErrConflict, msg)
		}
		return fmt.Errorf("coordinator %s: %s: %s", c.URL, resp.Status, msg)
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = data
	default:
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("coordinator %s: %s: %w", c.URL, path, err)
		}
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, "", out)
}

// Lab reads where agents connect.
func (c *Client) Lab(ctx context.Context) (LabInfo, error) {
	var li LabInfo
	return li, c.getJSON(ctx, "/api/v1/lab", &li)
}

// Enroll enrols an agent's public nkey.
func (c *Client) Enroll(ctx context.Context, name, pub string) error {
	return c.do(ctx, http.MethodPut, "/api/v1/agents/"+url.PathEscape(name)+"/nkey", strings.NewReader(pub), "text/plain", nil)
}

// PutImage uploads an image under its digest.
func (c *Client) PutImage(ctx context.Context, data []byte) (string, error) {
	d := Digest(data)
	return d, c.do(ctx, http.MethodPut, "/api/v1/images/"+d, bytes.NewReader(data), "application/octet-stream", nil)
}

// Submit submits a job.
func (c *Client) Submit(ctx context.Context, req SubmitRequest) (Submitted, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return Submitted{}, err
	}
	var out Submitted
	return out, c.do(ctx, http.MethodPost, "/api/v1/runs", bytes.NewReader(b), "application/json", &out)
}

// Run reads a run's state.
func (c *Client) Run(ctx context.Context, id string) (RunState, error) {
	var st RunState
	return st, c.getJSON(ctx, "/api/v1/runs/"+url.PathEscape(id), &st)
}

// Runs lists the lab's runs, newest first.
func (c *Client) Runs(ctx context.Context) ([]RunState, error) {
	var out []RunState
	return out, c.getJSON(ctx, "/api/v1/runs", &out)
}

// Agents lists the agents alive now.
func (c *Client) Agents(ctx context.Context) ([]AgentInfo, error) {
	var out []AgentInfo
	return out, c.getJSON(ctx, "/api/v1/agents", &out)
}

// Cancel cancels a run.
func (c *Client) Cancel(ctx context.Context, id string) (RunState, error) {
	var st RunState
	return st, c.do(ctx, http.MethodPost, "/api/v1/runs/"+url.PathEscape(id)+"/cancel", nil, "", &st)
}

// Cycles reads a run's recorded cycles.
func (c *Client) Cycles(ctx context.Context, id string) ([]results.Cycle, error) {
	var out []results.Cycle
	return out, c.getJSON(ctx, "/api/v1/runs/"+url.PathEscape(id)+"/cycles", &out)
}

// CyclesSince reads a run's cycles in the order they were recorded,
// skipping the first skip.
func (c *Client) CyclesSince(ctx context.Context, id string, skip int) ([]results.Cycle, error) {
	var out []results.Cycle
	return out, c.getJSON(ctx, fmt.Sprintf("/api/v1/runs/%s/cycles?since=%d", url.PathEscape(id), skip), &out)
}

// State reads what an agent needs to resume a run.
func (c *Client) State(ctx context.Context, id string) (ResumeState, error) {
	var out ResumeState
	return out, c.getJSON(ctx, "/api/v1/runs/"+url.PathEscape(id)+"/state", &out)
}

// Artifact reads a finished run's junit.xml, summary.json or report.html.
func (c *Client) Artifact(ctx context.Context, id, name string) ([]byte, error) {
	var b []byte
	return b, c.do(ctx, http.MethodGet, "/api/v1/runs/"+url.PathEscape(id)+"/"+name, nil, "", &b)
}
