// Package fwproto defines the resumable in-place update protocol spoken
// between the bench and a device's recovery bootloader: the resources, the
// CBOR payloads (text keys) and their validation. Both the bench's update
// session and the simulated board use it, so a real firmware that follows
// docs/protocol.md can be tested by the same jobs.
//
// App mode:
//
//	GET  /fw/version  -> Version{version, seq, digest, mode:"app"}
//	POST /fw/prepare  <- Prepare{size, digest, szx, tag}; 2.04, then the
//	                     device reboots into recovery
//
// Recovery mode:
//
//	GET /fw/state     -> State{mode:"recovery", state, size, digest, szx, tag, next}
//	PUT /fw           Block1 + Request-Tag(tag): block next is written,
//	                  journaled, then answered 2.31; a block below next is
//	                  answered 2.31 again without rewriting; a block above
//	                  next or a wrong tag gets 4.08 with State; the last
//	                  block triggers verification: 2.04 and boot, or an
//	                  error code with Failure.
//
// Both modes:
//
//	GET /boot         -> Boot{mode, boots, reset_cause, version}
package fwproto

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Resource paths.
const (
	PathBoot    = "/boot"
	PathVersion = "/fw/version"
	PathPrepare = "/fw/prepare"
	PathState   = "/fw/state"
	PathFW      = "/fw"
)

// Option numbers and media types beyond go-coap's built-ins.
const (
	OptionRequestTag = 292 // RFC 9175
	MediaTypeCBOR    = 60  // application/cbor
)

// Modes, states and reset causes.
const (
	ModeApp      = "app"
	ModeRecovery = "recovery"

	StateReceiving = "receiving"
	StateVerifying = "verifying"
	StateFailed    = "failed"

	ResetPower    = "power"
	ResetSoftware = "software"
)

// Limits of the protocol.
const (
	MaxSZX    = 6 // block size 1024
	MaxTagLen = 8
	DigestLen = 32
	// MaxPayload bounds any CBOR payload this package decodes: a longer
	// one is refused before the decoder sees it, so no length field
	// inside it can claim more than 1024 bytes of input.
	MaxPayload = 1024
)

// Limits of the CBOR decoder, beyond MaxPayload. fxamacker/cbor checks
// that a payload is well formed — every byte or text string's length
// within the bytes that remain — before it allocates anything, so a
// length field claiming gigabytes is refused as an unexpected end of
// data; these bound what a well-formed payload may hold.
const (
	// MaxCBORNesting bounds nested arrays and maps (the decoder's
	// minimum): every payload of the protocol is one flat map.
	MaxCBORNesting = 4
	// MaxCBORArray bounds the elements of one array. No payload of the
	// protocol has an array; unknown keys may, and are skipped.
	MaxCBORArray = 64
	// MaxCBORMapPairs bounds the pairs of one map (the decoder's
	// minimum): State, the largest payload, has 7 keys.
	MaxCBORMapPairs = 16
)

// ErrInvalid marks a payload that decoded but breaks the protocol's rules.
var ErrInvalid = errors.New("fwproto: invalid payload")

// Version answers GET /fw/version in app mode.
type Version struct {
	Version string `cbor:"version"`
	Seq     uint32 `cbor:"seq"`
	Digest  []byte `cbor:"digest"`
	Mode    string `cbor:"mode"`
}

// Prepare is the body of POST /fw/prepare.
type Prepare struct {
	Size   uint32 `cbor:"size"`
	Digest []byte `cbor:"digest"`
	SZX    uint8  `cbor:"szx"`
	Tag    []byte `cbor:"tag"`
}

// State answers GET /fw/state in recovery mode and accompanies 4.08.
type State struct {
	Mode   string `cbor:"mode"`
	State  string `cbor:"state"`
	Size   uint32 `cbor:"size"`
	Digest []byte `cbor:"digest"`
	SZX    uint8  `cbor:"szx"`
	Tag    []byte `cbor:"tag"`
	Next   uint32 `cbor:"next"`
}

// Boot answers GET /boot in both modes.
type Boot struct {
	Mode       string `cbor:"mode"`
	Boots      uint32 `cbor:"boots"`
	ResetCause string `cbor:"reset_cause"`
	Version    string `cbor:"version"`
}

// Failure is the diagnostic payload of a failed verification or a refused
// request.
type Failure struct {
	State string `cbor:"state,omitempty"`
	Error string `cbor:"error"`
}

// BlockSize returns the block size of an SZX (16 << szx).
func BlockSize(szx uint8) int { return 16 << szx }

// Blocks returns the number of blocks of size bytes at szx.
func Blocks(size uint32, szx uint8) uint32 {
	// In 64 bits: a size near 4 GiB must not wrap to a small count.
	bs := uint64(BlockSize(szx))
	return uint32((uint64(size) + bs - 1) / bs)
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	encMode, err = cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxNestedLevels:  MaxCBORNesting,
		MaxArrayElements: MaxCBORArray,
		MaxMapPairs:      MaxCBORMapPairs,
		// Indefinite lengths and tags have no use in the protocol: a
		// payload with either is refused.
		IndefLength: cbor.IndefLengthForbidden,
		TagsMd:      cbor.TagsForbidden,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// Marshal encodes v as deterministic CBOR.
func Marshal(v any) ([]byte, error) {
	b, err := encMode.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("fwproto: encode %T: %w", v, err)
	}
	return b, nil
}

// MustMarshal is Marshal for values that always encode (the types above).
func MustMarshal(v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func decode(b []byte, v any) error {
	if len(b) > MaxPayload {
		return fmt.Errorf("%w: %d-byte payload exceeds the %d-byte limit", ErrInvalid, len(b), MaxPayload)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("fwproto: decode %T: %w", v, err)
	}
	return nil
}

func checkDigest(d []byte) error {
	if len(d) != DigestLen {
		return fmt.Errorf("%w: digest is %d bytes, want %d", ErrInvalid, len(d), DigestLen)
	}
	return nil
}

func checkTag(t []byte) error {
	if len(t) < 1 || len(t) > MaxTagLen {
		return fmt.Errorf("%w: tag is %d bytes, want 1-%d", ErrInvalid, len(t), MaxTagLen)
	}
	return nil
}

func checkSZX(s uint8) error {
	if s > MaxSZX {
		return fmt.Errorf("%w: szx %d > %d", ErrInvalid, s, MaxSZX)
	}
	return nil
}

// DecodePrepare decodes and validates a prepare request.
func DecodePrepare(b []byte) (Prepare, error) {
	var p Prepare
	if err := decode(b, &p); err != nil {
		return Prepare{}, err
	}
	if p.Size == 0 {
		return Prepare{}, fmt.Errorf("%w: size 0", ErrInvalid)
	}
	return p, errors.Join(checkDigest(p.Digest), checkSZX(p.SZX), checkTag(p.Tag))
}

// DecodeState decodes and validates a device's state report. The bench
// must not trust it further than this: next beyond the image, an unknown
// state and a malformed digest are refused here.
func DecodeState(b []byte) (State, error) {
	var s State
	if err := decode(b, &s); err != nil {
		return State{}, err
	}
	if s.Mode != ModeRecovery {
		return State{}, fmt.Errorf("%w: mode %q in state report", ErrInvalid, s.Mode)
	}
	switch s.State {
	case StateReceiving, StateVerifying, StateFailed:
	default:
		return State{}, fmt.Errorf("%w: state %q", ErrInvalid, s.State)
	}
	if s.State == StateFailed && s.Size == 0 {
		// A recovery with no transfer under way reports only its state.
		return s, nil
	}
	if err := errors.Join(checkDigest(s.Digest), checkSZX(s.SZX), checkTag(s.Tag)); err != nil {
		return State{}, err
	}
	if s.Next > Blocks(s.Size, s.SZX) {
		return State{}, fmt.Errorf("%w: next %d beyond the %d blocks of the image", ErrInvalid, s.Next, Blocks(s.Size, s.SZX))
	}
	return s, nil
}

// DecodeVersion decodes and validates a version report.
func DecodeVersion(b []byte) (Version, error) {
	var v Version
	if err := decode(b, &v); err != nil {
		return Version{}, err
	}
	if v.Mode != ModeApp {
		return Version{}, fmt.Errorf("%w: mode %q in version report", ErrInvalid, v.Mode)
	}
	return v, checkDigest(v.Digest)
}

// DecodeBoot decodes and validates a boot report.
func DecodeBoot(b []byte) (Boot, error) {
	var v Boot
	if err := decode(b, &v); err != nil {
		return Boot{}, err
	}
	if v.Mode != ModeApp && v.Mode != ModeRecovery {
		return Boot{}, fmt.Errorf("%w: mode %q", ErrInvalid, v.Mode)
	}
	if v.ResetCause != ResetPower && v.ResetCause != ResetSoftware {
		return Boot{}, fmt.Errorf("%w: reset cause %q", ErrInvalid, v.ResetCause)
	}
	return v, nil
}

// DecodeFailure decodes a diagnostic payload.
func DecodeFailure(b []byte) (Failure, error) {
	var f Failure
	err := decode(b, &f)
	return f, err
}

// SameTransfer reports whether a state report describes the transfer p.
func SameTransfer(s State, p Prepare) bool {
	return s.Size == p.Size && s.SZX == p.SZX && bytes.Equal(s.Digest, p.Digest) && bytes.Equal(s.Tag, p.Tag)
}
