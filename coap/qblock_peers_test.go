package coap_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	peerbuild "github.com/fudbench/fudbench/internal/peers"
)

// TestQPutToLibcoap pushes an image with Q-Block1 bursts to libcoap
// 4.3.5's coap-server (-L 7: libcoap's block handling, one body, Q-Block)
// into a dynamic resource, reads it back with coap-client and compares.
func TestQPutToLibcoap(t *testing.T) {
	lc := peerbuild.NeedLibcoap(t)
	port := freePorts(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var log syncBuffer
	cmd := exec.Command(lc.Server, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "10", "-L", "7", "-v", "4")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("coap-server's log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for exec.Command(lc.Client, "-B", "1", "-m", "get", "coap://"+addr+"/").Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("coap-server not answering on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	img := make([]byte, 37*1024+123)
	for i := range img {
		img[i] = byte(i*7 + i>>9)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := coap.Dial(ctx, addr, nil, coap.Transmission{AckTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	continues := 0
	r, err := c.QPut(ctx, "fw", img, 0, 6, []byte{1, 2, 3, 4}, coap.QBlock{NonTimeout: 500 * time.Millisecond},
		coap.QEvents{Answer: func(r *coap.Response, missing []uint32) {
			if r.Code == codes.Continue {
				continues++
			}
		}})
	if err != nil {
		if r != nil {
			t.Logf("answer %v cf %d payload %x", r.Code, r.ContentFormat, r.Payload)
		}
		t.Fatalf("QPut: %v", err)
	}
	if r.Code != codes.Created && r.Code != codes.Changed {
		t.Fatalf("final answer %v", r.Code)
	}
	if continues < 3 {
		t.Errorf("%d 2.31 answers to 38 blocks in bursts of 10, want 3", continues)
	}
	out := filepath.Join(t.TempDir(), "out")
	if b, err := exec.CommandContext(ctx, lc.Client, "-B", "20", "-m", "get", "-o", out, "coap://"+addr+"/fw").CombinedOutput(); err != nil {
		t.Fatalf("coap-client get: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatalf("coap-server holds %d bytes, sent %d (equal: false)", len(got), len(img))
	}
}
