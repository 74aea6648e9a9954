// Package fwclient is the bench's side of the resumable in-place update
// protocol (package fwproto) over a CoAP client (package coap): the
// device's boot, version and recovery state, prepare, and Block1 blocks
// whose 4.08 answer carries the state to resume from. A device's
// diagnostic payload is shown in its errors.
package fwclient

import (
	"context"
	"errors"
	"fmt"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
)

// Client speaks the firmware-update protocol to one device.
type Client struct {
	*coap.Client
}

// New wraps a CoAP client.
func New(c *coap.Client) *Client { return &Client{Client: c} }

// Dial connects to a device (see coap.Dial).
func Dial(ctx context.Context, addr string, psk *coap.PSK, tx coap.Transmission) (*Client, error) {
	c, err := coap.Dial(ctx, addr, psk, tx)
	if err != nil {
		return nil, err
	}
	return New(c), nil
}

// DeviceError is a CoAP error answer with the device's diagnostic, when
// its payload carries one (fwproto.Failure).
type DeviceError struct {
	*coap.StatusError
	Diagnostic string
}

func (e *DeviceError) Error() string {
	if e.Diagnostic == "" {
		return e.StatusError.Error()
	}
	return e.StatusError.Error() + ": " + e.Diagnostic
}

func (e *DeviceError) Unwrap() error { return e.StatusError }

// withDiagnostic adds the device's failure text to a status error.
func withDiagnostic(err error) error {
	var se *coap.StatusError
	if !errors.As(err, &se) {
		return err
	}
	if f, derr := fwproto.DecodeFailure(se.Payload); derr == nil && f.Error != "" {
		return &DeviceError{StatusError: se, Diagnostic: f.Error}
	}
	return err
}

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	r, err := c.Get(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := coap.Expect("GET "+path, r, codes.Content); err != nil {
		return nil, withDiagnostic(err)
	}
	return r.Payload, nil
}

// ErrBadAnswer marks an answer of the right code whose payload is not
// what the protocol says: the device answered, wrongly.
var ErrBadAnswer = errors.New("device answered with a payload the protocol does not allow")

func bad(path string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("GET %s: %w: %w", path, ErrBadAnswer, err)
}

// Boot reads /boot: the mode, boot count and reset cause (both modes).
func (c *Client) Boot(ctx context.Context) (fwproto.Boot, error) {
	p, err := c.get(ctx, fwproto.PathBoot)
	if err != nil {
		return fwproto.Boot{}, err
	}
	b, err := fwproto.DecodeBoot(p)
	return b, bad(fwproto.PathBoot, err)
}

// Version reads /fw/version (application mode).
func (c *Client) Version(ctx context.Context) (fwproto.Version, error) {
	p, err := c.get(ctx, fwproto.PathVersion)
	if err != nil {
		return fwproto.Version{}, err
	}
	v, err := fwproto.DecodeVersion(p)
	return v, bad(fwproto.PathVersion, err)
}

// State reads /fw/state (recovery mode).
func (c *Client) State(ctx context.Context) (fwproto.State, error) {
	p, err := c.get(ctx, fwproto.PathState)
	if err != nil {
		return fwproto.State{}, err
	}
	st, err := fwproto.DecodeState(p)
	return st, bad(fwproto.PathState, err)
}

// Prepare posts the transfer parameters; the device answers 2.04 and
// reboots into recovery (in recovery it replaces the transfer).
func (c *Client) Prepare(ctx context.Context, p fwproto.Prepare) error {
	body, err := fwproto.Marshal(p)
	if err != nil {
		return err
	}
	r, err := c.Do(ctx, coap.Request{Code: codes.POST, Path: fwproto.PathPrepare, Payload: body, ContentFormat: fwproto.MediaTypeCBOR})
	if err != nil {
		return err
	}
	return withDiagnostic(coap.Expect("POST "+fwproto.PathPrepare, r, codes.Changed))
}

// ErrResync is matched by a *ResyncError.
var ErrResync = errors.New("device asked to resynchronise")

// ResyncError carries the device's state from a 4.08 answer: the caller
// continues from State.Next.
type ResyncError struct{ State fwproto.State }

func (e *ResyncError) Error() string {
	return fmt.Sprintf("device asked to resynchronise at block %d", e.State.Next)
}

func (e *ResyncError) Unwrap() error { return ErrResync }

// SendBlock sends one block (see coap.Client.SendBlock). A 4.08 answer
// whose payload is the device's state becomes a *ResyncError; other error
// answers carry the device's diagnostic.
func (c *Client) SendBlock(ctx context.Context, path string, img []byte, num uint32, szx uint8, tag []byte) (*coap.Response, error) {
	r, err := c.Client.SendBlock(ctx, path, img, num, szx, tag)
	if err == nil || r == nil {
		return r, err
	}
	if r.Code == codes.RequestEntityIncomplete {
		if st, derr := fwproto.DecodeState(r.Payload); derr == nil {
			return r, &ResyncError{State: st}
		}
	}
	return r, withDiagnostic(err)
}

// QPut sends img from block first on with Q-Block1 (see coap.Client.QPut).
// As with SendBlock, a 4.08 whose payload is the device's state becomes a
// *ResyncError and other error answers carry the device's diagnostic.
func (c *Client) QPut(ctx context.Context, path string, img []byte, first uint32, szx uint8, tag []byte, q coap.QBlock, ev coap.QEvents) (*coap.Response, error) {
	r, err := c.Client.QPut(ctx, path, img, first, szx, tag, q, ev)
	if err == nil || r == nil {
		return r, err
	}
	if r.Code == codes.RequestEntityIncomplete && r.ContentFormat != coap.MediaTypeMissingBlocks {
		if st, derr := fwproto.DecodeState(r.Payload); derr == nil {
			return r, &ResyncError{State: st}
		}
	}
	return r, withDiagnostic(err)
}
