package coapsrv

import "net/netip"

// exchangeKey names one message exchange for deduplication (RFC 7252 §4.5):
// the peer's address, the DTLS connection it came over (0 for plain UDP,
// so a new DTLS session is a new endpoint) and the message ID.
type exchangeKey struct {
	peer netip.AddrPort
	conn uint64
	mid  uint16
}

type exchangeEntry struct {
	key   exchangeKey
	at    int64  // arrival, nanoseconds on the server's monotonic clock
	reply []byte // encoded reply; empty for a non-confirmable request
}

// replyCache remembers recent exchanges and their encoded replies. Entries
// sit in a ring in arrival order, so expiry pops from the head and a full
// ring evicts its oldest entry: every operation is O(1) amortised and the
// cache never scans itself. Reply buffers stay with their ring slot and are
// reused, so a warm cache does not allocate.
type replyCache struct {
	lifetime int64
	size     int // the ring grows up to size entries
	ring     []exchangeEntry
	head     int
	n        int
	index    map[exchangeKey]int
}

func newReplyCache(size int, lifetime int64) *replyCache {
	// Start small and grow on demand: an idle board must stay small.
	return &replyCache{
		lifetime: lifetime,
		size:     size,
		ring:     make([]exchangeEntry, min(size, 16)),
		index:    make(map[exchangeKey]int),
	}
}

// expire drops entries that arrived lifetime or longer before now. Arrival
// times only grow, so the expired ones are all at the head.
func (c *replyCache) expire(now int64) {
	for c.n > 0 && now-c.ring[c.head].at >= c.lifetime {
		c.evictHead()
	}
}

func (c *replyCache) evictHead() {
	e := &c.ring[c.head]
	if i, ok := c.index[e.key]; ok && i == c.head {
		delete(c.index, e.key)
	}
	c.head = (c.head + 1) % len(c.ring)
	c.n--
}

// get reports whether k was seen within the lifetime and, if so, its reply.
// The returned slice is valid until the next put.
func (c *replyCache) get(k exchangeKey, now int64) ([]byte, bool) {
	c.expire(now)
	i, ok := c.index[k]
	if !ok {
		return nil, false
	}
	return c.ring[i].reply, true
}

// put records k with a copy of reply.
func (c *replyCache) put(k exchangeKey, now int64, reply []byte) {
	c.expire(now)
	if c.n == len(c.ring) && len(c.ring) < c.size {
		c.grow()
	}
	if c.n == len(c.ring) {
		c.evictHead()
	}
	i := (c.head + c.n) % len(c.ring)
	e := &c.ring[i]
	e.key = k
	e.at = now
	e.reply = append(e.reply[:0], reply...)
	c.n++
	c.index[k] = i
}

func (c *replyCache) count() int { return c.n }

// grow doubles the ring (up to size), keeping arrival order.
func (c *replyCache) grow() {
	ring := make([]exchangeEntry, min(2*len(c.ring), c.size))
	for i := 0; i < c.n; i++ {
		ring[i] = c.ring[(c.head+i)%len(c.ring)]
		c.index[ring[i].key] = i
	}
	c.ring, c.head = ring, 0
}
