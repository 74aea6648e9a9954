package coap_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/sim/coapsrv"
)

// BenchmarkSendBlock measures one 1024-byte Block1 exchange with an
// in-process coapsrv endpoint that takes every block (2.31 Continue), over
// UDP and DTLS. Allocations per op are the client's and the server's.
func BenchmarkSendBlock(b *testing.B) {
	key := []byte("bench-key")
	cont := func(_ context.Context, r *coapsrv.Request) *coapsrv.Response {
		blk, ok := r.Block1()
		if !ok {
			return &coapsrv.Response{Code: codes.BadRequest, ContentFormat: coapsrv.NoContentFormat}
		}
		return &coapsrv.Response{Code: codes.Continue, Block1: &blk}
	}
	for _, dtls := range []bool{false, true} {
		name := "udp"
		if dtls {
			name = "dtls"
		}
		b.Run(name, func(b *testing.B) {
			var srv *coapsrv.Server
			var err error
			var psk *coap.PSK
			if dtls {
				psk = &coap.PSK{Identity: "bench", Key: key}
				srv, err = coapsrv.ListenDTLS("127.0.0.1:0", func([]byte) ([]byte, error) { return key, nil }, cont, coapsrv.Options{MaxCached: 64})
			} else {
				srv, err = coapsrv.ListenUDP("127.0.0.1:0", cont, coapsrv.Options{MaxCached: 64})
			}
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			c := dial(b, srv.Addr().String(), psk, fastTx)
			img := randomBytes(1<<20, 3)
			n := uint32(len(img) / 1024)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if _, err := c.Get(ctx, "/"); err != nil { // handshake
				b.Fatal(err)
			}
			b.SetBytes(1024)
			b.ReportAllocs()
			num := uint32(0)
			for b.Loop() {
				if _, err := c.SendBlock(ctx, "/upload", img, num%(n-1), 6, nil); err != nil {
					var se *coap.StatusError
					if !errors.As(err, &se) {
						b.Fatal(err)
					}
					b.Fatal(fmt.Errorf("block %d: %w", num, err))
				}
				num++
			}
		})
	}
}
