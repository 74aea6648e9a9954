// Package fwimage defines the signed application image that the simulated
// board's bootloader verifies before it boots an application, and that the
// update protocol transfers. The format is small and fixed so that a real
// bootloader can implement the same check in a few hundred lines of C.
//
// # Layout
//
// An image file is a 256-byte header followed by the payload (the
// application). All integers are little-endian. Offsets are in bytes from the
// start of the file:
//
//	off  size  field
//	  0     4  magic, the ASCII bytes "FUDI" (0x46 0x55 0x44 0x49)
//	  4     2  header length, u16, always 256
//	  6     2  format version, u16, always 1
//	  8     4  anti-rollback sequence, u32
//	 12     4  payload size in bytes, u32 (file size = 256 + payload size)
//	 16    32  version string: UTF-8, at least 1 byte, no NUL inside,
//	           padded with NUL (0x00) bytes to 32; exactly 32 bytes of text
//	           has no terminator
//	 48    32  SHA-256 of the payload (bytes [256, 256+payload size))
//	 80     8  key id: the first 8 bytes of SHA-256 of the signer's raw
//	           32-byte Ed25519 public key (RFC 8032 encoding, not DER)
//	 88   104  reserved, all zero
//	192    64  Ed25519 signature (RFC 8032 pure Ed25519, no prehash, no
//	           context) over header bytes [0, 192)
//
// The signature covers the payload through its digest at offset 48, so the
// bootloader checks the 192 signed bytes, then hashes the payload once.
//
// # Verification, in order
//
// A verifier must reject the image, and never boot it, unless every step
// passes. Verify performs steps 1–7; step 8 needs the device's stored state
// and belongs to the bootloader.
//
//  1. At least 4 bytes and magic "FUDI", else ErrBadMagic.
//  2. At least 256 bytes, else ErrTruncated.
//  3. Header length 256 and format version 1, else ErrUnsupported; reserved
//     bytes all zero and a valid version string, else ErrMalformed.
//  4. File length exactly 256 + payload size: shorter is ErrTruncated,
//     longer is ErrMalformed. (A bootloader reading from a flash slot larger
//     than the image takes the first 256 + payload size bytes.)
//  5. Key id equal to the id of the key the verifier trusts, else ErrKeyID.
//  6. Ed25519 signature over bytes [0, 192) valid for that key, else
//     ErrSignature.
//  7. SHA-256 of the payload equal to the digest at offset 48, else
//     ErrDigest.
//  8. Anti-rollback: the sequence must not be lower than the lowest
//     sequence the device still accepts (the bootloader's stored floor).
//
// The whole-file SHA-256 (Digest) is a different value from the payload
// digest in the header: it is what the update protocol calls "digest", the
// hash of exactly the bytes transferred, header included.
//
// # Payloads built here
//
// Build makes test images whose payload is a deterministic function of a
// seed: the ChaCha8 stream of math/rand/v2 keyed with
// SHA-256("fudbench image payload v1" || Seed as u64 little-endian), with
// every 0x00 and 0xFF byte skipped. No payload byte is ever 0x00 or 0xFF, so
// an erased or half-erased region of flash, whatever the erased value,
// never looks like a correctly written one.
//
// # Keys
//
// DevKey is a development key derived from a published seed string
// (DevKeySeed; the Ed25519 seed is its SHA-256). It is PUBLIC: anyone can
// sign images with it. Its public key is
//
//	328c15bb59e64313648231b321502702d15b0519dd2bac1d4c24d83e65ade1ee
//
// and its key id b5002f9d848c59c2. A device that trusts it trusts
// everyone. Use it for the simulator, tests and demos only; real devices get
// a key made with, for example, `openssl genpkey -algorithm ed25519`, loaded
// with LoadPrivateKey and LoadPublicKey.
package fwimage

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"unicode/utf8"
)

// HeaderSize is the fixed length of the image header in bytes.
const HeaderSize = 256

// FormatVersion is the only header format version this package reads and
// writes.
const FormatVersion = 1

// Magic is the first four bytes of every image.
const Magic = "FUDI"

// Field offsets within the header.
const (
	offMagic     = 0
	offHdrLen    = 4
	offFormat    = 6
	offSeq       = 8
	offSize      = 12
	offVersion   = 16
	offDigest    = 48
	offKeyID     = 80
	offReserved  = 88
	offSignature = 192

	// SignedSize is the number of header bytes covered by the signature.
	SignedSize = offSignature
	// MaxVersionLen is the longest version string the header can hold.
	MaxVersionLen = offDigest - offVersion
)

// Sentinel errors; every error returned wraps one of these with detail.
var (
	ErrBadMagic    = errors.New("image: bad magic")
	ErrTruncated   = errors.New("image: truncated")
	ErrUnsupported = errors.New("image: unsupported header")
	ErrMalformed   = errors.New("image: malformed header")
	ErrKeyID       = errors.New("image: signed by another key")
	ErrSignature   = errors.New("image: bad signature")
	ErrDigest      = errors.New("image: payload digest mismatch")
)

// DevKeySeed is the published string the development key is derived from:
// the Ed25519 seed is its SHA-256.
const DevKeySeed = "fudbench development key - NOT FOR PRODUCTION"

// Header is the decoded image header.
type Header struct {
	// Version is the version string, without padding.
	Version string
	// Seq is the anti-rollback sequence.
	Seq uint32
	// PayloadSize is the number of payload bytes after the header.
	PayloadSize uint32
	// PayloadSHA256 is the SHA-256 of the payload.
	PayloadSHA256 [32]byte
	// KeyID identifies the signing key (see KeyID).
	KeyID [8]byte
	// Signature is the Ed25519 signature over header bytes [0, 192).
	Signature [64]byte
}

// Spec describes an image for Build.
type Spec struct {
	// Version is the version string, 1 to 32 bytes of UTF-8 without NUL.
	Version string
	// Seq is the anti-rollback sequence.
	Seq uint32
	// Size is the total image size in bytes, header included; at least
	// HeaderSize.
	Size int
	// Seed selects the deterministic payload.
	Seed int64
}

// DevKey returns the built-in development key. It is public (see the
// package documentation): never let a production device trust it.
func DevKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(DevKeySeed))
	return ed25519.NewKeyFromSeed(seed[:])
}

// KeyID returns the key id of a public key: the first 8 bytes of the
// SHA-256 of its raw 32-byte encoding.
func KeyID(pub ed25519.PublicKey) [8]byte {
	sum := sha256.Sum256(pub)
	var id [8]byte
	copy(id[:], sum[:8])
	return id
}

// Digest returns the SHA-256 of the whole image file, what the update
// protocol calls the digest.
func Digest(img []byte) [32]byte {
	return sha256.Sum256(img)
}

// Build makes a signed image from spec with a deterministic payload.
func Build(spec Spec, key ed25519.PrivateKey) ([]byte, error) {
	if err := checkVersion(spec.Version); err != nil {
		return nil, fmt.Errorf("image: build: %w", err)
	}
	if spec.Size < HeaderSize {
		return nil, fmt.Errorf("image: build: size %d is smaller than the %d-byte header", spec.Size, HeaderSize)
	}
	if uint64(spec.Size-HeaderSize) > math.MaxUint32 {
		return nil, fmt.Errorf("image: build: payload of %d bytes does not fit a u32", spec.Size-HeaderSize)
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("image: build: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	img := make([]byte, spec.Size)
	payload := img[HeaderSize:]
	fillPayload(payload, spec.Seed)
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok {
		return nil, errors.New("image: build: private key has no Ed25519 public key")
	}
	h := Header{
		Version:       spec.Version,
		Seq:           spec.Seq,
		PayloadSize:   uint32(len(payload)),
		PayloadSHA256: sha256.Sum256(payload),
		KeyID:         KeyID(pub),
	}
	putHeader(img[:HeaderSize], &h)
	copy(img[offSignature:HeaderSize], ed25519.Sign(key, img[:SignedSize]))
	return img, nil
}

// payloadSeedLabel domain-separates the payload generator's key.
const payloadSeedLabel = "fudbench image payload v1"

// fillPayload fills p from the ChaCha8 stream for seed, skipping 0x00 and
// 0xFF bytes so that no part of a payload looks erased.
func fillPayload(p []byte, seed int64) {
	in := make([]byte, len(payloadSeedLabel)+8)
	copy(in, payloadSeedLabel)
	binary.LittleEndian.PutUint64(in[len(payloadSeedLabel):], uint64(seed))
	r := rand.NewChaCha8(sha256.Sum256(in))
	var buf [512]byte
	for n := 0; n < len(p); {
		_, _ = r.Read(buf[:]) // ChaCha8.Read never fails
		for _, b := range buf {
			if b == 0x00 || b == 0xFF {
				continue
			}
			p[n] = b
			n++
			if n == len(p) {
				break
			}
		}
	}
}

// putHeader encodes h into b[:HeaderSize], leaving the signature from h.
func putHeader(b []byte, h *Header) {
	clear(b[:HeaderSize])
	copy(b[offMagic:], Magic)
	binary.LittleEndian.PutUint16(b[offHdrLen:], HeaderSize)
	binary.LittleEndian.PutUint16(b[offFormat:], FormatVersion)
	binary.LittleEndian.PutUint32(b[offSeq:], h.Seq)
	binary.LittleEndian.PutUint32(b[offSize:], h.PayloadSize)
	copy(b[offVersion:offDigest], h.Version)
	copy(b[offDigest:], h.PayloadSHA256[:])
	copy(b[offKeyID:], h.KeyID[:])
	copy(b[offSignature:], h.Signature[:])
}

func checkVersion(v string) error {
	switch {
	case v == "":
		return errors.New("empty version string")
	case len(v) > MaxVersionLen:
		return fmt.Errorf("version string is %d bytes, at most %d fit", len(v), MaxVersionLen)
	case !utf8.ValidString(v):
		return errors.New("version string is not valid UTF-8")
	case bytes.IndexByte([]byte(v), 0) >= 0:
		return errors.New("version string contains a NUL byte")
	}
	return nil
}

// ParseHeader decodes and checks the structure of the header at the start of
// b: magic, header length, format version, reserved bytes and version
// string. It checks neither the payload nor the signature (see Verify).
// Bytes after the header are ignored.
func ParseHeader(b []byte) (*Header, error) {
	if len(b) < len(Magic) {
		return nil, fmt.Errorf("%w: %d bytes, the header needs %d", ErrTruncated, len(b), HeaderSize)
	}
	if string(b[offMagic:offMagic+len(Magic)]) != Magic {
		return nil, fmt.Errorf("%w: % x, want % x", ErrBadMagic, b[:len(Magic)], Magic)
	}
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("%w: %d bytes, the header needs %d", ErrTruncated, len(b), HeaderSize)
	}
	if n := binary.LittleEndian.Uint16(b[offHdrLen:]); n != HeaderSize {
		return nil, fmt.Errorf("%w: header length %d, want %d", ErrUnsupported, n, HeaderSize)
	}
	if v := binary.LittleEndian.Uint16(b[offFormat:]); v != FormatVersion {
		return nil, fmt.Errorf("%w: format version %d, want %d", ErrUnsupported, v, FormatVersion)
	}
	for i := offReserved; i < offSignature; i++ {
		if b[i] != 0 {
			return nil, fmt.Errorf("%w: reserved byte at offset %d is 0x%02x", ErrMalformed, i, b[i])
		}
	}
	field := b[offVersion:offDigest]
	text := field
	if i := bytes.IndexByte(field, 0); i >= 0 {
		text = field[:i]
		for j, c := range field[i:] {
			if c != 0 {
				return nil, fmt.Errorf("%w: version string has byte 0x%02x after its NUL terminator at offset %d", ErrMalformed, c, offVersion+i+j)
			}
		}
	}
	if err := checkVersion(string(text)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	h := &Header{
		Version:     string(text),
		Seq:         binary.LittleEndian.Uint32(b[offSeq:]),
		PayloadSize: binary.LittleEndian.Uint32(b[offSize:]),
	}
	copy(h.PayloadSHA256[:], b[offDigest:])
	copy(h.KeyID[:], b[offKeyID:])
	copy(h.Signature[:], b[offSignature:])
	return h, nil
}

// Verify checks img completely against the trusted key pub — structure,
// size, key id, signature and payload digest, in that order — and returns its
// header. It does not check anti-rollback, which needs the device's state.
func Verify(img []byte, pub ed25519.PublicKey) (*Header, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("image: verify: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	h, err := ParseHeader(img)
	if err != nil {
		return nil, err
	}
	want := uint64(HeaderSize) + uint64(h.PayloadSize)
	switch got := uint64(len(img)); {
	case got < want:
		return nil, fmt.Errorf("%w: %d bytes, the header declares %d", ErrTruncated, got, want)
	case got > want:
		return nil, fmt.Errorf("%w: %d bytes, the header declares %d (%d trailing)", ErrMalformed, got, want, got-want)
	}
	if id := KeyID(pub); id != h.KeyID {
		return nil, fmt.Errorf("%w: key id %x, trusted key is %x", ErrKeyID, h.KeyID, id)
	}
	if !ed25519.Verify(pub, img[:SignedSize], h.Signature[:]) {
		return nil, fmt.Errorf("%w: version %q seq %d", ErrSignature, h.Version, h.Seq)
	}
	if sum := sha256.Sum256(img[HeaderSize:]); sum != h.PayloadSHA256 {
		return nil, fmt.Errorf("%w: payload hashes to %x, header says %x", ErrDigest, sum, h.PayloadSHA256)
	}
	return h, nil
}

// MaxImageSize bounds an image file ReadFile takes when no smaller bound
// is known: the flash of the largest parts fudbench drives is a few MiB,
// and a CoAP transfer of 1024-byte blocks reaches 1 GiB only in theory.
const MaxImageSize = 64 << 20

// ErrTooLarge marks an image file larger than the bound it is read with.
var ErrTooLarge = errors.New("image: file too large")

// ReadFile reads an image file of at most limit bytes (MaxImageSize when
// limit is 0 or less), checking its size before it reads it: a file of
// gigabytes, or a device such as /dev/zero that has no size, is refused
// with an error wrapping ErrTooLarge having read at most limit+1 bytes.
// Give the board's slot size as the limit when it is known.
func ReadFile(path string, limit int64) ([]byte, error) {
	if limit <= 0 {
		limit = MaxImageSize
	}
	return readFile(path, limit)
}

// maxKeyFile bounds a PEM key file: an Ed25519 key is under 200 bytes of
// PEM, and a file of several blocks is still a few KiB.
const maxKeyFile = 64 << 10

// readFile reads a file of at most limit bytes.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a directory", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than %d", ErrTooLarge, path, fi.Size(), limit)
	}
	// Room for the size the file claims and one read more, to see its end.
	buf := bytes.NewBuffer(make([]byte, 0, fi.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) > limit {
		return nil, fmt.Errorf("%w: %s has more than %d bytes", ErrTooLarge, path, limit)
	}
	return buf.Bytes(), nil
}

// LoadPrivateKey reads an Ed25519 private key from a PEM file holding a
// "PRIVATE KEY" block (PKCS#8), as written by
// `openssl genpkey -algorithm ed25519` and WritePrivateKeyPEM.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("image: private key: %w", err)
	}
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("image: private key %s: no PEM \"PRIVATE KEY\" block", path)
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := parsePKCS8(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("image: private key %s: %w", path, err)
			}
			return k, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, fmt.Errorf("image: private key %s: encrypted keys are not supported", path)
		}
	}
}

func parsePKCS8(der []byte) (ed25519.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is a %T, want Ed25519", k)
	}
	return ek, nil
}

// LoadPublicKey reads an Ed25519 public key from a PEM file holding a
// "PUBLIC KEY" block (PKIX, as written by `openssl pkey -pubout`) or a
// "PRIVATE KEY" block, from which the public key is derived.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readFile(path, maxKeyFile)
	if err != nil {
		return nil, fmt.Errorf("image: public key: %w", err)
	}
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("image: public key %s: no PEM \"PUBLIC KEY\" or \"PRIVATE KEY\" block", path)
		}
		switch blk.Type {
		case "PUBLIC KEY":
			k, err := x509.ParsePKIXPublicKey(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("image: public key %s: parse PKIX: %w", path, err)
			}
			ek, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("image: public key %s: key is a %T, want Ed25519", path, k)
			}
			return ek, nil
		case "PRIVATE KEY":
			k, err := parsePKCS8(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("image: public key %s: %w", path, err)
			}
			return k.Public().(ed25519.PublicKey), nil
		}
	}
}

// WritePrivateKeyPEM writes k as a PEM "PRIVATE KEY" block (PKCS#8), the
// form LoadPrivateKey and openssl read.
func WritePrivateKeyPEM(w io.Writer, k ed25519.PrivateKey) error {
	if len(k) != ed25519.PrivateKeySize {
		return fmt.Errorf("image: write private key: key is %d bytes, want %d", len(k), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return fmt.Errorf("image: marshal private key: %w", err)
	}
	if err := pem.Encode(w, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		return fmt.Errorf("image: write private key: %w", err)
	}
	return nil
}

// WritePublicKeyPEM writes k as a PEM "PUBLIC KEY" block (PKIX), the form a
// device's provisioning takes.
func WritePublicKeyPEM(w io.Writer, k ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return fmt.Errorf("image: marshal public key: %w", err)
	}
	if err := pem.Encode(w, &pem.Block{Type: "PUBLIC KEY", Bytes: der}); err != nil {
		return fmt.Errorf("image: write public key: %w", err)
	}
	return nil
}
