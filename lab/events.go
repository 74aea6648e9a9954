package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fudbench/fudbench/results"
)

// EventsStream carries what agents report of the runs they execute, on
// events.<run>.<agent>, to the coordinator, the only consumer.
const EventsStream = "FUDBENCH_EVENTS"

// Kinds of Message.
const (
	MsgStart  = "start"  // an agent took the run: Info names its boards
	MsgEvents = "events" // timeline events, in order
	MsgCycle  = "cycle"  // a finished cycle, durable on the agent
	MsgEnd    = "end"    // the run ended on this agent: End says how
)

// Message is one message on the events stream. Its JetStream message ID
// is <run>/<agent>/<attempt>/<seq>: a message sent again after a lost
// acknowledgement is stored once by the stream, and a message the
// coordinator reads twice is stored once by the results database.
type Message struct {
	Kind    string             `json:"kind"`
	Run     string             `json:"run"`
	Agent   string             `json:"agent"`
	Attempt int                `json:"attempt"`
	Info    *results.RunInfo   `json:"info,omitempty"`
	Events  []results.Event    `json:"events,omitempty"`
	Cycle   *results.Cycle     `json:"cycle,omitempty"`
	Nonces  []results.NonceUse `json:"nonces,omitempty"`
	End     *End               `json:"end,omitempty"`
}

// End is how a run ended on an agent.
type End struct {
	// Status is a verdict (pass, fail, infra-error) for a run that ran
	// its plan; StatusCancelled, StatusError or StatusRequeued otherwise.
	Status string `json:"status"`
	// Exit is the exit code `fudbench run` would have given.
	Exit  int    `json:"exit"`
	Error string `json:"error,omitempty"`
}

// Run states beyond the results' verdicts.
const (
	StatusQueued     = "queued"
	StatusRunning    = "running"
	StatusCancelling = "cancelling"
	StatusCancelled  = "cancelled"
	StatusError      = "error"    // the job could not run (exit 2 or 3)
	StatusRequeued   = "requeued" // the agent stopped; the job is queued again
)

// DecodeMessage reads an agent's message from the events stream. The run
// and the agent are the subject's (events.<run>.<agent>), which the
// server's permissions tie to the agent that sent it, whatever the body
// says.
func DecodeMessage(subject string, data []byte) (Message, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != "events" || CheckToken("run", parts[1]) != nil || CheckToken("agent", parts[2]) != nil {
		return Message{}, fmt.Errorf("subject %q: want events.<run>.<agent>", subject)
	}
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, fmt.Errorf("message on %s: %w", subject, err)
	}
	m.Run, m.Agent = parts[1], parts[2]
	if m.Attempt < 1 {
		return Message{}, fmt.Errorf("message on %s: attempt %d", subject, m.Attempt)
	}
	var missing bool
	switch m.Kind {
	case MsgStart:
		missing = m.Info == nil
	case MsgEvents:
		missing = len(m.Events) == 0
	case MsgCycle:
		missing = m.Cycle == nil
	case MsgEnd:
		missing = m.End == nil
	default:
		return Message{}, fmt.Errorf("message on %s: kind %q", subject, m.Kind)
	}
	if missing {
		return Message{}, fmt.Errorf("message on %s: a %s message without its content", subject, m.Kind)
	}
	return m, nil
}

// openEvents creates the events stream, or takes it as it is.
func openEvents(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        EventsStream,
		Description: "fudbench run events from the agents",
		Subjects:    []string{"events.>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Duplicates:  time.Hour,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("lab: events stream: %w", err)
	}
	return s, nil
}

// Publisher sends one run's messages from an agent, in order. Emit and
// Cycle only queue: a run's timing never waits for the network. A
// goroutine publishes the queue, a batch of events per message, and
// retries a message (under the same ID) until the server takes it, so a
// coordinator restarting or a link dropping for a while loses nothing.
type Publisher struct {
	js      jetstream.JetStream
	subject string
	base    Message // run, agent, attempt
	log     *slog.Logger

	mu      sync.Mutex
	queue   []item
	dropped int
	closed  bool
	kick    chan struct{}
	done    chan struct{}
	idle    *sync.Cond // signalled when the queue is empty and nothing is in flight
	busy    bool
	seq     uint64
	stop    context.CancelFunc
	ctx     context.Context
}

type item struct {
	ev  *results.Event
	msg *Message
}

// Limits of a Publisher.
const (
	// PublishBatch is the most events one message carries.
	PublishBatch = 256
	// MaxQueuedEvents bounds the memory an agent holds while the
	// coordinator is away; events beyond it are dropped and counted
	// (the agent's own events.jsonl keeps them all).
	MaxQueuedEvents = 500_000
)

// NewPublisher starts a publisher of run's messages from agent.
func NewPublisher(js jetstream.JetStream, run, agent string, attempt int, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, stop := context.WithCancel(context.Background())
	p := &Publisher{
		js: js, subject: "events." + run + "." + agent,
		base: Message{Run: run, Agent: agent, Attempt: attempt},
		log:  log, kick: make(chan struct{}, 1), done: make(chan struct{}),
		ctx: ctx, stop: stop,
	}
	p.idle = sync.NewCond(&p.mu)
	go p.loop()
	return p
}

// Emit queues an event; it never waits.
func (p *Publisher) Emit(e results.Event) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if len(p.queue) >= MaxQueuedEvents {
		p.dropped++
		p.mu.Unlock()
		return
	}
	p.queue = append(p.queue, item{ev: &e})
	n := len(p.queue)
	p.mu.Unlock()
	if n >= PublishBatch {
		p.poke()
	}
}

// Send queues a message of another kind (start, cycle, end) after every
// event queued before it.
func (p *Publisher) Send(m Message) {
	p.mu.Lock()
	if !p.closed {
		p.queue = append(p.queue, item{msg: &m})
	}
	p.mu.Unlock()
	p.poke()
}

// Dropped is how many events did not fit in the queue.
func (p *Publisher) Dropped() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dropped
}

func (p *Publisher) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Flush waits until everything queued so far is published, or ctx ends.
func (p *Publisher) Flush(ctx context.Context) error {
	p.poke()
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) > 0 || p.busy {
		if ctx.Err() != nil {
			return fmt.Errorf("lab: %d messages of run %s not yet sent: %w", len(p.queue), p.base.Run, ctx.Err())
		}
		p.idle.Wait()
	}
	return nil
}

// Close flushes (until ctx ends) and stops the publisher.
func (p *Publisher) Close(ctx context.Context) error {
	err := p.Flush(ctx)
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.stop()
	<-p.done
	return err
}

func (p *Publisher) loop() {
	defer close(p.done)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.kick:
		case <-tick.C:
		}
		for p.sendNext() {
		}
	}
}

// sendNext publishes the next message of the queue, if any, and reports
// whether there may be more.
func (p *Publisher) sendNext() bool {
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.idle.Broadcast()
		p.mu.Unlock()
		return false
	}
	var m Message
	n := 0
	if p.queue[0].msg != nil {
		m, n = *p.queue[0].msg, 1
	} else {
		m.Kind = MsgEvents
		for n < len(p.queue) && n < PublishBatch && p.queue[n].ev != nil {
			m.Events = append(m.Events, *p.queue[n].ev)
			n++
		}
	}
	p.busy = true
	p.seq++
	seq := p.seq
	p.mu.Unlock()

	m.Run, m.Agent, m.Attempt = p.base.Run, p.base.Agent, p.base.Attempt
	body, err := json.Marshal(m)
	if err == nil {
		err = p.publish(body, fmt.Sprintf("%s/%s/%d/%d", m.Run, m.Agent, m.Attempt, seq))
	}
	p.mu.Lock()
	p.busy = false
	if err == nil {
		clear(p.queue[:n])
		p.queue = p.queue[n:]
	} else {
		p.seq-- // the same ID next time: the stream keeps it once
	}
	p.idle.Broadcast()
	p.mu.Unlock()
	return err == nil
}

// publish sends body until the server takes it or the publisher stops.
func (p *Publisher) publish(body []byte, id string) error {
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		_, err := p.js.Publish(ctx, p.subject, body, jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			return nil
		}
		if p.ctx.Err() != nil {
			return p.ctx.Err()
		}
		p.log.Warn("events not yet taken by the server; retrying", "run", p.base.Run, "msg", id, "err", err)
		select {
		case <-time.After(wait):
		case <-p.ctx.Done():
			return errors.Join(err, p.ctx.Err())
		}
		wait = min(2*wait, 2*time.Second)
	}
}
