package lab

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Queue is the job queue: a work-queue stream with a subject per pool.
type Queue struct {
	js      jetstream.JetStream
	ackWait time.Duration
}

// DefaultAckWait is how long a taken job may go without a sign of life
// (Delivery.Progress) before it is delivered to another agent.
const DefaultAckWait = 30 * time.Second

// OpenQueue creates the jobs stream, or takes it as it is. ackWait is
// DefaultAckWait when zero.
func OpenQueue(ctx context.Context, js jetstream.JetStream, ackWait time.Duration) (*Queue, error) {
	return openQueue(ctx, js, ackWait, 1)
}

// openQueue is OpenQueue with the stream kept on replicas servers.
func openQueue(ctx context.Context, js jetstream.JetStream, ackWait time.Duration, replicas int) (*Queue, error) {
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        JobsStream,
		Description: "fudbench jobs, a subject per pool",
		Subjects:    []string{"jobs.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		// A run ID submitted again within a day is the same job.
		Duplicates: 24 * time.Hour,
		Replicas:   replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: jobs stream: %w", err)
	}
	return &Queue{js: js, ackWait: ackWait}, nil
}

// Submit queues body (a job file's bytes) for pool under runID, the
// message ID: a second submit of the same run ID is not queued again,
// and reports duplicate.
func (q *Queue) Submit(ctx context.Context, pool, runID string, body []byte) (duplicate bool, err error) {
	if err := CheckToken("pool", pool); err != nil {
		return false, err
	}
	if runID == "" {
		return false, errors.New("lab: submit: empty run ID")
	}
	ack, err := q.js.Publish(ctx, "jobs."+pool, body, jetstream.WithMsgID(runID))
	if err != nil {
		return false, fmt.Errorf("lab: submit run %s to pool %s: %w", runID, pool, err)
	}
	return ack.Duplicate, nil
}

// Pending is the number of jobs queued and not yet acknowledged.
func (q *Queue) Pending(ctx context.Context) (uint64, error) {
	s, err := q.js.Stream(ctx, JobsStream)
	if err != nil {
		return 0, fmt.Errorf("lab: jobs stream: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("lab: jobs stream: %w", err)
	}
	return info.State.Msgs, nil
}

// Pool is an agent's handle on one pool's jobs: the durable consumer
// every agent with boards in the pool shares, so each job goes to one of
// them.
type Pool struct {
	name string
	c    jetstream.Consumer
}

// Pool opens the pool's shared consumer. maxRunning bounds the jobs of
// the pool taken and not yet done across all its agents: the number of
// boards in the pool.
func (q *Queue) Pool(ctx context.Context, pool string, maxRunning int) (*Pool, error) {
	if err := CheckToken("pool", pool); err != nil {
		return nil, err
	}
	if maxRunning < 1 {
		maxRunning = 1
	}
	c, err := q.js.CreateOrUpdateConsumer(ctx, JobsStream, jetstream.ConsumerConfig{
		Durable:       "pool-" + pool,
		FilterSubject: "jobs." + pool,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       q.ackWait,
		MaxAckPending: maxRunning,
		MaxDeliver:    -1,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: pool %s: %w", pool, err)
	}
	return &Pool{name: pool, c: c}, nil
}

// Delivery is a job taken from a pool.
type Delivery struct {
	Pool    string
	RunID   string
	Body    []byte
	Attempt uint64 // 1 the first time; more when an agent died with it
	msg     jetstream.Msg
}

// Next waits for the pool's next job until ctx ends.
func (p *Pool) Next(ctx context.Context) (*Delivery, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err // a job taken now could not run
		}
		wait := 5 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, time.Until(dl))
		}
		if wait <= 0 {
			<-ctx.Done() // the deadline has passed; the context is about to say so
			return nil, ctx.Err()
		}
		batch, err := p.c.Fetch(1, jetstream.FetchMaxWait(wait))
		if err != nil {
			return nil, fmt.Errorf("lab: pool %s: %w", p.name, err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return nil, fmt.Errorf("lab: pool %s: %w", p.name, err)
			}
			return &Delivery{
				Pool:    p.name,
				RunID:   m.Headers().Get(jetstream.MsgIDHeader),
				Body:    m.Data(),
				Attempt: md.NumDelivered,
				msg:     m,
			}, nil
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, fmt.Errorf("lab: pool %s: %w", p.name, err)
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// Progress tells the server the job is still being worked on: its ack
// wait starts again. An agent calls it well within the ack wait for as
// long as the campaign runs.
func (d *Delivery) Progress() error { return d.msg.InProgress() }

// Done removes the job from the queue for good.
func (d *Delivery) Done() error { return d.msg.DoubleAck(context.Background()) }

// Retry gives the job back, to be delivered again after delay.
func (d *Delivery) Retry(delay time.Duration) error { return d.msg.NakWithDelay(delay) }
