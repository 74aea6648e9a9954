package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
)

// This file asks a device which image it runs. A device that speaks
// fudbench's update protocol answers GET /fw/version with the running
// image's digest. Any other CoAP device (profile block1) is asked as its
// bench entry says (boards.VersionCheck): a resource whose payload names
// the version, a console line, or nothing at all, in which case an
// update's outcome rests on the transfer's final answer and the device
// answering afterwards.

// errNotYet is a console version check's "no matching line since power
// came on": neither an answer nor a transport failure, so the poller
// neither redials nor stops.
var errNotYet = errors.New("no console line names the version since power on")

// Image is what the bench expects a device to report when an image runs:
// its digest (fudbench's protocol) and its version string (any other
// device's check).
type Image struct {
	Digest  []byte
	Version string
}

// readVersion asks the device which image it runs, by the board's check.
// Version.Digest is set only by a device that speaks fudbench's protocol.
// Under version: none any answer at all comes back as an empty Version.
func (b *Board) readVersion(ctx context.Context, c *fwclient.Client) (fwproto.Version, error) {
	v := b.VersionCheck
	switch {
	case v == nil:
		return c.Version(ctx)
	case v.Mode == boards.VersionCoAP:
		r, err := c.Get(ctx, v.Get)
		if err != nil {
			return fwproto.Version{}, err
		}
		if err := coap.Expect("GET "+v.Get, r, codes.Content); err != nil {
			return fwproto.Version{}, err
		}
		s, ok := v.Extract(string(r.Payload))
		if !ok || s == "" {
			return fwproto.Version{}, fmt.Errorf("GET %s: %w: %s does not match %q", v.Get, fwclient.ErrBadAnswer, clip(r.Payload), v.Match)
		}
		return fwproto.Version{Version: s}, nil
	case v.Mode == boards.VersionConsole:
		return b.consoleVersion()
	}
	// none: any answer, even an error code, says the device is up.
	if _, err := c.Get(ctx, "/.well-known/core"); err != nil && !answered(err) {
		return fwproto.Version{}, err
	}
	return fwproto.Version{}, nil
}

// consoleVersion is the version named by the newest console line since
// the board was last powered on that matches the board's pattern.
func (b *Board) consoleVersion() (fwproto.Version, error) {
	if b.Console == nil {
		return fwproto.Version{}, stop(fmt.Errorf("board %s: its version is read from the console, which is not open", b.Name))
	}
	since := time.Unix(0, b.bootAt.Load())
	lines := b.Console.Last(256)
	for i := len(lines) - 1; i >= 0 && !lines[i].Wall.Before(since); i-- {
		if s, ok := b.VersionCheck.Extract(lines[i].Text); ok && s != "" {
			return fwproto.Version{Version: s}, nil
		}
	}
	return fwproto.Version{}, errNotYet
}

// runs reports whether what the device reported (readVersion) is im.
// Under version: none it cannot tell, and says yes only when asked
// whether the update runs after a transfer the device took whole
// (delivered): the weaker check its documentation describes.
func (b *Board) runs(v fwproto.Version, im Image, delivered bool) bool {
	switch vc := b.VersionCheck; {
	case vc == nil:
		return bytes.Equal(v.Digest, im.Digest)
	case vc.Reads():
		return v.Version == im.Version
	}
	return delivered
}

// checksVersion reports whether the board's version check can tell one
// image from another (every check but none).
func (b *Board) checksVersion() bool {
	return b.VersionCheck == nil || b.VersionCheck.Reads()
}

// versionName names what the device reported, for messages.
func versionName(v fwproto.Version) string {
	if v.Version == "" {
		return "an image it does not name"
	}
	return v.Version
}

// clip quotes at most 64 bytes of a payload for a message.
func clip(p []byte) string {
	if len(p) > 64 {
		return strconv.Quote(string(p[:64])) + "…"
	}
	return strconv.Quote(string(p))
}

// DescribeRunning reads, by the board's version check, what a plain CoAP
// device (one with a VersionCheck) runs, for fudbench check: any answer
// means the device is reachable, and the text says what it told.
func (b *Board) DescribeRunning(ctx context.Context, c *fwclient.Client) (string, error) {
	vc := b.VersionCheck
	if vc == nil || vc.Mode != boards.VersionCoAP {
		// The console's version comes with a boot; reachability is what
		// CoAP can show.
		if _, err := c.Get(ctx, "/.well-known/core"); err != nil && !answered(err) {
			return "", err
		}
		return "reachable (its version is checked by " + vc.String() + ")", nil
	}
	v, err := b.readVersion(ctx, c)
	switch {
	case err == nil:
		return fmt.Sprintf("running %s (%s)", v.Version, vc), nil
	case answered(err):
		return fmt.Sprintf("reachable, but no version: %v", err), nil
	}
	return "", err
}
