package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
)

// What a DTLS client sees when it offers a PSK identity the board does not
// know: at once, a fatal unknown_psk_identity alert (RFC 4279 §2), as from
// a device on mbedTLS or OpenSSL; not a timeout. A bench can then tell its
// user which identity the device refused instead of reporting a generic
// failure.

// refusedIdentityError is the whole error pion's client returns for the
// refusal. pion has no name for alert 115, hence "Invalid alert
// description": match the alert's bytes (alertBytes), not this text.
const refusedIdentityError = "handshake error: alert: Alert Fatal: Invalid alert description"

// alertBytes returns the level and description of the alert that ended a
// pion handshake: pion's alert error type is unexported, but errors.As
// finds it by its methods, and Marshal gives the alert as sent.
func alertBytes(err error) ([]byte, bool) {
	var a interface {
		Marshal() ([]byte, error)
		IsFatalOrCloseNotify() bool
	}
	if !errors.As(err, &a) {
		return nil, false
	}
	b, err := a.Marshal()
	return b, err == nil && len(b) == 2
}

func boardHandshake(t *testing.T, addr string, identity, key []byte) (time.Duration, error) {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	c, err := piondtls.ClientWithOptions(pc, raddr,
		piondtls.WithPSK(func([]byte) ([]byte, error) { return key, nil }),
		piondtls.WithPSKIdentityHint(identity),
		piondtls.WithCipherSuites(piondtls.TLS_PSK_WITH_AES_128_CCM_8))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err = c.HandshakeContext(ctx)
	return time.Since(start), err
}

func TestRefusedDTLSIdentity(t *testing.T) {
	b := newBoard(t, Config{DTLSAddr: "127.0.0.1:0"}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	_, addr := b.Endpoints()

	took, err := boardHandshake(t, addr, []byte("stranger"), b.Config().PSK)
	if err == nil {
		t.Fatal("the board accepted an identity it does not know")
	}
	t.Logf("refused after %v: %T %q", took, err, err)
	if err.Error() != refusedIdentityError {
		t.Errorf("error %q, want %q", err, refusedIdentityError)
	}
	var he *piondtls.HandshakeError
	if !errors.As(err, &he) {
		t.Errorf("%T: not a *dtls.HandshakeError", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || ne.Timeout() {
		t.Errorf("%v: want a net.Error that is not a timeout", err)
	}
	if a, ok := alertBytes(err); !ok || a[0] != 2 || a[1] != 115 {
		t.Errorf("alert %v (%v), want fatal (2) unknown_psk_identity (115)", a, ok)
	}

	// The identity the board knows is still welcome.
	if _, err := boardHandshake(t, addr, []byte(b.Config().PSKIdentity), b.Config().PSK); err != nil {
		t.Fatalf("the board's own identity after a refusal: %v", err)
	}
}

// TestCoapClientRefusedIdentity: libcoap's OpenSSL client reads the board's
// refusal as the alert it is.
func TestCoapClientRefusedIdentity(t *testing.T) {
	path := needTool(t, "coap-client-openssl")
	b := newBoard(t, Config{DTLSAddr: "127.0.0.1:0"}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	_, addr := b.Endpoints()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, path, "-B", "5", "-v", "4", "-k", string(b.Config().PSK), "-u", "stranger",
		"-m", "get", fmt.Sprintf("coaps://%s/boot", addr)).CombinedOutput()
	if !strings.Contains(string(out), "alert read:fatal:unknown PSK identity") {
		t.Fatalf("coap-client-openssl did not report the refused identity:\n%s", out)
	}
}
