package sim

// Network parking: the board's UDP sockets are bound once and kept, and
// while its network is down they drop what arrives, as an unpowered
// device does.

import (
	"fmt"
	"net"
	"time"

	"github.com/fudbench/fudbench/sim/coapsrv"
)

// netDown stops the CoAP servers and parks their ports.
func (b *Board) netDown(servers []*coapsrv.Server) {
	b.netMu.Lock()
	defer b.netMu.Unlock()
	for _, s := range servers {
		s.Detach()
	}
	b.park()
}

// park drops whatever reaches the board's sockets while its network is
// down, silently, as an unpowered device does: no ICMP "port unreachable",
// and, the sockets staying bound, no other socket on this host can take
// the port (a client whose ephemeral port landed on it would talk to
// itself). b.netMu held.
func (b *Board) park() {
	if b.parked {
		return
	}
	b.parked = true
	for _, pc := range b.socks {
		b.drained.Add(1)
		go func() {
			defer b.drained.Done()
			buf := make([]byte, 64)
			for {
				if _, _, err := pc.ReadFrom(buf); err != nil {
					return
				}
			}
		}()
	}
}

// unpark stops dropping datagrams so that the sockets can be served
// again; b.netMu held.
func (b *Board) unpark() {
	if !b.parked {
		return
	}
	b.parked = false
	for _, pc := range b.socks {
		_ = pc.SetReadDeadline(time.Unix(1, 0))
	}
	b.drained.Wait()
	for _, pc := range b.socks {
		_ = pc.SetReadDeadline(time.Time{})
	}
}

// sock returns the board's i-th socket, bound to addr at its first use;
// b.netMu held.
func (b *Board) sock(i int, addr string) (*net.UDPConn, error) {
	if i < len(b.socks) {
		return b.socks[i], nil
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve %q: %w", addr, err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen %q: %w", addr, err)
	}
	b.socks = append(b.socks, pc)
	return pc, nil
}

// closeSocks closes the board's sockets for good; b.netMu held.
func (b *Board) closeSocks() {
	b.unpark()
	for _, pc := range b.socks {
		pc.Close()
	}
	b.socks = nil
}
