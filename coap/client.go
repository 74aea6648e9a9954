// Package coap is the bench's side of a firmware update over CoAP: a
// client that drives RFC 7959 Block1 transfers one confirmable request per
// block (so a cut trigger can act between and during blocks), and the
// resumable in-place protocol of package fwproto on top of it.
//
// The client is lock-step: one request at a time, written and answered on
// the caller's goroutine over one socket connected to the device. Over DTLS
// 1.2, pion runs the PSK handshake and the client then seals and opens the
// application records itself on that socket. It uses go-coap's message
// codec but not its client connection, whose per-request goroutine hop,
// message pool and context cost more than a small device's answer takes.
// Retransmission follows RFC 7252 §4.2 and §4.8: ACK_TIMEOUT with
// ACK_RANDOM_FACTOR 1.5, doubled after each of MAX_RETRANSMIT
// retransmissions, and every exchange bounded by MAX_TRANSMIT_WAIT whatever
// context the caller passes. An ICMP port unreachable (a device that is
// off) counts as a lost datagram.
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

	"github.com/fudbench/fudbench/fwproto"
)

// PSK is a DTLS pre-shared key and its identity. The key is never logged.
type PSK struct {
	Identity string
	Key      []byte
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
// exchange. ctx is not used.
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
		if err := c.newDTLS(); err != nil {
			_ = sock.Close()
			return nil, fmt.Errorf("coap: dial %s: %w", addr, err)
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

// Close closes the connection; over DTLS it first sends close_notify. A
// request in progress returns at once with an error.
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
	if c.mu.TryLock() {
		// Between exchanges: say goodbye on the session taken over from
		// pion (pion's own close_notify would carry stale sequence numbers
		// and is not sent).
		if c.rl != nil {
			_, _ = c.sock.Write(c.rl.seal(nil, ctAlert, []byte{1, 0}))
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

// Addr is the device address.
func (c *Client) Addr() string { return c.addr }

// Response is a CoAP response. It and its Payload belong to the caller.
type Response struct {
	Code    codes.Code
	Payload []byte
	Block1  *Block
	Size1   uint32
	// Retransmits counts the retransmissions of the request this answers
	// (0: the first copy was answered).
	Retransmits int

	block Block // storage behind Block1: one allocation per response
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
	RequestTag    []byte
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
	msg := fmt.Sprintf("coap: %s: device answered %v", e.Op, e.Code)
	if f, err := fwproto.DecodeFailure(e.Payload); err == nil && f.Error != "" {
		msg += ": " + f.Error
	}
	return msg
}

// expect turns an unexpected response code into a StatusError.
func expect(op string, r *Response, want ...codes.Code) error {
	for _, w := range want {
		if r.Code == w {
			return nil
		}
	}
	return &StatusError{Op: op, Code: r.Code, Payload: r.Payload}
}

// Boot reads /boot.
func (c *Client) Boot(ctx context.Context) (fwproto.Boot, error) {
	r, err := c.Get(ctx, fwproto.PathBoot)
	if err != nil {
		return fwproto.Boot{}, err
	}
	if err := expect("GET /boot", r, codes.Content); err != nil {
		return fwproto.Boot{}, err
	}
	return fwproto.DecodeBoot(r.Payload)
}

// Version reads /fw/version.
func (c *Client) Version(ctx context.Context) (fwproto.Version, error) {
	r, err := c.Get(ctx, fwproto.PathVersion)
	if err != nil {
		return fwproto.Version{}, err
	}
	if err := expect("GET /fw/version", r, codes.Content); err != nil {
		return fwproto.Version{}, err
	}
	return fwproto.DecodeVersion(r.Payload)
}

// State reads /fw/state.
func (c *Client) State(ctx context.Context) (fwproto.State, error) {
	r, err := c.Get(ctx, fwproto.PathState)
	if err != nil {
		return fwproto.State{}, err
	}
	if err := expect("GET /fw/state", r, codes.Content); err != nil {
		return fwproto.State{}, err
	}
	return fwproto.DecodeState(r.Payload)
}

// Prepare posts the transfer parameters; the device answers 2.04 and
// reboots into recovery.
func (c *Client) Prepare(ctx context.Context, p fwproto.Prepare) error {
	body, err := fwproto.Marshal(p)
	if err != nil {
		return err
	}
	r, err := c.Do(ctx, Request{Code: codes.POST, Path: fwproto.PathPrepare, Payload: body, ContentFormat: fwproto.MediaTypeCBOR})
	if err != nil {
		return err
	}
	return expect("POST /fw/prepare", r, codes.Changed)
}

// ErrResync is returned by SendBlock when the device answered 4.08 with
// its state: the caller continues from State.Next.
var ErrResync = errors.New("coap: device asked to resynchronise")

// ResyncError carries the device's state from a 4.08 answer.
type ResyncError struct{ State fwproto.State }

func (e *ResyncError) Error() string {
	return fmt.Sprintf("coap: device asked to resynchronise at block %d", e.State.Next)
}

func (e *ResyncError) Unwrap() error { return ErrResync }

// SendBlock sends block num of img at szx with the Request-Tag tag (nil:
// none) to path, and returns the device's answer: 2.31 for a block taken,
// 2.04 for the last one. A 4.08 with a state payload becomes a
// *ResyncError.
func (c *Client) SendBlock(ctx context.Context, path string, img []byte, num uint32, szx uint8, tag []byte) (*Response, error) {
	bs := uint32(fwproto.BlockSize(szx))
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
	case codes.RequestEntityIncomplete:
		if st, err := fwproto.DecodeState(r.Payload); err == nil {
			return r, &ResyncError{State: st}
		}
	}
	return r, &StatusError{Op: fmt.Sprintf("PUT %s block %d", path, num), Code: r.Code, Payload: r.Payload}
}
