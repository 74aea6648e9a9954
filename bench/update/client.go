// Package update is the bench's side of a firmware update over CoAP: a
// client that drives RFC 7959 Block1 transfers one confirmable request per
// block (so a cut trigger can act between and during blocks), and the
// resumable in-place protocol of package fwproto on top of it.
//
// go-coap's automatic blockwise layer is switched off on purpose: its
// transfer timeout covers the whole upload, it resends bytes when a server
// asks for a smaller block, and it has no resume.
package update

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/fudbench/fudbench/bench/fwproto"
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

// Client is a CoAP client connection to one device.
type Client struct {
	addr    string
	conn    *udpclient.Conn
	maxWait time.Duration
}

// Dial connects to addr (host:port) over UDP, or over DTLS when psk is
// not nil.
func Dial(ctx context.Context, addr string, psk *PSK, tx Transmission) (*Client, error) {
	if tx.AckTimeout == 0 {
		tx.AckTimeout = 2 * time.Second
	}
	if tx.MaxRetransmit == 0 {
		tx.MaxRetransmit = 4
	}
	// The connection's own context must outlive ctx, which only bounds
	// the dial.
	opts := []udp.Option{
		options.WithBlockwise(false, blockwise.SZX1024, time.Minute),
		options.WithTransmission(1, tx.AckTimeout, tx.MaxRetransmit),
		// Socket errors (ICMP port unreachable while a device is off) come
		// back from Do; go-coap's own logging of them is noise.
		options.WithErrors(func(err error) { slog.Debug("coap", "addr", addr, "err", err) }),
	}
	var (
		conn *udpclient.Conn
		err  error
	)
	if psk == nil {
		conn, err = udp.Dial(addr, opts...)
	} else {
		cfg := dtls.NewDTLSClientOptions(
			piondtls.WithPSK(func([]byte) ([]byte, error) { return psk.Key, nil }),
			piondtls.WithPSKIdentityHint([]byte(psk.Identity)),
			piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8, piondtls.TLS_PSK_WITH_AES_128_GCM_SHA256),
		)
		conn, err = dtls.Dial(addr, cfg, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("coap: dial %s: %w", addr, err)
	}
	// MAX_TRANSMIT_WAIT (RFC 7252 §4.8.2) bounds every exchange, so a dead
	// device can never hang the bench, whatever context the caller passes.
	wait := tx.AckTimeout * time.Duration(uint64(2)<<tx.MaxRetransmit-1) * 3 / 2
	return &Client{addr: addr, conn: conn, maxWait: wait}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Addr is the device address.
func (c *Client) Addr() string { return c.addr }

// Response is a CoAP response, copied out of go-coap's message pool.
type Response struct {
	Code    codes.Code
	Payload []byte
	Block1  *Block
	Size1   uint32
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

// Do sends one confirmable request and waits for its response.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.maxWait)
	defer cancel()
	req := c.conn.AcquireMessage(ctx)
	defer c.conn.ReleaseMessage(req)
	tok, err := message.GetToken()
	if err != nil {
		return nil, err
	}
	req.SetCode(r.Code)
	req.SetToken(tok)
	req.SetType(message.Confirmable)
	if err := req.SetPath(r.Path); err != nil {
		return nil, fmt.Errorf("coap: path %q: %w", r.Path, err)
	}
	if r.ContentFormat >= 0 && r.Payload != nil {
		req.SetContentFormat(message.MediaType(r.ContentFormat))
	}
	if r.Block1 != nil {
		v, err := blockwise.EncodeBlockOption(blockwise.SZX(r.Block1.SZX), int64(r.Block1.Num), r.Block1.More)
		if err != nil {
			return nil, fmt.Errorf("coap: block option: %w", err)
		}
		req.SetOptionUint32(message.Block1, v)
	}
	if r.Size1 != 0 {
		req.SetOptionUint32(message.Size1, r.Size1)
	}
	if r.RequestTag != nil {
		req.SetOptionBytes(fwproto.OptionRequestTag, r.RequestTag)
	}
	if r.Payload != nil {
		req.SetBody(bytes.NewReader(r.Payload))
	}
	resp, err := c.conn.Do(req)
	if err != nil {
		return nil, fmt.Errorf("coap: %v %s%s: %w", r.Code, c.addr, r.Path, err)
	}
	defer c.conn.ReleaseMessage(resp)
	out := &Response{Code: resp.Code()}
	if resp.Body() != nil {
		out.Payload, err = resp.ReadBody()
		if err != nil {
			return nil, fmt.Errorf("coap: read body: %w", err)
		}
	}
	if v, err := resp.GetOptionUint32(message.Block1); err == nil {
		szx, num, more, err := blockwise.DecodeBlockOption(v)
		if err == nil {
			out.Block1 = &Block{Num: uint32(num), More: more, SZX: uint8(szx)}
		}
	}
	if v, err := resp.GetOptionUint32(message.Size1); err == nil {
		out.Size1 = v
	}
	return out, nil
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
