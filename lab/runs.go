package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Buckets of the coordinator's state.
const (
	// RunsBucket holds each run's state (RunState), written by the
	// coordinator alone; agents watch their run's key to see a cancel.
	RunsBucket = "fudbench_runs"
	// AgentsBucket holds each agent's announcement (AgentInfo), renewed
	// while the agent lives.
	AgentsBucket = "fudbench_agents"
)

// Task is a queued job as an agent takes it.
type Task struct {
	Run  string `json:"run"`
	Pool string `json:"pool"`
	// JobFile is the job file's path as submitted: errors name it, and
	// relative image paths were resolved against it.
	JobFile string `json:"job_file"`
	Job     []byte `json:"job"`
	// Images maps each image file the job names (its resolved path) to
	// its digest in the object store.
	Images    map[string]string `json:"images,omitempty"`
	Submitted time.Time         `json:"submitted"`
}

// DecodeTask reads a queued job's body.
func DecodeTask(data []byte) (Task, error) {
	var t Task
	if err := json.Unmarshal(data, &t); err != nil {
		return Task{}, fmt.Errorf("job: %w", err)
	}
	if err := CheckToken("run", t.Run); err != nil {
		return Task{}, fmt.Errorf("job: %w", err)
	}
	if err := CheckToken("pool", t.Pool); err != nil {
		return Task{}, fmt.Errorf("job %s: %w", t.Run, err)
	}
	return t, nil
}

// RunState is a run as the coordinator knows it.
type RunState struct {
	ID      string `json:"id"`
	Job     string `json:"job"`
	JobFile string `json:"job_file"`
	Pool    string `json:"pool"`
	// Status is queued, running, cancelling, a verdict (pass, fail,
	// infra-error), cancelled or error.
	Status  string   `json:"status"`
	Agent   string   `json:"agent,omitempty"`
	Attempt int      `json:"attempt,omitempty"`
	Boards  []string `json:"boards,omitempty"`
	// Planned and Done count cycles over all boards.
	Planned int `json:"planned"`
	Done    int `json:"done"`
	// Failed counts cycles whose outcome the job does not accept.
	Failed    int       `json:"failed"`
	Exit      int       `json:"exit"` // `fudbench run`'s exit code, once finished
	Error     string    `json:"error,omitempty"`
	Submitted time.Time `json:"submitted"`
	Started   time.Time `json:"started,omitzero"`
	Finished  time.Time `json:"finished,omitzero"`
}

// Finished reports whether the run has ended for good.
func (r RunState) Ended() bool {
	switch r.Status {
	case StatusQueued, StatusRunning, StatusCancelling, StatusRequeued:
		return false
	}
	return true
}

// NewRunID names a new run: its submission time and 48 random bits.
func NewRunID(now time.Time) string {
	var b [6]byte
	rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// openKV creates a KV bucket or takes it as it is.
func openKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("lab: bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

func openRuns(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	return openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: RunsBucket, Description: "fudbench runs", Storage: jetstream.FileStorage, History: 1, Replicas: replicas,
	})
}

// getRun reads a run's state from the bucket.
func getRun(ctx context.Context, kv jetstream.KeyValue, id string) (RunState, uint64, error) {
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return RunState{}, 0, fmt.Errorf("run %s: %w", id, ErrNoRun)
	}
	if err != nil {
		return RunState{}, 0, fmt.Errorf("lab: run %s: %w", id, err)
	}
	var r RunState
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return RunState{}, 0, fmt.Errorf("lab: run %s: %w", id, err)
	}
	return r, e.Revision(), nil
}

// ErrNoRun is returned for a run the lab does not know.
var ErrNoRun = errors.New("no such run")

// AgentInfo is what an agent announces.
type AgentInfo struct {
	Name    string      `json:"name"`
	Host    string      `json:"host"`
	Version string      `json:"version"`
	Started time.Time   `json:"started"`
	Seen    time.Time   `json:"seen"`
	Boards  []BoardInfo `json:"boards"`
}

// BoardInfo is one board of an agent.
type BoardInfo struct {
	Name  string   `json:"name"`
	Tags  []string `json:"tags,omitempty"`
	Pool  string   `json:"pool"`
	Power string   `json:"power,omitempty"` // driver names
	Probe string   `json:"probe,omitempty"`
	// Run is the run the agent is running on the board, if any; Last
	// the board's last cycle outcome.
	Run  string `json:"run,omitempty"`
	Last string `json:"last,omitempty"`
	// Health is "ok" once a cycle ran without a bench fault, the fault
	// ("infra-error in cycle 3: …") after one; "" before any cycle.
	Health string `json:"health,omitempty"`
}

// AgentTTL is how long an agent's announcement lasts without renewal.
const AgentTTL = 15 * time.Second

func openAgents(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	return openKV(ctx, js, jetstream.KeyValueConfig{
		Bucket: AgentsBucket, Description: "fudbench agents and their boards",
		Storage: jetstream.FileStorage, History: 1, TTL: AgentTTL, Replicas: replicas,
	})
}
