package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/internal/peers"
)

// libcoap 4.3.5 (built with OSCORE by .ci/run) talks to the board's OSCORE
// endpoint with the client context `fudbench sim` writes: someone else's
// OSCORE, Echo handling and inner block-wise against ours.

// oscoreClientConf writes the client's side of the board's context in
// libcoap's oscore_conf format.
func oscoreClientConf(t *testing.T, b *Board) (conf, seq string) {
	t.Helper()
	p := *b.Config().OSCORE
	p.SenderID, p.RecipientID = b.Config().OSCORE.RecipientID, b.Config().OSCORE.SenderID
	dir := t.TempDir()
	conf, seq = filepath.Join(dir, "client.conf"), filepath.Join(dir, "client.seq")
	if err := os.WriteFile(conf, p.MarshalConf(), 0o600); err != nil {
		t.Fatal(err)
	}
	return conf, seq
}

// libcoapOSCORE runs libcoap 4.3.5's coap-client with an OSCORE context
// and returns what it wrote to its output file.
func libcoapOSCORE(t *testing.T, conf, seq string, args ...string) ([]byte, error) {
	t.Helper()
	lc := peers.NeedLibcoap(t)
	out := filepath.Join(t.TempDir(), "reply")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, lc.Client, append([]string{"-B", "5", "-E", conf + "," + seq, "-o", out}, args...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("coap-client %q: %w\n%s", args, err, stderr.Bytes())
	}
	b, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return b, nil
}

func TestLibcoapOSCOREReadsBoot(t *testing.T) {
	p := DevOSCORE()
	b := newBoard(t, Config{OSCORE: &p}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	addr := b.OSCOREAddr()
	if addr == "" {
		t.Fatal("no OSCORE endpoint")
	}
	conf, seq := oscoreClientConf(t, b)
	// Twice: the first after the board's boot goes through its Echo
	// challenge, the second (a new process, its sequence number from the
	// file) straight through.
	for i := range 2 {
		out, err := libcoapOSCORE(t, conf, seq, "-m", "get", "coap://"+addr+"/boot")
		if err != nil {
			t.Fatal(err)
		}
		boot, err := fwproto.DecodeBoot(out)
		if err != nil {
			t.Fatalf("run %d: reply % x: %v", i, out, err)
		}
		if boot.Mode != ModeApp || boot.Version != "1.0.0" {
			t.Fatalf("run %d: boot report %+v", i, boot)
		}
	}
	// Without OSCORE the endpoint answers nothing it should not.
	if out, err := coapClient(t, "coap-client-notls", "-B", "2", "-m", "get", "coap://"+addr+"/boot"); err == nil && len(out) > 0 {
		if _, derr := fwproto.DecodeBoot(out); derr == nil {
			t.Fatalf("the OSCORE endpoint answered a plain request: % x", out)
		}
	}
}

// TestLibcoapOSCOREBlock1Upload pushes an image with inner Block1 (RFC
// 8613 §4.1.3.4) to a naive-inplace board, which writes it and boots it.
func TestLibcoapOSCOREBlock1Upload(t *testing.T) {
	p := DevOSCORE()
	b := newBoard(t, Config{Strategy: NaiveInplace, OSCORE: &p}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	conf, seq := oscoreClientConf(t, b)
	img := buildImage(t, "2.0.0", 2, 20<<10+123, 2)
	file := filepath.Join(t.TempDir(), "fw.img")
	if err := os.WriteFile(file, img, 0o600); err != nil {
		t.Fatal(err)
	}
	boots := b.Boots()
	if _, err := libcoapOSCORE(t, conf, seq, "-m", "put", "-b", "256", "-f", file, "coap://"+b.OSCOREAddr()+"/fw"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
		t.Fatalf("after upload: mode %s, %v", m, err)
	}
	if got, want := runningDigest(t, b), sha256.Sum256(img); got != want {
		t.Fatalf("running digest %x, want the file's %x", got, want)
	}
}
