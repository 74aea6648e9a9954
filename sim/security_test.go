package sim

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwproto"
)

// dtlsClient dials the board's DTLS endpoint with a shared cache and
// records the handshakes.
func dtlsClient(t *testing.T, b *Board, cache *coap.DTLSCache, kinds *[]string) *coap.Client {
	t.Helper()
	_, addr := b.Endpoints()
	c, err := coap.Dial(context.Background(), addr, &coap.PSK{Identity: b.Config().PSKIdentity, Key: b.Config().PSK, Cache: cache},
		coap.Transmission{AckTimeout: 100 * time.Millisecond, MaxRetransmit: 2})
	if err != nil {
		t.Fatal(err)
	}
	c.OnHandshake = func(h coap.Handshake) { *kinds = append(*kinds, h.Kind) }
	return c
}

// With dtls_cache: state the recovery bootloader restores the record
// layer of the session that prepared the update: the bench goes on with
// no handshake, from a new socket, polling as the bench does while the
// board reboots (short attempts, a new client after each failed one).
func TestDTLSStateSurvivesReboot(t *testing.T) {
	img := buildImage(t, "2.0.0", 2, 8<<10, 2)
	b := newBoard(t, Config{DTLSAddr: "127.0.0.1:0", DTLSCache: DTLSCacheState, TimeScale: 0.25}, buildImage(t, "1.0.0", 1, 8<<10, 1))
	cache, err := coap.NewDTLSCache(coap.DTLSCacheState)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	ctx := context.Background()
	c := dtlsClient(t, b, cache, &kinds)
	digest := sha256.Sum256(img)
	body := fwproto.MustMarshal(fwproto.Prepare{Size: uint32(len(img)), Digest: digest[:], SZX: 6, Tag: []byte{1}})
	cache.ExpectState(time.Now().Add(2 * time.Second))
	resp, err := c.Do(ctx, coap.Request{Code: codes.POST, Path: fwproto.PathPrepare, Payload: body, ContentFormat: int(fwproto.MediaTypeCBOR)})
	if err != nil || resp.Code != codes.Changed {
		t.Fatalf("prepare: %v %v", resp, err)
	}
	var st fwproto.State
	for i := 0; ; i++ {
		actx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		resp, err = c.Get(actx, fwproto.PathState)
		cancel()
		if err == nil {
			if st, err = fwproto.DecodeState(resp.Payload); err != nil {
				t.Fatal(err)
			}
			break
		}
		if i == 50 {
			t.Fatalf("no state after the reboot: %v", err)
		}
		next := dtlsClient(t, b, cache, &kinds)
		c.Close()
		c = next
	}
	c.Close()
	if st.Mode != fwproto.ModeRecovery {
		t.Fatalf("state %+v", st)
	}
	if kinds[0] != coap.HandshakeFull {
		t.Fatalf("handshakes %v: want a full one first", kinds)
	}
	for _, k := range kinds[1:] {
		if k != coap.HandshakeNone {
			t.Fatalf("handshakes %v: after the reboot the session must go on with none", kinds)
		}
	}
}
