package coapsrv_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/fudbench/fudbench/sim/coapsrv"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
)

func ExampleListenUDP() {
	h := func(_ context.Context, r *coapsrv.Request) *coapsrv.Response {
		if r.Code != codes.GET || r.Path != "/boot" {
			return &coapsrv.Response{Code: codes.NotFound, ContentFormat: coapsrv.NoContentFormat}
		}
		return &coapsrv.Response{Code: codes.Content, ContentFormat: int(message.TextPlain), Payload: []byte("booted")}
	}
	s, err := coapsrv.ListenUDP("127.0.0.1:0", h, coapsrv.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	cc, err := udp.Dial(s.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Get(ctx, "/boot")
	if err != nil {
		log.Fatal(err)
	}
	defer cc.ReleaseMessage(resp)
	body, _ := io.ReadAll(resp.Body())
	fmt.Println(resp.Code(), string(body))
	// Output: Content booted
}
