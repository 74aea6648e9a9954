package coap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// continueSession takes the session kept in the cache, if any, and makes
// it this client's, with no handshake: the records go out on this
// client's socket, and the device finds the session by its CID.
func (c *Client) continueSession() bool {
	snap := c.cache.take()
	if snap == nil {
		return false
	}
	rl, err := recordLayerFrom(snap.keys, snap.epoch, snap.seq, snap.sendCID, snap.recvCID)
	if err != nil {
		return false
	}
	c.endDTLS() // the pion session Dial made, never used
	c.wmu.Lock()
	c.dtls, c.ps, c.rl, c.conn = nil, nil, rl, c.sock
	c.wmu.Unlock()
	c.shaken, c.continued, c.pend = true, true, nil
	if c.raw == nil {
		c.raw = make([]byte, maxDatagram)
	}
	if c.OnHandshake != nil {
		c.OnHandshake(Handshake{Kind: HandshakeNone})
	}
	return true
}

// keepState leaves the session in the cache for the next client (state
// mode, from Close with c.mu held and nothing able to send any more). A
// session the device cannot route to (no CID) is not kept; a continued
// one the device has not answered is kept for the cache's Patience.
func (c *Client) keepState() {
	rl := c.rl
	if rl == nil || len(rl.sendCID) == 0 {
		return
	}
	c.cache.put(rl.snapshot(), !c.continued || rl.opened > 0)
}

// sessionEnded handles the device's close_notify or fatal alert: the next
// exchange starts a new session.
func (c *Client) sessionEnded(err error) error {
	c.endDTLS()
	if nerr := c.newDTLS(); nerr != nil {
		return errors.Join(err, nerr)
	}
	return err
}

// noteRequest keeps the datagram a request went out in (plain: out).
func (c *Client) noteRequest(out []byte) {
	switch {
	case c.rl != nil:
		c.lastReq = append(c.lastReq[:0], c.rec...)
	case c.dtls != nil:
		c.lastReq = c.ps.lastWrite(c.lastReq[:0])
	default:
		c.lastReq = append(c.lastReq[:0], out...)
	}
}

// LastRequestDatagram returns a copy of the last datagram sent for a
// request (the last transmission of the last request), as it went on the
// wire: over DTLS, the protected record. It is nil before the first
// request. With SendRaw the bench replays it to see whether a device that
// lost power accepts it again.
func (c *Client) LastRequestDatagram() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.lastReq) == 0 {
		return nil
	}
	return bytes.Clone(c.lastReq)
}

// SendRaw writes datagram to the device as it is (nothing is sealed
// again) and returns the first CoAP message that comes back within wait:
// over DTLS, the plaintext of the first record that authenticates in this
// client's session (resp nil if none came). Over DTLS the session is
// established first as for a request: a session kept in the cache is
// continued, or a handshake runs. Records seen are reported to OnRecord.
func (c *Client) SendRaw(ctx context.Context, datagram []byte, wait time.Duration) (resp []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("coap: raw datagram to %s: %w", c.addr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	resp, err = c.sendRaw(ctx, datagram, wait)
	if err != nil {
		return nil, fmt.Errorf("coap: raw datagram to %s: %w", c.addr, err)
	}
	return resp, nil
}

func (c *Client) sendRaw(ctx context.Context, datagram []byte, wait time.Duration) ([]byte, error) {
	limit := time.Now().Add(wait)
	if d, ok := ctx.Deadline(); ok && d.Before(limit) {
		limit = d
	}
	c.watch(ctx)
	if err := c.handshake(ctx, limit); err != nil {
		return nil, err
	}
	// Records left over from an earlier datagram are not the answer.
	for c.rl != nil && len(c.pend) > 0 {
		var err error
		if _, _, c.pend, err = c.rl.open(c.in[:0], c.pend, c.OnRecord); err != nil {
			return nil, c.sessionEnded(err)
		}
	}
	if _, err := c.sock.Write(datagram); err != nil && !refused(err) {
		if c.closed.Load() {
			return nil, fmt.Errorf("write: %w", net.ErrClosed)
		}
		return nil, fmt.Errorf("write: %w", err)
	}
	for {
		if err := c.conn.SetReadDeadline(limit); err != nil {
			return nil, fmt.Errorf("read deadline: %w", err)
		}
		data, err := c.read()
		if err == nil {
			c.heard.Store(true)
			return bytes.Clone(data), nil
		}
		switch {
		case errors.Is(err, errDTLSAlert):
			return nil, c.sessionEnded(err)
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case c.closed.Load() || errors.Is(err, net.ErrClosed):
			return nil, fmt.Errorf("read: %w", net.ErrClosed)
		case refused(err):
			continue
		case !errors.Is(err, os.ErrDeadlineExceeded) && !isTimeout(err):
			return nil, fmt.Errorf("read: %w", err)
		case time.Now().Before(limit):
			continue // a stale cancellation wake-up
		}
		return nil, nil
	}
}
