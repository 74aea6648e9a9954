package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
)

// Assignment is a job an agent runs, ready for the executor: the job
// parsed with its images on local disk, a local results database (seeded
// with the cycles an earlier attempt recorded, when there are any), and
// the hooks that send everything to the coordinator.
type Assignment struct {
	Task    Task
	Attempt int
	Job     *jobs.Job
	// Boards are the agent's boards of the task's pool.
	Boards []boards.Board
	// Run names the run: the coordinator's ID, and the job hash under
	// which DB holds the cycles to resume from.
	Run    results.RunInfo
	DB     *results.DB
	Resume bool
	OutDir string
	Locker jobs.Locker
	Sinks  []results.Sink
	// Recorded sends a durable cycle (jobs.RunOptions.Recorded).
	Recorded func(results.Cycle) error
	// Started tells the coordinator the run's boards and plan, once
	// known, before the first cycle.
	Started func(results.RunInfo)
}

// ExecFunc runs an assignment and says how it ended. ctx ends when the
// run is cancelled or the agent stops; the executor leaves the boards in
// their safe state either way.
type ExecFunc func(ctx context.Context, a *Assignment) End

// AgentOptions configure an Agent.
type AgentOptions struct {
	Name    string
	Host    string
	Version string
	// Boards are the agent's boards; each serves in its Pool (or
	// DefaultPool).
	Boards []boards.Board
	// Dir holds each run's local files while it runs.
	Dir string
	// State fetches a run's recorded cycles from the coordinator, for a
	// job taken again after another agent died with it.
	State func(ctx context.Context, run string) (ResumeState, error)
	Exec  ExecFunc
	Log   *slog.Logger
	// AckWait must match the queue's (DefaultAckWait when 0).
	AckWait  time.Duration
	LeaseTTL time.Duration // DefaultLeaseTTL when 0
	// Connected reports whether the agent's NATS connection is up; an
	// agent that has lost it for half the ack wait stops its run (the
	// job will be delivered to another agent). nil: always.
	Connected func() bool
}

// Agent takes jobs for the pools of its boards and runs them.
type Agent struct {
	o      AgentOptions
	js     jetstream.JetStream
	queue  *Queue
	images *Images
	leases *Leases
	runs   jetstream.KeyValue
	agents jetstream.KeyValue

	kick    chan struct{} // announce now: a board was taken or freed
	mu      sync.Mutex
	running map[string]string // board → run
	last    map[string]string // board → last outcome
	health  map[string]string // board → BoardInfo.Health
	started time.Time
}

// NewAgent binds to the lab's streams and buckets on js (which the
// coordinator creates), waiting for them until ctx ends.
func NewAgent(ctx context.Context, js jetstream.JetStream, o AgentOptions) (*Agent, error) {
	if err := CheckToken("agent", o.Name); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.AckWait <= 0 {
		o.AckWait = DefaultAckWait
	}
	for i := range o.Boards {
		b := &o.Boards[i]
		if b.Pool == "" {
			b.Pool = DefaultPool
		}
		if err := CheckToken("pool", b.Pool); err != nil {
			return nil, fmt.Errorf("board %s: %w", b.Name, err)
		}
		if err := CheckName("board", o.Name+"."+b.Name); err != nil {
			return nil, err
		}
	}
	a := &Agent{o: o, js: js, kick: make(chan struct{}, 1), running: map[string]string{}, last: map[string]string{}, health: map[string]string{}, started: time.Now().UTC()}
	for {
		err := a.bind(ctx)
		if err == nil {
			return a, nil
		}
		o.Log.Warn("waiting for the coordinator's streams", "err", err)
		sleep(ctx, time.Second)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("lab: agent %s: %w", o.Name, errors.Join(err, ctx.Err()))
		}
	}
}

func (a *Agent) bind(ctx context.Context) error {
	if _, err := a.js.Stream(ctx, EventsStream); err != nil {
		return fmt.Errorf("events stream: %w", err)
	}
	var err error
	if _, err = a.js.Stream(ctx, JobsStream); err != nil {
		return fmt.Errorf("jobs stream: %w", err)
	}
	a.queue = &Queue{js: a.js, ackWait: a.o.AckWait}
	obs, err := a.js.ObjectStore(ctx, ImagesBucket)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	a.images = &Images{obs: obs}
	kv, err := a.js.KeyValue(ctx, LeasesBucket)
	if err != nil {
		return fmt.Errorf("leases: %w", err)
	}
	ttl := a.o.LeaseTTL
	if ttl == 0 {
		ttl = DefaultLeaseTTL
	}
	a.leases = &Leases{js: a.js, kv: kv, ttl: ttl}
	if a.runs, err = a.js.KeyValue(ctx, RunsBucket); err != nil {
		return fmt.Errorf("runs: %w", err)
	}
	if a.agents, err = a.js.KeyValue(ctx, AgentsBucket); err != nil {
		return fmt.Errorf("agents: %w", err)
	}
	return nil
}

// Claim makes sure no other live agent has the agent's name: two agents
// of one name would lease each other's boards.
func (a *Agent) Claim(ctx context.Context) error {
	e, err := a.agents.Get(ctx, a.o.Name)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return a.announce(ctx)
	}
	if err != nil {
		return fmt.Errorf("lab: agent %s: %w", a.o.Name, err)
	}
	var other AgentInfo
	if json.Unmarshal(e.Value(), &other) == nil && time.Since(other.Seen) < AgentTTL {
		return fmt.Errorf("an agent named %s (host %s, up since %s) is in the lab already: give this one another --name",
			a.o.Name, other.Host, other.Started.Local().Format(time.DateTime))
	}
	return a.announce(ctx)
}

// Pools lists the pools of the agent's boards.
func (a *Agent) Pools() []string {
	seen := map[string]bool{}
	var out []string
	for _, b := range a.o.Boards {
		if !seen[b.Pool] {
			seen[b.Pool] = true
			out = append(out, b.Pool)
		}
	}
	sort.Strings(out)
	return out
}

// Run announces the agent and takes jobs until ctx ends; a job running
// then is stopped (boards to their safe state) and given back to the
// queue, to be resumed by another agent of its pool.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.announceLoop(ctx) })
	errs := make(chan error, len(a.Pools()))
	for _, pool := range a.Pools() {
		n := 0
		for _, b := range a.o.Boards {
			if b.Pool == pool {
				n++
			}
		}
		p, err := a.queue.Pool(ctx, pool, a.poolSize(ctx, pool, n))
		if err != nil {
			return err
		}
		wg.Go(func() { errs <- a.take(ctx, p) })
	}
	wg.Wait()
	close(errs)
	var all error
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			all = errors.Join(all, err)
		}
	}
	// Leave the lab: the dashboard shows the agent gone at once.
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	a.agents.Delete(dctx, a.o.Name)
	return all
}

// poolSize is the number of boards in pool over the agents announced now
// and this one: the jobs of the pool that may be running at once.
func (a *Agent) poolSize(ctx context.Context, pool string, mine int) int {
	n := mine
	lister, err := a.agents.ListKeys(ctx)
	if err != nil {
		return n
	}
	for k := range lister.Keys() {
		if k == a.o.Name {
			continue
		}
		if e, err := a.agents.Get(ctx, k); err == nil {
			var info AgentInfo
			if json.Unmarshal(e.Value(), &info) == nil {
				for _, b := range info.Boards {
					if b.Pool == pool {
						n++
					}
				}
			}
		}
	}
	return n
}

func (a *Agent) announceLoop(ctx context.Context) {
	t := time.NewTicker(AgentTTL / 3)
	defer t.Stop()
	for {
		if err := a.announce(ctx); err != nil && ctx.Err() == nil {
			a.o.Log.Warn("announce", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
		}
	}
}

// reannounce makes the announce loop announce the boards' state now.
func (a *Agent) reannounce() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Info is what the agent announces now.
func (a *Agent) Info() AgentInfo {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := AgentInfo{Name: a.o.Name, Host: a.o.Host, Version: a.o.Version, Started: a.started, Seen: time.Now().UTC()}
	for _, b := range a.o.Boards {
		bi := BoardInfo{Name: b.Name, Tags: b.Tags, Pool: b.Pool, Run: a.running[b.Name], Last: a.last[b.Name], Health: a.health[b.Name]}
		if b.Power != nil {
			bi.Power = b.Power.Driver
		}
		if b.Probe != nil {
			bi.Probe = b.Probe.Driver
		}
		info.Boards = append(info.Boards, bi)
	}
	return info
}

func (a *Agent) announce(ctx context.Context) error {
	b, err := json.Marshal(a.Info())
	if err != nil {
		return err
	}
	_, err = a.agents.Put(ctx, a.o.Name, b)
	return err
}

// take runs the pool's jobs one after another until ctx ends.
func (a *Agent) take(ctx context.Context, p *Pool) error {
	for {
		d, err := p.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.o.Log.Warn("taking a job", "pool", p.name, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		a.handle(ctx, d)
	}
}

// errCancelled ends a run cancelled through the coordinator.
var errCancelled = errors.New("run cancelled")

// handle runs one delivered job to its end.
func (a *Agent) handle(ctx context.Context, d *Delivery) {
	log := a.o.Log.With("run", d.RunID, "attempt", d.Attempt)
	t, err := DecodeTask(d.Body)
	if err != nil {
		log.Error("a job that does not decode is dropped", "err", err)
		d.Done()
		return
	}
	st, _, err := getRun(ctx, a.runs, t.Run)
	if err == nil && (st.Ended() || st.Status == StatusCancelling) {
		log.Info("run already ended; not run again", "status", st.Status)
		if st.Status == StatusCancelling {
			a.publishEnd(ctx, t.Run, int(d.Attempt), End{Status: StatusCancelled, Exit: 130, Error: "cancelled before it started"})
		}
		d.Done()
		return
	}
	// A job this agent's boards of the pool cannot run is left to the
	// pool's other agents (the coordinator refused it if none could).
	if j, err := jobs.Parse(t.JobFile, t.Job); err == nil {
		if _, err := j.SelectBoards(a.poolBoards(t.Pool)); err != nil {
			log.Debug("leaving the job to another agent of the pool", "why", err)
			d.Retry(time.Second)
			return
		}
	}
	runCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	// Keep the job ours while it runs, and watch for a cancel.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop(nil)
	wg.Go(func() {
		tick := time.NewTicker(a.o.AckWait / 4)
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-tick.C:
				if err := d.Progress(); err != nil {
					log.Warn("job progress", "err", err)
				}
			}
		}
	})
	wg.Go(func() { a.watchCancel(runCtx, t.Run, stop) })
	if a.o.Connected != nil {
		wg.Go(func() { a.watchConnection(runCtx, stop) })
	}

	log.Info("running", "job", t.JobFile, "pool", t.Pool)
	pub := NewPublisher(a.js, t.Run, a.o.Name, int(d.Attempt), log)
	end := a.run(runCtx, t, int(d.Attempt), pub)
	switch {
	case errors.Is(context.Cause(runCtx), errCancelled):
		end = End{Status: StatusCancelled, Exit: 130, Error: "cancelled"}
	case ctx.Err() != nil:
		end = End{Status: StatusRequeued, Exit: 130, Error: "agent " + a.o.Name + " stopped"}
	case errors.Is(context.Cause(runCtx), errDisconnected):
		end = End{Status: StatusRequeued, Exit: 130, Error: "agent " + a.o.Name + " lost the coordinator"}
	}
	pub.Send(Message{Kind: MsgEnd, End: &end})
	// Everything must reach the coordinator before the job leaves the
	// queue; an agent that is stopping waits a little, then leaves the
	// rest to the job's next taker.
	wait := 5 * time.Minute
	if ctx.Err() != nil || end.Status == StatusRequeued {
		wait = 5 * time.Second
	}
	fctx, cancel := context.WithTimeout(context.Background(), wait)
	err = pub.Close(fctx)
	cancel()
	if err != nil {
		log.Error("results not all sent", "err", err)
	}
	a.mu.Lock()
	for b, r := range a.running {
		if r == t.Run {
			delete(a.running, b)
		}
	}
	a.mu.Unlock()
	a.reannounce()
	if end.Status == StatusRequeued || err != nil {
		d.Retry(0)
		return
	}
	d.Done()
	log.Info("run ended", "status", end.Status, "exit", end.Exit)
}

// errDisconnected ends a run whose agent lost the coordinator.
var errDisconnected = errors.New("lost the coordinator")

// watchConnection stops the run once the connection has been down for
// half the ack wait: the job is about to be delivered to another agent,
// and two agents must not run it at once.
func (a *Agent) watchConnection(ctx context.Context, stop context.CancelCauseFunc) {
	var down time.Time
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		switch {
		case a.o.Connected():
			down = time.Time{}
		case down.IsZero():
			down = time.Now()
		case time.Since(down) > a.o.AckWait/2:
			a.o.Log.Error("lost the coordinator; stopping the run and leaving the boards safe", "for", time.Since(down).Round(time.Second))
			stop(errDisconnected)
			return
		}
	}
}

// watchCancel stops the run when the coordinator marks it cancelled.
func (a *Agent) watchCancel(ctx context.Context, run string, stop context.CancelCauseFunc) {
	w, err := a.runs.Watch(ctx, run)
	if err != nil {
		return
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var st RunState
			if json.Unmarshal(e.Value(), &st) == nil && (st.Status == StatusCancelling || st.Status == StatusCancelled) {
				stop(errCancelled)
				return
			}
		}
	}
}

func (a *Agent) publishEnd(ctx context.Context, run string, attempt int, e End) {
	p := NewPublisher(a.js, run, a.o.Name, attempt, a.o.Log)
	p.Send(Message{Kind: MsgEnd, End: &e})
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p.Close(fctx)
}

// run prepares the assignment and hands it to the executor.
func (a *Agent) run(ctx context.Context, t Task, attempt int, pub *Publisher) End {
	dir := filepath.Join(a.o.Dir, t.Run)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return End{Status: StatusError, Exit: 3, Error: err.Error()}
	}
	j, err := jobs.Parse(t.JobFile, t.Job)
	if err != nil {
		return End{Status: StatusError, Exit: 2, Error: err.Error()}
	}
	pool := a.poolBoards(t.Pool)
	// Images by digest, checked against it, onto local disk.
	for _, im := range []*jobs.ImageSpec{&j.Baseline, &j.Image} {
		if im.File == "" {
			continue
		}
		digest := t.Images[im.File]
		data, err := a.images.Get(ctx, digest, fwimage.MaxImageSize)
		if err != nil {
			return End{Status: StatusError, Exit: 3, Error: fmt.Sprintf("%s: image %s: %v", t.JobFile, im.File, err)}
		}
		local := filepath.Join(dir, "image-"+digest[:min(16, len(digest))]+".bin")
		if err := os.WriteFile(local, data, 0o644); err != nil {
			return End{Status: StatusError, Exit: 3, Error: err.Error()}
		}
		im.File = local
	}
	db, err := results.OpenDB(filepath.Join(dir, "results.db"))
	if err != nil {
		return End{Status: StatusError, Exit: 3, Error: err.Error()}
	}
	defer db.Close()
	ri := results.RunInfo{
		ID: t.Run, Job: j.Name, JobFile: t.JobFile, JobHash: "lab/" + t.Run,
		Started: time.Now().UTC(), Host: a.o.Name, Version: a.o.Version,
	}
	resume := false
	if a.o.State != nil && attempt > 1 {
		rs, err := a.o.State(ctx, t.Run)
		if err != nil {
			return End{Status: StatusError, Exit: 3, Error: fmt.Sprintf("reading the run's recorded cycles: %v", err)}
		}
		if resume, err = seed(db, ri, rs); err != nil {
			return End{Status: StatusError, Exit: 3, Error: err.Error()}
		}
	}
	as := &Assignment{
		Task: t, Attempt: attempt, Job: j, Boards: pool, Run: ri, DB: db, Resume: resume,
		OutDir: dir, Locker: agentLocker{a.leases, a.o.Name},
		Sinks: []results.Sink{pub},
		Recorded: func(c results.Cycle) error {
			a.mu.Lock()
			a.last[c.Board] = string(c.Outcome)
			a.health[c.Board] = "ok"
			if c.Outcome == results.InfraError || c.Outcome == results.MissedCut {
				a.health[c.Board] = fmt.Sprintf("%s in cycle %d: %s", c.Outcome, c.Cycle, cmp.Or(c.Missed, c.Reason))
			}
			a.mu.Unlock()
			a.reannounce()
			pub.Send(Message{Kind: MsgCycle, Cycle: &c, Nonces: c.Nonces})
			return nil
		},
		Started: func(ri results.RunInfo) {
			a.mu.Lock()
			for _, b := range ri.Boards {
				a.running[b] = t.Run
			}
			a.mu.Unlock()
			a.reannounce()
			pub.Send(Message{Kind: MsgStart, Info: &ri})
		},
	}
	return a.o.Exec(ctx, as)
}

// poolBoards are the agent's boards in pool.
func (a *Agent) poolBoards(pool string) []boards.Board {
	var out []boards.Board
	for _, b := range a.o.Boards {
		if b.Pool == pool {
			out = append(out, b)
		}
	}
	return out
}

// seed copies the cycles and nonces an earlier attempt recorded into the
// local database, so that the executor's --resume runs none of them again.
func seed(db *results.DB, ri results.RunInfo, rs ResumeState) (bool, error) {
	if len(rs.Cycles) == 0 {
		return false, nil
	}
	ri.Boards, ri.Planned = rs.Info.Boards, rs.Info.Planned
	if err := db.BeginRun(ri); err != nil {
		return false, err
	}
	for _, c := range rs.Cycles {
		c.Run = ri.ID
		for _, n := range rs.Nonces {
			if n.Cycle == c.Cycle && n.Board == c.Board {
				c.Nonces = append(c.Nonces, n)
			}
		}
		if err := db.RecordCycle(c); err != nil {
			return false, err
		}
	}
	return true, nil
}

// agentLocker leases an agent's boards under the agent's name: boards of
// the same name on two agents are two boards.
type agentLocker struct {
	l     *Leases
	agent string
}

func (l agentLocker) Acquire(ctx context.Context, board string, h jobs.Holder) (jobs.Lease, error) {
	return l.l.Acquire(ctx, l.agent+"."+board, h)
}
