package fwclient_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/sim"
)

// TestAgainstSimulatedBoard speaks the protocol to a simulated board on a
// real loopback socket: the app's version, a refused prepare with the
// device's diagnostic, the recovery state, and a block ahead of the
// device's next turned into a resynchronisation.
func TestAgainstSimulatedBoard(t *testing.T) {
	s, err := sim.Start([]sim.Config{{Name: "fwc", UDPAddrs: []string{"127.0.0.1:0"}, DTLSAddr: "-", GDBAddr: "-"}}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	udp, _ := s.Boards[0].Endpoints()
	c, err := fwclient.Dial(ctx, udp[0], nil, coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	boot, err := c.Boot(ctx)
	if err != nil || boot.Mode != fwproto.ModeApp {
		t.Fatalf("boot %+v %v", boot, err)
	}
	v, err := c.Version(ctx)
	if err != nil || v.Version != sim.BaselineSpec.Version {
		t.Fatalf("version %+v %v", v, err)
	}
	// The app has no recovery state: a status, not a transport error.
	var se *coap.StatusError
	if _, err := c.State(ctx); !errors.As(err, &se) || se.Code != codes.NotFound {
		t.Errorf("state in app mode: %v", err)
	}

	img, err := fwimage.Build(fwimage.Spec{Version: "2.0.0", Seq: 2, Size: 4 << 10, Seed: 2}, fwimage.DevKey())
	if err != nil {
		t.Fatal(err)
	}
	d := fwimage.Digest(img)
	// Too large for the slot: the device says so, and the error carries it.
	err = c.Prepare(ctx, fwproto.Prepare{Size: 64 << 20, Digest: d[:], SZX: 6, Tag: []byte("t")})
	var de *fwclient.DeviceError
	if !errors.As(err, &de) || de.Code != codes.RequestEntityTooLarge || !strings.Contains(err.Error(), "exceeds the") {
		t.Errorf("oversized prepare: %v", err)
	}

	if err := c.Prepare(ctx, fwproto.Prepare{Size: uint32(len(img)), Digest: d[:], SZX: 6, Tag: []byte("t")}); err != nil {
		t.Fatal(err)
	}
	var st fwproto.State
	for {
		if st, err = c.State(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no recovery: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Mode != fwproto.ModeRecovery || st.Next != 0 || st.Size != uint32(len(img)) {
		t.Errorf("recovery state %+v", st)
	}
	// Block 2 before block 0: the device answers 4.08 with its state.
	_, err = c.SendBlock(ctx, fwproto.PathFW, img, 2, 6, []byte("t"))
	var rs *fwclient.ResyncError
	if !errors.As(err, &rs) || !errors.Is(err, fwclient.ErrResync) || rs.State.Next != 0 {
		t.Errorf("block ahead: %v", err)
	}
	for n := uint32(0); n < 4; n++ {
		if _, err := c.SendBlock(ctx, fwproto.PathFW, img, n, 6, []byte("t")); err != nil {
			t.Fatalf("block %d: %v", n, err)
		}
	}
}
