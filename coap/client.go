// Package coap is the bench's CoAP client (RFC 7252) over UDP and DTLS:
// confirmable requests, and RFC 7959 Block1 transfers driven one block per
// request by the caller, so that a cut trigger can act between and during
// blocks. The firmware-update protocol (package fwproto) is spoken on top
// of it by bench/fwclient.
//
// The client is lock-step: one request at a time, written and answered on
// the caller's goroutine over one socket connected to the device. Over DTLS
// 1.2, pion runs the PSK handshake and the client then seals and opens the
// application records itself on that socket. It uses go-coap's message
// codec but not its client connection, whose per-request goroutine hop,
// message pool and context cost more than a small device's answer takes.
// A DTLSCache carries a device's session from one client to the next, as
// a recovery bootloader carries it across a power cut; OnRecord shows
// every record the device sends, so that a reused AEAD nonce is seen.
// Retransmission follows RFC 7252 §4.2 and §4.8: ACK_TIMEOUT with
// ACK_RANDOM_FACTOR 1.5, doubled after each of MAX_RETRANSMIT
// retransmissions, and every exchange bounded by MAX_TRANSMIT_WAIT whatever
// context the caller passes. An ICMP port unreachable (a device that is
// off) counts as a lost datagram.
//
// QPut sends a whole body with Q-Block1 (RFC 9177): bursts of
// non-confirmable blocks, with the blocks the server reports missing sent
// again.
//
// Automatic block-wise transfer is not offered on purpose: go-coap's covers
// the whole upload with one timeout, resends bytes when a server asks for a
// smaller block, and has no resume.
package coap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// PSK is a DTLS pre-shared key and its identity. The key is never logged.
type PSK struct {
	Identity string
	Key      []byte
	// Cache is what is kept of the device's session between the clients
	// dialled to it (see DTLSCache); nil: nothing, a full handshake each
	// time.
	Cache *DTLSCache
}

// Transmission holds CoAP's retransmission parameters (RFC 7252 §4.8).
type Transmission struct {
	AckTimeout    time.Duration // default 2 s
	MaxRetransmit uint32        // default 4
}

// MaxTransmitWait is MAX_TRANSMIT_WAIT (RFC 7252 §4.8.2) for t: the longest
// one exchange may take, from the first transmission to giving up.
func (t Transmission) MaxTransmitWait() time.Duration {
	return t.AckTimeout * time.Duration(uint64(2)<<t.MaxRetransmit-1) * 3 / 2
}

func (t Transmission) withDefaults() Transmission {
	if t.AckTimeout <= 0 {
		t.AckTimeout = 2 * time.Second
	}
	if t.MaxRetransmit == 0 {
		t.MaxRetransmit = 4
	}
	// 2<<MaxRetransmit must not overflow MaxTransmitWait.
	t.MaxRetransmit = min(t.MaxRetransmit, 20)
	return t
}

// cipherSuites are the DTLS PSK suites offered. TLS_PSK_WITH_AES_128_CCM_8
// is the one CoAP mandates (RFC 7252 §9.1.3.1) and what small devices
// implement; AES-128-GCM comes first because, where the device has it,
// it costs the bench a fraction of CCM's time per record (Go's GCM is
// hardware-assisted and allocation-free, pion's CCM is neither).
var cipherSuites = []piondtls.CipherSuiteID{
	piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
	piondtls.TLS_PSK_WITH_AES_128_CCM_8,
}

// Dial connects to addr (host:port) over UDP, or over DTLS when psk is not
// nil. Nothing is sent yet: the DTLS handshake is part of the first
// exchange, and so is the continuation of a session kept in psk.Cache.
// ctx is not used.
func Dial(ctx context.Context, addr string, psk *PSK, tx Transmission) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("coap: dial %s: %w", addr, err)
	}
	tx = tx.withDefaults()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("coap: dial %s: %w", addr, err)
	}
	sock, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		return nil, fmt.Errorf("coap: dial %s: %w", addr, err)
	}
	c := newClient(addr, sock, tx)
	if psk != nil {
		// The handshake happens in the first exchange, bounded like one, so
		// that dialling a device that is off does not block.
		key := psk.Key
		c.dtlsOpts = []piondtls.ClientOption{
			piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
			piondtls.WithPSKIdentityHint([]byte(psk.Identity)),
			piondtls.WithCipherSuites(cipherSuites...),
		}
		c.cache = psk.Cache
		switch {
		case c.cache.keepsSessions():
			c.store = &clientSessionStore{d: c.cache}
			c.dtlsOpts = append(c.dtlsOpts, piondtls.WithSessionStore(c.store))
		case c.cache.keepsState():
			// The device's CID lets it find the session from the next
			// client's new source port. The bench's socket is connected,
			// so the device need put no CID on its records.
			gen := piondtls.OnlySendCIDGenerator()
			if n := c.cache.recvCIDLen; n > 0 {
				gen = piondtls.RandomCIDGenerator(n)
			}
			c.dtlsOpts = append(c.dtlsOpts, piondtls.WithConnectionIDGenerator(gen))
		}
		// In state mode the first exchange first tries to continue the
		// kept session; pion's session is made only if it must handshake
		// (closing an unused one would cost its reader's wake-up).
		if !c.cache.keepsState() {
			if err := c.newDTLS(); err != nil {
				_ = sock.Close()
				return nil, fmt.Errorf("coap: dial %s: %w", addr, err)
			}
		}
	}
	return c, nil
}

// newClient sets up the state of one client on sock.
func newClient(addr string, sock *net.UDPConn, tx Transmission) *Client {
	var seed [10]byte
	_, _ = rand.Read(seed[:])
	c := &Client{
		addr:    addr,
		sock:    sock,
		conn:    sock,
		tx:      tx,
		maxWait: tx.MaxTransmitWait(),
		mid:     binary.BigEndian.Uint16(seed[0:2]),
		tokBase: binary.BigEndian.Uint64(seed[2:10]),
		out:     make([]byte, 0, 1280),
		in:      make([]byte, maxDatagram),
		msg:     message.Message{Options: make(message.Options, 0, 16)},
		opts:    make(message.Options, 0, 16),
		lastSep: -1,
	}
	return c
}

// Close closes the connection; over DTLS it first sends close_notify,
// except with a DTLSCacheState cache, where it keeps the session in the
// cache and sends nothing. A request in progress returns at once with an
// error. Close must not be called from OnRecord or OnHandshake.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.wmu.Lock()
	dc, ps, unwatch := c.dtls, c.ps, c.unwatch
	c.wmu.Unlock()
	if unwatch != nil {
		unwatch()
	}
	if c.cache.keepsState() {
		return c.closeKeepingState(dc, ps)
	}
	if c.mu.TryLock() {
		// Between exchanges: say goodbye on the session taken over from
		// pion (pion's own close_notify would carry stale sequence numbers
		// and is not sent).
		if c.rl != nil {
			rec := c.rl.seal(nil, ctAlert, []byte{1, 0})
			if c.OnWire != nil {
				c.OnWire(len(rec), 0)
			}
			_, _ = c.sock.Write(rec)
		}
		c.mu.Unlock()
	}
	var errs []error
	if dc != nil {
		errs = append(errs, dc.Close(), ps.Close())
	}
	errs = append(errs, c.sock.Close())
	if err := errors.Join(errs...); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("coap: close %s: %w", c.addr, err)
	}
	return nil
}

// closeKeepingState closes a client whose session the next one may
// continue. Everything that could send is stopped first (pion's writes
// are dropped from then on, the socket is closed), and the session is
// read only once no exchange runs: no record can leave with a sequence
// number the snapshot hands on.
func (c *Client) closeKeepingState(dc *piondtls.Conn, ps *pionSock) error {
	var errs []error
	if ps != nil {
		errs = append(errs, ps.Close())
	}
	if dc != nil {
		errs = append(errs, dc.Close())
	}
	errs = append(errs, c.sock.Close())
	c.mu.Lock()
	c.keepState()
	c.mu.Unlock()
	if err := errors.Join(errs...); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("coap: close %s: %w", c.addr, err)
	}
	return nil
}

// DTLSRecords tells who seals and opens the application data records of
// a DTLS session: "client" once this client has taken the handshaken
// session over from pion (the fast path), "pion" when it could not (pion's
// own record path, slower but equally correct), "" over plain UDP or
// before the handshake.
func (c *Client) DTLSRecords() string {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	switch {
	case c.rl != nil:
		return "client"
	case c.dtls != nil && c.shaken:
		return "pion"
	}
	return ""
}

// Heard reports whether anything ever came back from the device on this
// client, even a message that answered nothing asked: a device that sends
// garbage is there, one that sends nothing may not be.
func (c *Client) Heard() bool { return c.heard.Load() }

// Addr is the device address.
func (c *Client) Addr() string { return c.addr }

// Response is a CoAP response. It and its Payload belong to the caller.
type Response struct {
	Code    codes.Code
	Payload []byte
	Block1  *Block // Block1, or Q-Block1 in answer to a Q-Block1 request
	// QBlock2 is the response's Q-Block2 option (nil: none): a server
	// that has Q-Block answers a Q-Block2 request with one.
	QBlock2 *Block
	Size1   uint32
	// ContentFormat is the Content-Format option, -1 when absent.
	ContentFormat int
	// Retransmits counts the retransmissions of the request this answers
	// (0: the first copy was answered).
	Retransmits int
	// Echo is the Echo option of a 4.01 (RFC 9175): the device asks for
	// the request again with this value.
	Echo []byte

	block, qblock2 Block // storage behind Block1 and QBlock2: one allocation per response
}

// Block is a decoded Block1 option.
type Block struct {
	Num  uint32
	More bool
	SZX  uint8
}

// Request describes one request.
type Request struct {
	Code          codes.Code
	Path          string
	Payload       []byte
	ContentFormat int // -1 none
	Block1        *Block
	Size1         uint32
	// Echo is sent as the Echo option (RFC 9175): set by Do when the
	// device challenges a request.
	Echo       []byte
	RequestTag []byte
	// QBlock1 sends Block1 as the Q-Block1 option (19, RFC 9177).
	QBlock1 bool
	// QBlock2 asks for a block of the response with the Q-Block2 option
	// (31, RFC 9177); nil: none.
	QBlock2 *Block
	// NonConfirmable sends the request as a NON message.
	NonConfirmable bool
}

// Get fetches path.
func (c *Client) Get(ctx context.Context, path string) (*Response, error) {
	return c.Do(ctx, Request{Code: codes.GET, Path: path, ContentFormat: -1})
}

// StatusError is a CoAP error response; it is not a transport failure.
type StatusError struct {
	Op      string
	Code    codes.Code
	Payload []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("coap: %s: device answered %v", e.Op, e.Code)
}

// Expect turns a response whose code is none of want into a
// *StatusError for op.
func Expect(op string, r *Response, want ...codes.Code) error {
	for _, w := range want {
		if r.Code == w {
			return nil
		}
	}
	return &StatusError{Op: op, Code: r.Code, Payload: r.Payload}
}

// OptionRequestTag is the Request-Tag option (RFC 9175 §3), sent on every
// block of a transfer so a device can tell one transfer from another.
const OptionRequestTag message.OptionID = 292

// BlockSize is the block size of an RFC 7959 SZX (16 << szx).
func BlockSize(szx uint8) int { return 16 << szx }

// SendBlock sends block num of img at szx with the Request-Tag tag (nil:
// none) to path, and returns the device's answer: 2.31 for a block taken,
// 2.04 (or 2.01) for the last one. Any other code is also returned, with
// a *StatusError.
func (c *Client) SendBlock(ctx context.Context, path string, img []byte, num uint32, szx uint8, tag []byte) (*Response, error) {
	bs := uint32(BlockSize(szx))
	off := num * bs
	if off >= uint32(len(img)) && !(len(img) == 0 && num == 0) {
		return nil, fmt.Errorf("coap: block %d beyond a %d-byte image", num, len(img))
	}
	end := min(off+bs, uint32(len(img)))
	more := end < uint32(len(img))
	req := Request{
		Code: codes.PUT, Path: path, Payload: img[off:end], ContentFormat: -1,
		Block1: &Block{Num: num, More: more, SZX: szx}, RequestTag: tag,
	}
	if num == 0 {
		req.Size1 = uint32(len(img))
	}
	r, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	switch r.Code {
	case codes.Continue:
		if !more {
			return r, &StatusError{Op: fmt.Sprintf("PUT %s block %d (last)", path, num), Code: r.Code}
		}
		return r, nil
	case codes.Changed, codes.Created:
		return r, nil
	}
	return r, &StatusError{Op: fmt.Sprintf("PUT %s block %d", path, num), Code: r.Code, Payload: r.Payload}
}
