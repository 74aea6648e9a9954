package coapsrv

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Interop with libcoap's coap-client (Debian libcoap3-bin), a CoAP stack
// someone else wrote.

func runCoapClient(t *testing.T, prog string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// -B bounds libcoap's own wait for a reply.
	cmd := exec.CommandContext(ctx, needProgram(t, prog), append([]string{"-B", "5"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\nstderr: %s", prog, args, err, stderr.Bytes())
	}
	return out
}

func TestLibcoapGet(t *testing.T) {
	d := &device{}
	s := listenUDPOrSkip(t, "127.0.0.1:0", d.handle, Options{})
	out := runCoapClient(t, "coap-client-notls", "-m", "get", fmt.Sprintf("coap://%s/boot", s.Addr()))
	if !bytes.Contains(out, bootPayload) {
		t.Fatalf("coap-client printed % x, want the handler's payload % x", out, bootPayload)
	}
}

func TestLibcoapBlock1Put(t *testing.T) {
	d := &device{}
	s := listenUDPOrSkip(t, "[::1]:0", d.handle, Options{})
	image := make([]byte, 64*40+17)
	_, _ = rand.Read(image)
	file := filepath.Join(t.TempDir(), "image.bin")
	if err := os.WriteFile(file, image, 0o600); err != nil {
		t.Fatal(err)
	}
	runCoapClient(t, "coap-client-notls", "-m", "put", "-b", "64", "-f", file, fmt.Sprintf("coap://%s/fw", s.Addr()))
	_, blocks, body, done := d.snapshot()
	if !done || !bytes.Equal(body, image) {
		t.Fatalf("device got %d bytes (done %v), want the %d-byte file", len(body), done, len(image))
	}
	if len(blocks) != 41 {
		t.Fatalf("device saw %d blocks, want 41", len(blocks))
	}
	for i, n := range blocks {
		if n != uint32(i) {
			t.Fatalf("blocks not in order: %v", blocks)
		}
	}
}

func TestLibcoapDTLSPSK(t *testing.T) {
	for _, prog := range []string{"coap-client-openssl", "coap-client-gnutls"} {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			t.Run(prog+"/"+addr, func(t *testing.T) {
				needProgram(t, prog)
				d := &device{}
				s := listenDTLS(t, addr, d.handle)
				out := runCoapClient(t, prog, "-k", string(testKey), "-u", string(testIdentity),
					"-m", "get", fmt.Sprintf("coaps://%s/boot", s.Addr()))
				if !bytes.Contains(out, bootPayload) {
					t.Fatalf("%s printed % x, want % x", prog, out, bootPayload)
				}
				d.mu.Lock()
				defer d.mu.Unlock()
				if len(d.identities) != 1 || d.identities[0] != string(testIdentity) {
					t.Errorf("identities seen %q", d.identities)
				}
			})
		}
	}
}
