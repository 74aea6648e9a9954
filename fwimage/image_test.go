package fwimage

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// requireTool skips when an external program is missing, except under CI
// where the program must be installed.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

var sentinels = []error{ErrBadMagic, ErrTruncated, ErrUnsupported, ErrMalformed, ErrKeyID, ErrSignature, ErrDigest}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func mustBuild(t testing.TB, spec Spec, key ed25519.PrivateKey) []byte {
	t.Helper()
	img, err := Build(spec, key)
	if err != nil {
		t.Fatalf("Build(%+v): %v", spec, err)
	}
	return img
}

func devPub() ed25519.PublicKey { return DevKey().Public().(ed25519.PublicKey) }

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
	}{
		{"empty payload", Spec{Version: "0", Seq: 0, Size: HeaderSize, Seed: 0}},
		{"one byte", Spec{Version: "1.0.0", Seq: 1, Size: HeaderSize + 1, Seed: 1}},
		{"odd size", Spec{Version: "v2.3.4-rc1+g1234abc", Seq: 7, Size: 4096 + 3, Seed: -5}},
		{"full version field", Spec{Version: strings.Repeat("x", 32), Seq: 0xFFFFFFFF, Size: 1000, Seed: 42}},
		{"utf8 version", Spec{Version: "größe-1.0", Seq: 3, Size: 300, Seed: 9}},
		{"100 KiB", Spec{Version: "big", Seq: 2, Size: 100 << 10, Seed: 77}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img := mustBuild(t, tt.spec, DevKey())
			if len(img) != tt.spec.Size {
				t.Fatalf("len = %d, want %d", len(img), tt.spec.Size)
			}
			h, err := Verify(img, devPub())
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if h.Version != tt.spec.Version || h.Seq != tt.spec.Seq || int(h.PayloadSize) != tt.spec.Size-HeaderSize {
				t.Errorf("header = %+v, want version %q seq %d payload %d", h, tt.spec.Version, tt.spec.Seq, tt.spec.Size-HeaderSize)
			}
			if h.KeyID != KeyID(devPub()) {
				t.Errorf("key id %x, want %x", h.KeyID, KeyID(devPub()))
			}
			if h.PayloadSHA256 != sha256.Sum256(img[HeaderSize:]) {
				t.Errorf("payload digest mismatch")
			}
			again := mustBuild(t, tt.spec, DevKey())
			if !bytes.Equal(img, again) {
				t.Errorf("Build is not deterministic")
			}
		})
	}
}

// TestLayout pins every field to its documented offset, independently of
// the package's own encoder.
func TestLayout(t *testing.T) {
	img := mustBuild(t, Spec{Version: "1.2.3", Seq: 0x01020304, Size: HeaderSize + 10, Seed: 1}, DevKey())
	le := binary.LittleEndian
	if string(img[0:4]) != "FUDI" {
		t.Errorf("magic %q", img[0:4])
	}
	if got := le.Uint16(img[4:]); got != 256 {
		t.Errorf("header length %d", got)
	}
	if got := le.Uint16(img[6:]); got != 1 {
		t.Errorf("format version %d", got)
	}
	if !bytes.Equal(img[8:12], []byte{4, 3, 2, 1}) {
		t.Errorf("seq bytes % x, want little-endian", img[8:12])
	}
	if got := le.Uint32(img[12:]); got != 10 {
		t.Errorf("payload size %d", got)
	}
	wantVer := append([]byte("1.2.3"), make([]byte, 27)...)
	if !bytes.Equal(img[16:48], wantVer) {
		t.Errorf("version field % x", img[16:48])
	}
	if sum := sha256.Sum256(img[256:]); !bytes.Equal(img[48:80], sum[:]) {
		t.Errorf("payload digest field wrong")
	}
	pubSum := sha256.Sum256(devPub())
	if !bytes.Equal(img[80:88], pubSum[:8]) {
		t.Errorf("key id field % x, want % x", img[80:88], pubSum[:8])
	}
	if !bytes.Equal(img[88:192], make([]byte, 104)) {
		t.Errorf("reserved bytes not zero")
	}
	if !ed25519.Verify(devPub(), img[:192], img[192:256]) {
		t.Errorf("signature at 192 does not verify over [0,192)")
	}
}

// TestGolden pins the whole encoding, payload generator included, so a
// change that would invalidate stored images is noticed.
func TestGolden(t *testing.T) {
	img := mustBuild(t, Spec{Version: "1.0.0", Seq: 1, Size: 1024, Seed: 1}, DevKey())
	got := Digest(img)
	const want = "0e826472c41ebff9ffd6e5e44f7046102ecc3da4778e422d862aaff0e624e40a"
	if hex.EncodeToString(got[:]) != want {
		t.Errorf("digest %x, want %s", got, want)
	}
}

func TestPayloadNeverLooksErased(t *testing.T) {
	for seed := range int64(20) {
		img := mustBuild(t, Spec{Version: "p", Size: HeaderSize + 8192, Seed: seed}, DevKey())
		for i, b := range img[HeaderSize:] {
			if b == 0x00 || b == 0xFF {
				t.Fatalf("seed %d: payload byte %d is 0x%02x", seed, i, b)
			}
		}
	}
	a := mustBuild(t, Spec{Version: "p", Size: 512, Seed: 1}, DevKey())
	b := mustBuild(t, Spec{Version: "p", Size: 512, Seed: 2}, DevKey())
	if bytes.Equal(a[HeaderSize:], b[HeaderSize:]) {
		t.Errorf("different seeds gave the same payload")
	}
	long := mustBuild(t, Spec{Version: "p", Size: 1024, Seed: 1}, DevKey())
	if !bytes.Equal(a[HeaderSize:], long[HeaderSize:512]) {
		t.Errorf("a longer payload does not extend the shorter one with the same seed")
	}
}

func TestDevKey(t *testing.T) {
	const wantPub = "328c15bb59e64313648231b321502702d15b0519dd2bac1d4c24d83e65ade1ee"
	if got := hex.EncodeToString(devPub()); got != wantPub {
		t.Errorf("dev public key %s, want %s (the package documentation publishes it)", got, wantPub)
	}
	if id := KeyID(devPub()); hex.EncodeToString(id[:]) != "b5002f9d848c59c2" {
		t.Errorf("dev key id %x", id)
	}
	seed := sha256.Sum256([]byte("fudbench development key - NOT FOR PRODUCTION"))
	if !bytes.Equal(DevKey().Seed(), seed[:]) {
		t.Errorf("dev key seed is not SHA-256 of the published string")
	}
}

func TestBuildRejects(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		key  ed25519.PrivateKey
	}{
		{"empty version", Spec{Version: "", Size: 300}, DevKey()},
		{"version too long", Spec{Version: strings.Repeat("x", 33), Size: 300}, DevKey()},
		{"version with NUL", Spec{Version: "a\x00b", Size: 300}, DevKey()},
		{"version not UTF-8", Spec{Version: "\xff\xfe", Size: 300}, DevKey()},
		{"size below header", Spec{Version: "1", Size: HeaderSize - 1}, DevKey()},
		{"negative size", Spec{Version: "1", Size: -1}, DevKey()},
		{"short key", Spec{Version: "1", Size: 300}, DevKey()[:10]},
		{"nil key", Spec{Version: "1", Size: 300}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			img, err := Build(tt.spec, tt.key)
			if err == nil {
				t.Fatalf("Build succeeded with %d bytes, want an error", len(img))
			}
			if !strings.HasPrefix(err.Error(), "image: build: ") {
				t.Errorf("error %q lacks context", err)
			}
		})
	}
}

// TestEveryBitFlip flips each bit of a small image and checks that Verify
// rejects it with the error of the field that was hit.
func TestEveryBitFlip(t *testing.T) {
	img := mustBuild(t, Spec{Version: "1.0.0", Seq: 5, Size: HeaderSize + 64, Seed: 3}, DevKey())
	pub := devPub()
	expect := func(off int) []error {
		switch {
		case off < 4:
			return []error{ErrBadMagic}
		case off < 8:
			return []error{ErrUnsupported}
		case off < 12:
			return []error{ErrSignature}
		case off < 16:
			return []error{ErrTruncated, ErrMalformed}
		case off < 48:
			// A flipped version byte may still be a valid string; then
			// the signature catches it.
			return []error{ErrMalformed, ErrSignature}
		case off < 80:
			return []error{ErrSignature}
		case off < 88:
			return []error{ErrKeyID}
		case off < 192:
			return []error{ErrMalformed}
		case off < 256:
			return []error{ErrSignature}
		default:
			return []error{ErrDigest}
		}
	}
	buf := make([]byte, len(img))
	for off := range img {
		for bit := range 8 {
			copy(buf, img)
			buf[off] ^= 1 << bit
			h, err := Verify(buf, pub)
			if err == nil {
				t.Fatalf("flip at byte %d bit %d accepted: %+v", off, bit, h)
			}
			if h != nil {
				t.Errorf("flip at byte %d bit %d: non-nil header with error", off, bit)
			}
			ok := false
			for _, want := range expect(off) {
				ok = ok || errors.Is(err, want)
			}
			if !ok {
				t.Errorf("flip at byte %d bit %d: error %v, want one of %v", off, bit, err, expect(off))
			}
		}
	}
}

func TestTruncatedAndTrailing(t *testing.T) {
	img := mustBuild(t, Spec{Version: "1.0.0", Seq: 1, Size: HeaderSize + 100, Seed: 4}, DevKey())
	for n := range len(img) {
		_, err := Verify(img[:n], devPub())
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("Verify(img[:%d]) = %v, want ErrTruncated", n, err)
		}
	}
	_, err := Verify(append(bytes.Clone(img), 0xAA), devPub())
	if !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v, want ErrMalformed", err)
	}
	// A bootloader reading a larger flash slot slices by the header.
	slot := append(bytes.Clone(img), bytes.Repeat([]byte{0xFF}, 4096)...)
	h, err := ParseHeader(slot)
	if err != nil {
		t.Fatalf("ParseHeader(slot): %v", err)
	}
	if _, err := Verify(slot[:HeaderSize+int(h.PayloadSize)], devPub()); err != nil {
		t.Errorf("Verify of sliced slot: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	_, other, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	img := mustBuild(t, Spec{Version: "1", Size: 512, Seed: 1}, other)
	if _, err := Verify(img, devPub()); !errors.Is(err, ErrKeyID) {
		t.Errorf("image by another key: %v, want ErrKeyID", err)
	}
	if _, err := Verify(img, other.Public().(ed25519.PublicKey)); err != nil {
		t.Errorf("image by its own key: %v", err)
	}
	// An attacker who copies the trusted key id still fails on the
	// signature.
	forged := bytes.Clone(img)
	id := KeyID(devPub())
	copy(forged[80:88], id[:])
	copy(forged[192:256], ed25519.Sign(other, forged[:192]))
	if _, err := Verify(forged, devPub()); !errors.Is(err, ErrSignature) {
		t.Errorf("forged key id: %v, want ErrSignature", err)
	}
	if _, err := Verify(img, devPub()[:31]); err == nil || isSentinel(err) {
		t.Errorf("short public key: %v, want a non-sentinel argument error", err)
	}
}

func TestParseHeaderRejects(t *testing.T) {
	good := mustBuild(t, Spec{Version: "1.0", Seq: 1, Size: 300, Seed: 1}, DevKey())
	mod := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"nil", nil, ErrTruncated},
		{"three bytes", []byte("FUD"), ErrTruncated},
		{"bad magic short", []byte("ELF\x7f"), ErrBadMagic},
		{"magic only", []byte("FUDI"), ErrTruncated},
		{"header minus one", good[:HeaderSize-1], ErrTruncated},
		{"lowercase magic", mod(func(b []byte) { b[0] = 'f' }), ErrBadMagic},
		{"header length 512", mod(func(b []byte) { binary.LittleEndian.PutUint16(b[4:], 512) }), ErrUnsupported},
		{"format 2", mod(func(b []byte) { binary.LittleEndian.PutUint16(b[6:], 2) }), ErrUnsupported},
		{"reserved set", mod(func(b []byte) { b[191] = 1 }), ErrMalformed},
		{"empty version", mod(func(b []byte) { clear(b[16:48]) }), ErrMalformed},
		{"byte after NUL", mod(func(b []byte) { b[47] = 'x' }), ErrMalformed},
		{"invalid UTF-8", mod(func(b []byte) { b[16] = 0xC3; b[17] = 0x28 }), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ParseHeader = %+v, %v; want %v", h, err, tt.want)
			}
			if h != nil {
				t.Errorf("non-nil header with error")
			}
		})
	}
	// Structure only: a bad signature and a missing payload still parse.
	b := mod(func(b []byte) { b[200] ^= 1 })
	h, err := ParseHeader(b[:HeaderSize])
	if err != nil || h.Version != "1.0" || h.PayloadSize != 44 {
		t.Errorf("ParseHeader(header only) = %+v, %v", h, err)
	}
}

func TestDigest(t *testing.T) {
	img := mustBuild(t, Spec{Version: "1", Size: 700, Seed: 1}, DevKey())
	if Digest(img) != sha256.Sum256(img) {
		t.Errorf("Digest is not SHA-256 of the file")
	}
	h, _ := ParseHeader(img)
	if Digest(img) == h.PayloadSHA256 {
		t.Errorf("whole-file digest equals the payload digest")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var priv, pub bytes.Buffer
	if err := WritePrivateKeyPEM(&priv, k); err != nil {
		t.Fatal(err)
	}
	if err := WritePublicKeyPEM(&pub, k.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	privPath := filepath.Join(dir, "key.pem")
	pubPath := filepath.Join(dir, "pub.pem")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("key.pem", priv.Bytes())
	write("pub.pem", pub.Bytes())

	gotPriv, err := LoadPrivateKey(privPath)
	if err != nil || !gotPriv.Equal(k) {
		t.Fatalf("LoadPrivateKey = %v, %v", err, gotPriv.Equal(k))
	}
	for _, p := range []string{privPath, pubPath} {
		gotPub, err := LoadPublicKey(p)
		if err != nil || !gotPub.Equal(k.Public()) {
			t.Fatalf("LoadPublicKey(%s) = %v, equal %v", p, err, gotPub.Equal(k.Public()))
		}
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalPKCS8PrivateKey(ec)
	ecPubDER, _ := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	ecPath := write("ec.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER}))
	ecPubPath := write("ecpub.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPubDER}))
	garbagePath := write("garbage.pem", []byte("not pem at all\n"))
	badDERPath := write("bad.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}}))
	encPath := write("enc.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
	missing := filepath.Join(dir, "missing.pem")

	errCases := []struct {
		name   string
		load   func(string) error
		path   string
		substr string
	}{
		{"private missing", loadPriv, missing, "missing.pem"},
		{"private from public file", loadPriv, pubPath, "no PEM"},
		{"private garbage", loadPriv, garbagePath, "no PEM"},
		{"private ecdsa", loadPriv, ecPath, "want Ed25519"},
		{"private bad DER", loadPriv, badDERPath, "PKCS#8"},
		{"private encrypted", loadPriv, encPath, "encrypted"},
		{"public missing", loadPub, missing, "missing.pem"},
		{"public garbage", loadPub, garbagePath, "no PEM"},
		{"public ecdsa", loadPub, ecPubPath, "want Ed25519"},
		{"public from ecdsa private", loadPub, ecPath, "want Ed25519"},
	}
	for _, tc := range errCases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.load(tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.substr) {
				t.Errorf("error %q should name %s and say %q", err, tc.path, tc.substr)
			}
		})
	}
	if err := WritePrivateKeyPEM(&bytes.Buffer{}, k[:5]); err == nil {
		t.Errorf("WritePrivateKeyPEM accepted a short key")
	}
}

func loadPriv(p string) error { _, err := LoadPrivateKey(p); return err }
func loadPub(p string) error  { _, err := LoadPublicKey(p); return err }

// TestOpenSSL checks interoperability with keys openssl makes and that
// openssl accepts our signatures.
func TestOpenSSL(t *testing.T) {
	openssl := requireTool(t, "openssl")
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "key.pem")
	pubPath := filepath.Join(dir, "pub.pem")
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
	}
	run("genpkey", "-algorithm", "ed25519", "-out", keyPath)
	run("pkey", "-in", keyPath, "-pubout", "-out", pubPath)

	key, err := LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(key.Public()) {
		t.Fatalf("openssl public key does not match its private key")
	}
	img := mustBuild(t, Spec{Version: "ossl", Seq: 1, Size: 1024, Seed: 1}, key)
	if _, err := Verify(img, pub); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	signed := filepath.Join(dir, "signed.bin")
	sig := filepath.Join(dir, "sig.bin")
	if err := os.WriteFile(signed, img[:SignedSize], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sig, img[SignedSize:HeaderSize], 0o600); err != nil {
		t.Fatal(err)
	}
	run("pkeyutl", "-verify", "-pubin", "-inkey", pubPath, "-rawin", "-in", signed, "-sigfile", sig)

	// And our key file is one openssl reads.
	var buf bytes.Buffer
	if err := WritePrivateKeyPEM(&buf, DevKey()); err != nil {
		t.Fatal(err)
	}
	devPath := filepath.Join(dir, "dev.pem")
	if err := os.WriteFile(devPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "pkey", "-in", devPath, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatalf("openssl pkey on our key file: %v", err)
	}
	if !bytes.HasSuffix(out, devPub()) {
		t.Errorf("openssl derived public key % x, want suffix % x", out, []byte(devPub()))
	}
}
