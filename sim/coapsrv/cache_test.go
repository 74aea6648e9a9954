package coapsrv

import (
	"bytes"
	"net/netip"
	"testing"
)

func TestReplyCache(t *testing.T) {
	peer := netip.MustParseAddrPort("127.0.0.1:5683")
	k := func(mid uint16) exchangeKey { return exchangeKey{peer: peer, mid: mid} }
	type step struct {
		op    string // "put", "get"
		mid   uint16
		at    int64
		reply string
		hit   bool // for get
	}
	tests := []struct {
		name      string
		size      int
		lifetime  int64
		steps     []step
		wantCount int
	}{
		{
			name: "hit within lifetime", size: 4, lifetime: 100,
			steps: []step{
				{op: "put", mid: 1, at: 0, reply: "a"},
				{op: "get", mid: 1, at: 99, reply: "a", hit: true},
				{op: "get", mid: 2, at: 99},
			},
			wantCount: 1,
		},
		{
			name: "expires at lifetime", size: 4, lifetime: 100,
			steps: []step{
				{op: "put", mid: 1, at: 0, reply: "a"},
				{op: "put", mid: 2, at: 50, reply: "b"},
				{op: "get", mid: 1, at: 100},
				{op: "get", mid: 2, at: 100, reply: "b", hit: true},
			},
			wantCount: 1,
		},
		{
			name: "full ring evicts the oldest", size: 2, lifetime: 1000,
			steps: []step{
				{op: "put", mid: 1, at: 0, reply: "a"},
				{op: "put", mid: 2, at: 1, reply: "b"},
				{op: "put", mid: 3, at: 2, reply: "c"},
				{op: "get", mid: 1, at: 3},
				{op: "get", mid: 2, at: 3, reply: "b", hit: true},
				{op: "get", mid: 3, at: 3, reply: "c", hit: true},
			},
			wantCount: 2,
		},
		{
			name: "re-put key survives eviction of its old slot", size: 3, lifetime: 1000,
			steps: []step{
				{op: "put", mid: 1, at: 0, reply: "old"},
				{op: "put", mid: 1, at: 1, reply: "new"},
				{op: "put", mid: 2, at: 2, reply: "b"},
				{op: "put", mid: 3, at: 3, reply: "c"}, // evicts the slot holding "old"
				{op: "get", mid: 1, at: 4, reply: "new", hit: true},
			},
			wantCount: 3,
		},
		{
			name: "empty reply is remembered", size: 2, lifetime: 10,
			steps: []step{
				{op: "put", mid: 7, at: 0},
				{op: "get", mid: 7, at: 1, hit: true},
			},
			wantCount: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newReplyCache(tt.size, tt.lifetime)
			for i, s := range tt.steps {
				switch s.op {
				case "put":
					var r []byte
					if s.reply != "" {
						r = []byte(s.reply)
					}
					c.put(k(s.mid), s.at, r)
				case "get":
					got, hit := c.get(k(s.mid), s.at)
					if hit != s.hit || !bytes.Equal(got, []byte(s.reply)) && s.hit {
						t.Fatalf("step %d: get(%d) = %q, %v; want %q, %v", i, s.mid, got, hit, s.reply, s.hit)
					}
				}
			}
			if c.count() != tt.wantCount {
				t.Errorf("count = %d, want %d", c.count(), tt.wantCount)
			}
		})
	}
}

func TestReplyCacheKeysByConnection(t *testing.T) {
	c := newReplyCache(8, 1000)
	peer := netip.MustParseAddrPort("[::1]:4000")
	c.put(exchangeKey{peer: peer, conn: 1, mid: 5}, 0, []byte("x"))
	if _, hit := c.get(exchangeKey{peer: peer, conn: 2, mid: 5}, 1); hit {
		t.Error("a new DTLS session with the same address and MID hit the old session's entry")
	}
	if _, hit := c.get(exchangeKey{peer: peer, conn: 1, mid: 5}, 1); !hit {
		t.Error("same session missed")
	}
}

func TestReplyCacheNoAllocsWhenWarm(t *testing.T) {
	c := newReplyCache(64, 1<<62)
	peer := netip.MustParseAddrPort("127.0.0.1:1")
	reply := make([]byte, 20)
	mid := uint16(0)
	now := int64(0)
	step := func() {
		mid++
		now++
		k := exchangeKey{peer: peer, mid: mid}
		c.get(k, now)
		c.put(k, now, reply)
	}
	for range 1000 {
		step()
	}
	if a := testing.AllocsPerRun(1000, step); a != 0 {
		t.Errorf("allocations per exchange = %v, want 0", a)
	}
}
