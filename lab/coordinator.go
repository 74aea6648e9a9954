package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
)

// Coordinator is lab mode's centre: it queues submitted jobs, keeps each
// run's state, and writes what the agents report into the central
// results database, in order and once.
type Coordinator struct {
	js     jetstream.JetStream
	db     *results.DB
	log    *slog.Logger
	queue  *Queue
	images *Images
	leases *Leases
	runs   jetstream.KeyValue
	agents jetstream.KeyValue
	events jetstream.Stream

	mu     sync.Mutex // one read-modify-write of a run's state at a time
	hub    hub
	stored int // events stored, for the figures
}

// CoordinatorOptions configure a Coordinator.
type CoordinatorOptions struct {
	DB       *results.DB
	Log      *slog.Logger
	AckWait  time.Duration // the jobs' ack wait (DefaultAckWait when 0)
	LeaseTTL time.Duration // board leases' TTL (DefaultLeaseTTL when 0)
	// Replicas is how many servers of a cluster keep each stream and
	// bucket (1 when 0; 3 for a lab that must outlive a server).
	Replicas int
}

// NewCoordinator opens (creating where needed) every stream and bucket
// of the lab on js.
func NewCoordinator(ctx context.Context, js jetstream.JetStream, o CoordinatorOptions) (*Coordinator, error) {
	c := &Coordinator{js: js, db: o.DB, log: o.Log}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	r := max(o.Replicas, 1)
	var err error
	if c.queue, err = openQueue(ctx, js, o.AckWait, r); err != nil {
		return nil, err
	}
	if c.images, err = openImages(ctx, js, r); err != nil {
		return nil, err
	}
	if c.leases, err = openLeases(ctx, js, o.LeaseTTL, r); err != nil {
		return nil, err
	}
	if c.runs, err = openRuns(ctx, js, r); err != nil {
		return nil, err
	}
	if c.agents, err = openAgents(ctx, js, r); err != nil {
		return nil, err
	}
	if c.events, err = openEvents(ctx, js, r); err != nil {
		return nil, err
	}
	return c, nil
}

// Images is the lab's image store.
func (c *Coordinator) Images() *Images { return c.images }

// DB is the central results database.
func (c *Coordinator) DB() *results.DB { return c.db }

// Submission is a job handed to the coordinator.
type Submission struct {
	JobFile string
	Job     []byte
	Images  map[string]string // resolved image path → digest, already stored
	Pool    string
}

// Submitted is the coordinator's answer to a submission.
type Submitted struct {
	Run RunState `json:"run"`
	// Warning says why the run may wait long (no agent serves its pool).
	Warning string `json:"warning,omitempty"`
}

// ErrInvalid marks a submission refused for what it is (exit 2): a bad
// job file, a missing image, a pool no agent could run it in.
var ErrInvalid = errors.New("invalid submission")

// Submit validates a job and queues it. Nothing is queued when it fails.
func (c *Coordinator) Submit(ctx context.Context, s Submission) (Submitted, error) {
	if s.Pool == "" {
		s.Pool = DefaultPool
	}
	if err := CheckToken("pool", s.Pool); err != nil {
		return Submitted{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	j, err := jobs.Parse(s.JobFile, s.Job)
	if err != nil {
		return Submitted{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, im := range []jobs.ImageSpec{j.Baseline, j.Image} {
		if im.File == "" {
			continue
		}
		d, ok := s.Images[im.File]
		if !ok {
			return Submitted{}, fmt.Errorf("%w: %s: image %s was not uploaded", ErrInvalid, s.JobFile, im.File)
		}
		if _, err := c.images.obs.GetInfo(ctx, d); err != nil {
			return Submitted{}, fmt.Errorf("%w: %s: image %s (%s): %w", ErrInvalid, s.JobFile, im.File, d, err)
		}
	}
	var out Submitted
	agents, err := c.Agents(ctx)
	if err != nil {
		return Submitted{}, err
	}
	serving, fits := 0, 0
	for _, a := range agents {
		var inv []boards.Board
		for _, b := range a.Boards {
			if b.Pool == s.Pool {
				inv = append(inv, boards.Board{Name: b.Name, Tags: b.Tags})
			}
		}
		if len(inv) == 0 {
			continue
		}
		serving++
		if names, err := j.SelectBoards(inv); err == nil && len(names) > 0 {
			fits++
		} else if fits == 0 && err != nil {
			out.Warning = err.Error()
		}
	}
	switch {
	case serving == 0:
		out.Warning = fmt.Sprintf("no agent serves pool %s now: the run waits until one does", s.Pool)
	case fits == 0:
		return Submitted{}, fmt.Errorf("%w: no agent of pool %s has the boards the job names (%s)", ErrInvalid, s.Pool, out.Warning)
	default:
		out.Warning = ""
	}
	now := time.Now().UTC()
	t := Task{Run: NewRunID(now), Pool: s.Pool, JobFile: s.JobFile, Job: s.Job, Images: s.Images, Submitted: now}
	body, err := json.Marshal(t)
	if err != nil {
		return Submitted{}, err
	}
	st := RunState{ID: t.Run, Job: j.Name, JobFile: s.JobFile, Pool: s.Pool, Status: StatusQueued, Submitted: now}
	h := sha256.Sum256(s.Job)
	if err := c.db.PutRun(results.RunInfo{ID: t.Run, Job: j.Name, JobFile: s.JobFile, JobHash: hex.EncodeToString(h[:]), Started: now}, StatusQueued); err != nil {
		return Submitted{}, err
	}
	if err := c.putRun(ctx, st); err != nil {
		return Submitted{}, err
	}
	if _, err := c.queue.Submit(ctx, s.Pool, t.Run, body); err != nil {
		return Submitted{}, err
	}
	c.log.Info("queued", "run", t.Run, "job", j.Name, "pool", s.Pool)
	out.Run = st
	return out, nil
}

// DefaultPool is the pool of a board whose bench entry names none, and
// of a job submitted without one.
const DefaultPool = "default"

// putRun writes a run's state and tells the watchers.
func (c *Coordinator) putRun(ctx context.Context, st RunState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := c.runs.Put(ctx, st.ID, b); err != nil {
		return fmt.Errorf("lab: run %s: %w", st.ID, err)
	}
	c.hub.publish("run", b)
	return nil
}

// update changes a run's state under the coordinator's lock.
func (c *Coordinator) update(ctx context.Context, id string, f func(*RunState)) (RunState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _, err := getRun(ctx, c.runs, id)
	if err != nil {
		return RunState{}, err
	}
	f(&st)
	return st, c.putRun(ctx, st)
}

// Run returns a run's state.
func (c *Coordinator) Run(ctx context.Context, id string) (RunState, error) {
	st, _, err := getRun(ctx, c.runs, id)
	return st, err
}

// Runs lists every run the lab knows, newest first.
func (c *Coordinator) Runs(ctx context.Context) ([]RunState, error) {
	lister, err := c.runs.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: runs: %w", err)
	}
	var out []RunState
	for k := range lister.Keys() {
		if st, _, err := getRun(ctx, c.runs, k); err == nil {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Submitted.After(out[k].Submitted) })
	return out, nil
}

// Cancel stops a run: a queued one never runs, a running one is stopped
// by its agent (boards to their safe state, cycles recorded so far kept).
func (c *Coordinator) Cancel(ctx context.Context, id string) (RunState, error) {
	return c.update(ctx, id, func(st *RunState) {
		switch st.Status {
		case StatusQueued, StatusRequeued:
			st.Status, st.Exit, st.Finished = StatusCancelled, 130, time.Now().UTC()
			if err := c.db.FinishRun(id, StatusCancelled, results.Summary{}); err != nil {
				c.log.Error("cancel", "run", id, "err", err)
			}
		case StatusRunning:
			st.Status = StatusCancelling
		}
	})
}

// Agents lists the agents alive now.
func (c *Coordinator) Agents(ctx context.Context) ([]AgentInfo, error) {
	lister, err := c.agents.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("lab: agents: %w", err)
	}
	var out []AgentInfo
	for k := range lister.Keys() {
		e, err := c.agents.Get(ctx, k)
		if err != nil {
			continue // expired between the listing and now
		}
		var a AgentInfo
		if json.Unmarshal(e.Value(), &a) == nil {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, k int) bool { return out[i].Name < out[k].Name })
	return out, nil
}

// Ingest writes the agents' messages to the database until ctx ends: in
// stream order, each acknowledged only once written, so a coordinator
// that dies part-way reads the rest again after a restart and stores
// nothing twice.
func (c *Coordinator) Ingest(ctx context.Context) error {
	cons, err := c.js.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{
		Durable:       "coordinator",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 1000,
		MaxDeliver:    -1,
	})
	if err != nil {
		return fmt.Errorf("lab: events consumer: %w", err)
	}
	for ctx.Err() == nil {
		batch, err := cons.Fetch(200, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			c.log.Warn("events: fetch", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		for m := range batch.Messages() {
			if err := c.handle(ctx, m); err != nil {
				c.log.Error("events: store", "subject", m.Subject(), "err", err)
				m.NakWithDelay(time.Second)
				continue
			}
			m.Ack()
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// handle stores one agent message.
func (c *Coordinator) handle(ctx context.Context, m jetstream.Msg) error {
	msg, err := DecodeMessage(m.Subject(), m.Data())
	if err != nil {
		c.log.Error("events: a message that does not decode is dropped", "err", err)
		return nil
	}
	// Only the agent that took the run last reports on it: a late
	// message of an attempt another agent has taken over (an agent that
	// lost the coordinator, then came back) tells nothing the new one
	// does not redo.
	if msg.Kind != MsgStart {
		st, _, err := getRun(ctx, c.runs, msg.Run)
		if err != nil {
			return ignoreNoRun(err)
		}
		// (A run cancelled while its agent was away is closed by the
		// agent that takes it next.)
		closing := msg.Kind == MsgEnd && msg.End.Status == StatusCancelled && st.Status == StatusCancelling
		if (st.Agent != msg.Agent || st.Attempt != msg.Attempt) && !closing {
			c.log.Warn("events: a message of an attempt that no longer runs is dropped", "run", msg.Run,
				"agent", msg.Agent, "attempt", msg.Attempt, "running", st.Agent, "running attempt", st.Attempt)
			return nil
		}
	}
	switch msg.Kind {
	case MsgStart:
		info := *msg.Info
		info.ID = msg.Run
		if err := c.db.PutRun(info, results.RunRunning); err != nil {
			return err
		}
		_, err := c.update(ctx, msg.Run, func(st *RunState) {
			if st.Ended() {
				return
			}
			if st.Status != StatusCancelling {
				st.Status = StatusRunning
			}
			st.Agent, st.Attempt, st.Boards = msg.Agent, msg.Attempt, info.Boards
			st.Planned = 0
			for _, n := range info.Planned {
				st.Planned += n
			}
			if st.Started.IsZero() {
				st.Started = time.Now().UTC()
			}
		})
		return ignoreNoRun(err)
	case MsgEvents:
		n, err := c.db.StoreEvents(msg.Run, m.Headers().Get(jetstream.MsgIDHeader), msg.Events)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.stored += n
		c.mu.Unlock()
		return nil
	case MsgCycle:
		cy := *msg.Cycle
		cy.Run, cy.Nonces = msg.Run, msg.Nonces
		if err := c.db.RecordCycle(cy); err != nil {
			return err
		}
		cs, err := c.db.Cycles(msg.Run)
		if err != nil {
			return err
		}
		failed := 0
		for _, x := range cs {
			if !x.Accepted {
				failed++
			}
		}
		_, err = c.update(ctx, msg.Run, func(st *RunState) { st.Done, st.Failed = len(cs), failed })
		return ignoreNoRun(err)
	case MsgEnd:
		return c.finish(ctx, msg)
	}
	return nil
}

func ignoreNoRun(err error) error {
	if errors.Is(err, ErrNoRun) {
		return nil
	}
	return err
}

// finish records how a run ended on an agent. The summary is the central
// store's, over every cycle of every attempt.
func (c *Coordinator) finish(ctx context.Context, msg Message) error {
	e := *msg.End
	rec, err := c.db.Run(msg.Run)
	if err != nil {
		return ignoreNoRun(err)
	}
	cs, err := c.db.Cycles(msg.Run)
	if err != nil {
		return err
	}
	sum := results.Summarize(rec.RunInfo, cs)
	status := e.Status
	if e.Status == StatusRequeued {
		if err := c.db.PutRun(rec.RunInfo, StatusRequeued); err != nil {
			return err
		}
	} else if err := c.db.FinishRun(msg.Run, status, sum); err != nil {
		return err
	}
	_, err = c.update(ctx, msg.Run, func(st *RunState) {
		if st.Ended() {
			return // a late message of an earlier attempt
		}
		st.Status, st.Exit, st.Error = status, e.Exit, e.Error
		st.Done = len(cs)
		if e.Status != StatusRequeued {
			st.Finished = time.Now().UTC()
		}
	})
	c.log.Info("run ended", "run", msg.Run, "agent", msg.Agent, "status", status, "exit", e.Exit, "why", e.Error)
	return ignoreNoRun(err)
}

// Stored is how many events the coordinator has stored since it started.
func (c *Coordinator) Stored() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored
}

// ResumeState is what an agent needs to continue a run another agent
// began: its recorded cycles and the device nonces seen so far.
type ResumeState struct {
	Info   results.RunInfo    `json:"info"`
	Cycles []results.Cycle    `json:"cycles"`
	Nonces []results.NonceUse `json:"nonces"`
}

// ResumeState reads a run's recorded cycles and nonces.
func (c *Coordinator) ResumeState(id string) (ResumeState, error) {
	rec, err := c.db.Run(id)
	if err != nil {
		return ResumeState{}, err
	}
	cs, err := c.db.Cycles(id)
	if err != nil {
		return ResumeState{}, err
	}
	ns, err := c.db.Nonces(id)
	if err != nil {
		return ResumeState{}, err
	}
	return ResumeState{Info: rec.RunInfo, Cycles: cs, Nonces: ns}, nil
}

// hub hands live updates to the dashboard's listeners.
type hub struct {
	mu   sync.Mutex
	subs map[chan []byte]bool
}

// subscribe returns a channel of updates ("kind\ndata") and its cancel.
func (h *hub) subscribe() (chan []byte, func()) {
	ch := make(chan []byte, 64)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = map[chan []byte]bool{}
	}
	h.subs[ch] = true
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
	}
}

func (h *hub) publish(kind string, data []byte) {
	msg := slices.Concat([]byte(kind+"\n"), data)
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- msg:
		default: // a slow listener misses an update; the next one carries the state
		}
	}
}
