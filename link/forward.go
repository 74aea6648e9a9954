package link

import (
	"container/heap"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Direction is the way a datagram goes.
type Direction int

// Directions.
const (
	ToDevice   Direction = iota // from the bench to the device
	FromDevice                  // the device's answers
)

func (d Direction) String() string {
	if d == ToDevice {
		return "to-device"
	}
	return "from-device"
}

// Why a datagram was dropped.
const (
	ReasonLoss  = "loss"  // the loss probability drew it
	ReasonMTU   = "mtu"   // larger than the link's MTU
	ReasonQueue = "queue" // the direction's queue was full (QueueLimit)
)

// EventKind says what the forwarder did to a datagram.
type EventKind int

// Event kinds.
const (
	Dropped EventKind = iota
	Duplicated
	Reordered
)

// Event is one datagram the forwarder did not simply pass on.
type Event struct {
	Kind   EventKind
	Dir    Direction
	Reason string // for Dropped: ReasonLoss, ReasonMTU or ReasonQueue
	Size   int    // bytes of UDP payload
	CoAP   CoAP   // what the datagram is, when it is plain CoAP
	At     time.Time
}

// DirStats count one direction's datagrams.
type DirStats struct {
	Datagrams  uint64 // arrived at the forwarder
	Delivered  uint64 // written on (duplicates included)
	Lost       uint64 // dropped by the loss probability
	TooBig     uint64 // dropped: larger than the MTU
	QueueFull  uint64 // dropped: the queue was full
	Duplicated uint64
	Reordered  uint64 // held back behind a later datagram
	// DelaySum is the sum over delivered datagrams of the time from
	// arrival to being written on, as measured on this host.
	DelaySum time.Duration
}

// Dropped is every datagram dropped, whatever the reason.
func (s DirStats) Dropped() uint64 { return s.Lost + s.TooBig + s.QueueFull }

// MeanDelay is the mean time from arrival to delivery.
func (s DirStats) MeanDelay() time.Duration {
	if s.Delivered == 0 {
		return 0
	}
	return s.DelaySum / time.Duration(s.Delivered)
}

func (s DirStats) sub(o DirStats) DirStats {
	return DirStats{Datagrams: s.Datagrams - o.Datagrams, Delivered: s.Delivered - o.Delivered, Lost: s.Lost - o.Lost,
		TooBig: s.TooBig - o.TooBig, QueueFull: s.QueueFull - o.QueueFull, Duplicated: s.Duplicated - o.Duplicated,
		Reordered: s.Reordered - o.Reordered, DelaySum: s.DelaySum - o.DelaySum}
}

// Stats are both directions' counts, indexed by Direction.
type Stats [2]DirStats

// Sub is the counts since an earlier snapshot o.
func (s Stats) Sub(o Stats) Stats { return Stats{s[0].sub(o[0]), s[1].sub(o[1])} }

// Options tune a forwarder.
type Options struct {
	// OnEvent is called for every datagram dropped, duplicated or held
	// back, from the forwarder's goroutines; it must not block for long.
	OnEvent func(Event)
	Log     *slog.Logger
	// QueueLimit bounds the datagrams waiting in each direction (default
	// 1024); one more is dropped (ReasonQueue).
	QueueLimit int
}

// ReorderHold is the longest a datagram is held back waiting for the next
// one in its direction to overtake it.
const ReorderHold = 100 * time.Millisecond

// sockBuf is the receive buffer asked for each socket (the kernel may
// give less), so that a burst waits in the forwarder's queue, where it is
// counted, rather than being dropped unseen by the kernel.
const sockBuf = 1 << 20

// maxFlows bounds the client sockets the forwarder keeps a device-side
// socket for; the least recently used goes first.
const maxFlows = 64

// Forwarder is a UDP forwarder between the bench and one device. Each
// client socket that writes to it gets its own socket towards the device,
// so the device sees as many peers, and as many ports, as without it.
type Forwarder struct {
	cfg    Config
	dev    *net.UDPAddr
	down   *net.UDPConn
	opt    Options
	log    *slog.Logger
	dirs   [2]*dir
	mu     sync.Mutex
	flows  map[netip.AddrPort]*flow
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

type flow struct {
	client netip.AddrPort
	up     *net.UDPConn
	last   time.Time // guarded by Forwarder.mu
}

// Listen starts a forwarder to the device at device (host:port) on an
// ephemeral loopback port.
func Listen(device string, cfg Config, opt Options) (*Forwarder, error) {
	dev, err := net.ResolveUDPAddr("udp", device)
	if err != nil {
		return nil, fmt.Errorf("link to %s: %w", device, err)
	}
	down, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("link to %s: listen: %w", device, err)
	}
	down.SetReadBuffer(sockBuf)
	if opt.QueueLimit <= 0 {
		opt.QueueLimit = 1024
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	f := &Forwarder{cfg: cfg, dev: dev, down: down, opt: opt, log: opt.Log, flows: map[netip.AddrPort]*flow{}, closed: make(chan struct{})}
	for d := range f.dirs {
		f.dirs[d] = &dir{f: f, d: Direction(d), wake: make(chan struct{}, 1)}
	}
	f.Reseed(0)
	f.wg.Add(3)
	go f.readDown()
	go f.dirs[ToDevice].deliver()
	go f.dirs[FromDevice].deliver()
	return f, nil
}

// Addr is the forwarder's address, for the bench to talk to instead of
// the device's.
func (f *Forwarder) Addr() string { return f.down.LocalAddr().String() }

// Config is the link the forwarder applies.
func (f *Forwarder) Config() Config { return f.cfg }

// Reseed restarts both directions' decisions from the configured seed and
// stream: the bench gives each cycle its own stream, so a cycle's
// decisions do not depend on the cycles before it.
func (f *Forwarder) Reseed(stream uint64) {
	for _, d := range f.dirs {
		d.mu.Lock()
		d.rng = rand.New(rand.NewPCG(f.cfg.Seed, stream<<1|uint64(d.d)))
		d.mu.Unlock()
	}
}

// Stats are the counts since the forwarder started.
func (f *Forwarder) Stats() Stats {
	var s Stats
	for i, d := range f.dirs {
		d.mu.Lock()
		s[i] = d.stats
		d.mu.Unlock()
	}
	return s
}

// Close stops the forwarder: its port and its sockets to the device are
// released, datagrams still queued are dropped, and its goroutines have
// ended when it returns.
func (f *Forwarder) Close() error {
	var err error
	f.once.Do(func() {
		close(f.closed)
		err = f.down.Close()
		f.mu.Lock()
		for _, fl := range f.flows {
			fl.up.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return err
}

func (f *Forwarder) done() bool {
	select {
	case <-f.closed:
		return true
	default:
		return false
	}
}

// readDown takes the bench's datagrams.
func (f *Forwarder) readDown() {
	defer f.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, from, err := f.down.ReadFromUDPAddrPort(buf)
		if err != nil {
			if f.done() || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		fl, err := f.flow(from)
		if err != nil {
			f.log.Warn("link: no socket towards the device", "device", f.dev, "err", err)
			continue
		}
		f.dirs[ToDevice].arrive(append([]byte(nil), buf[:n]...), fl)
	}
}

// flow is the device-side socket for the client at from, made on its
// first datagram.
func (f *Forwarder) flow(from netip.AddrPort) (*flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	if fl, ok := f.flows[from]; ok {
		fl.last = now
		return fl, nil
	}
	if f.done() {
		return nil, net.ErrClosed
	}
	if len(f.flows) >= maxFlows {
		var old *flow
		for _, fl := range f.flows {
			if old == nil || fl.last.Before(old.last) {
				old = fl
			}
		}
		old.up.Close()
		delete(f.flows, old.client)
	}
	up, err := net.DialUDP("udp", nil, f.dev)
	if err != nil {
		return nil, err
	}
	up.SetReadBuffer(sockBuf)
	fl := &flow{client: from, up: up, last: now}
	f.flows[from] = fl
	f.wg.Add(1)
	go f.readUp(fl)
	return fl, nil
}

// readUp takes the device's answers to one client.
func (f *Forwarder) readUp(fl *flow) {
	defer f.wg.Done()
	buf := make([]byte, 65536)
	for {
		n, err := fl.up.Read(buf)
		if err != nil {
			if f.done() || errors.Is(err, net.ErrClosed) {
				return
			}
			// An ICMP error for an earlier datagram (a device not listening)
			// is reported once on a connected socket; reading goes on.
			continue
		}
		f.dirs[FromDevice].arrive(append([]byte(nil), buf[:n]...), fl)
	}
}

// dir is one direction's decisions, queue and counts.
type dir struct {
	f     *Forwarder
	d     Direction
	mu    sync.Mutex
	rng   *rand.Rand
	busy  time.Time // when the link is free again (rate)
	q     queue
	held  *item
	seq   uint64
	stats DirStats
	wake  chan struct{}
}

type item struct {
	at, orig, arrived time.Time
	seq               uint64
	data              []byte
	fl                *flow
	idx               int
}

// arrive decides a datagram's fate. The draws are the same for every
// datagram — loss, duplicate, reorder, jitter, in that order — whatever
// is decided, so that the decisions for the n-th datagram of a direction
// depend only on the seed and n.
func (d *dir) arrive(data []byte, fl *flow) {
	cfg := &d.f.cfg
	now := time.Now()
	var evs [2]Event
	nev := 0
	d.mu.Lock()
	lossR, dupR, reoR := Percent(d.rng.IntN(10000)), Percent(d.rng.IntN(10000)), Percent(d.rng.IntN(10000))
	jit := time.Duration(d.rng.Int64N(2*int64(cfg.Jitter)+1)) - cfg.Jitter
	d.stats.Datagrams++
	reason := ""
	switch {
	case cfg.MTU > 0 && len(data) > cfg.MTU:
		reason = ReasonMTU
		d.stats.TooBig++
	case lossR < cfg.Loss:
		reason = ReasonLoss
		d.stats.Lost++
	case len(d.q) >= d.f.opt.QueueLimit:
		reason = ReasonQueue
		d.stats.QueueFull++
	}
	if reason != "" {
		d.mu.Unlock()
		d.report(Event{Kind: Dropped, Dir: d.d, Reason: reason, Size: len(data), At: now}, data)
		return
	}
	depart := now
	if d.busy.After(now) {
		depart = d.busy
	}
	if cfg.Rate > 0 {
		depart = depart.Add(time.Duration(uint64(len(data)) * 8 * uint64(time.Second) / cfg.Rate))
		d.busy = depart
	}
	at := depart.Add(cfg.Delay + jit)
	it := &item{at: at, orig: at, arrived: now, seq: d.seq, data: data, fl: fl}
	d.seq++
	heap.Push(&d.q, it)
	if dupR < cfg.Duplicate {
		cp := *it
		cp.seq = d.seq
		d.seq++
		heap.Push(&d.q, &cp)
		d.stats.Duplicated++
		evs[nev] = Event{Kind: Duplicated, Dir: d.d, Size: len(data), At: now}
		nev++
	}
	switch {
	case d.held != nil:
		// The datagram held back goes right after this one.
		h := d.held
		d.held = nil
		if h.orig.After(at) {
			h.at = h.orig
		} else {
			h.at = at
		}
		h.seq = d.seq
		d.seq++
		heap.Fix(&d.q, h.idx)
	case reoR < cfg.Reorder:
		it.at = at.Add(ReorderHold)
		heap.Fix(&d.q, it.idx)
		d.held = it
		d.stats.Reordered++
		evs[nev] = Event{Kind: Reordered, Dir: d.d, Size: len(data), At: now}
		nev++
	}
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
	for _, e := range evs[:nev] {
		d.report(e, data)
	}
}

func (d *dir) report(e Event, data []byte) {
	if d.f.opt.OnEvent == nil {
		return
	}
	e.CoAP = Peek(data)
	d.f.opt.OnEvent(e)
}

// deliver writes each datagram on when its time comes.
func (d *dir) deliver() {
	defer d.f.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		d.mu.Lock()
		var wait time.Duration = -1
		var it *item
		if len(d.q) > 0 {
			if w := time.Until(d.q[0].at); w > 0 {
				wait = w
			} else {
				it = heap.Pop(&d.q).(*item)
				if d.held == it {
					d.held = nil
				}
			}
		}
		d.mu.Unlock()
		if it != nil {
			d.write(it)
			continue
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-d.f.closed:
			return
		case <-d.wake:
		case <-tc:
		}
	}
}

func (d *dir) write(it *item) {
	var err error
	if d.d == ToDevice {
		_, err = it.fl.up.Write(it.data)
	} else {
		_, err = d.f.down.WriteToUDPAddrPort(it.data, it.fl.client)
	}
	d.mu.Lock()
	if err == nil {
		d.stats.Delivered++
		d.stats.DelaySum += time.Since(it.arrived)
	}
	d.mu.Unlock()
}

// queue is a heap of datagrams by delivery time, then arrival.
type queue []*item

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *queue) Push(x any) {
	it := x.(*item)
	it.idx = len(*q)
	*q = append(*q, it)
}
func (q *queue) Pop() any {
	old := *q
	it := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return it
}
