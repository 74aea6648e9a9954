package bench

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/results"
)

// linkState is a board's impaired link: the forwarder the bench talks to
// instead of the device, and what of it the timeline has been told.
type linkState struct {
	f          *link.Forwarder
	events     atomic.Int64 // link events this cycle
	suppressed atomic.Int64 // over results.MaxLinkEvents
	mu         sync.Mutex
	mark       link.Stats // counts at the last summary
}

// startLink puts a forwarder with cfg between the bench and the device at
// addr and points the board's endpoint at it.
func (b *Board) startLink(addr string, cfg *link.Config) error {
	b.link = &linkState{}
	f, err := link.Listen(addr, *cfg, link.Options{OnEvent: b.linkEvent, Log: b.log})
	if err != nil {
		b.link = nil
		return fmt.Errorf("board %s: %w", b.Name, err)
	}
	b.link.f = f
	b.Endpoint.Device, b.Endpoint.Addr = addr, f.Addr()
	b.Link = cfg
	return nil
}

// Linked reports whether the board is reached through an impaired link.
func (b *Board) Linked() bool { return b.link != nil }

// linkCycle starts cycle n on the link: its decisions restart from the
// link's seed and the cycle's number, so a cycle meets the same link
// whatever ran before it (a resumed run, a cycle run again), and the
// cycle's event budget is fresh.
func (b *Board) linkCycle(n int) {
	if b.link == nil {
		return
	}
	b.link.f.Reseed(uint64(n))
	b.link.events.Store(0)
	b.link.suppressed.Store(0)
	b.link.mu.Lock()
	b.link.mark = b.link.f.Stats()
	b.link.mu.Unlock()
}

// linkSummary puts the link's counts since the last summary on the
// timeline (results.LinkSummary).
func (b *Board) linkSummary() {
	if b.link == nil {
		return
	}
	b.link.mu.Lock()
	now := b.link.f.Stats()
	s := now.Sub(b.link.mark)
	b.link.mark = now
	b.link.mu.Unlock()
	e := b.Event(results.LinkSummary)
	e.Text = b.Link.String()
	e.Dur = s[link.ToDevice].MeanDelay()
	e.Attrs = map[string]string{"events_suppressed": strconv.FormatInt(b.link.suppressed.Load(), 10)}
	for i, p := range []string{"to_device.", "from_device."} {
		d := s[i]
		for k, v := range map[string]uint64{"datagrams": d.Datagrams, "delivered": d.Delivered, "dropped": d.Dropped(),
			"lost": d.Lost, "mtu": d.TooBig, "queue": d.QueueFull, "duplicated": d.Duplicated, "reordered": d.Reordered} {
			e.Attrs[p+k] = strconv.FormatUint(v, 10)
		}
		e.Attrs[p+"mean_delay"] = d.MeanDelay().String()
	}
	b.Emit(e)
}

var linkKinds = [...]results.Kind{link.Dropped: results.LinkDrop, link.Duplicated: results.LinkDup, link.Reordered: results.LinkReorder}

// linkEvent puts what the link did to a datagram on the timeline, at the
// instant the datagram reached it, within the cycle's event budget.
func (b *Board) linkEvent(ev link.Event) {
	if b.link.events.Add(1) > results.MaxLinkEvents {
		b.link.suppressed.Add(1)
		return
	}
	e := b.Event(linkKinds[ev.Kind])
	e.T, e.Wall = ev.At.Sub(b.hub.clock.Start()), ev.At
	e.Text = ev.Reason
	e.Block = ev.CoAP.Block1
	e.Attrs = map[string]string{"dir": ev.Dir.String(), "bytes": strconv.Itoa(ev.Size)}
	if ev.CoAP.OK {
		e.Attrs["coap"] = ev.CoAP.TypeString() + " " + ev.CoAP.CodeString() + " mid " + strconv.Itoa(int(ev.CoAP.MID))
	}
	b.Emit(e)
}
