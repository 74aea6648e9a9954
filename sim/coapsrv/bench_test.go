package coapsrv

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// ackHandler acknowledges every block, like a device with instant flash.
// Handler calls are sequential, so one Response can be reused.
func ackHandler() Handler {
	var blk Block
	resp := &Response{ContentFormat: NoContentFormat, Block1: &blk}
	return func(_ context.Context, r *Request) *Response {
		b, _ := r.Block1()
		blk = b
		resp.Code = codes.Changed
		if b.More {
			resp.Code = codes.Continue
		}
		return resp
	}
}

func reportUpload(b *testing.B, blocks, size int) {
	b.SetBytes(int64(blocks * size))
	sec := b.Elapsed().Seconds()
	if sec > 0 {
		b.ReportMetric(float64(b.N*blocks)/sec, "blocks/s")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*blocks), "ns/block")
}

// BenchmarkUploadBlocks uploads an image one confirmable Block1 PUT at a
// time. The server lives across iterations, so later iterations run with a
// full reply cache: ns/block must not grow with the block count.
func BenchmarkUploadBlocks(b *testing.B) {
	cases := []struct {
		client string
		size   int // block size
		total  int // bytes
	}{
		{"gocoap", 64, 256 << 10},
		{"gocoap", 1024, 256 << 10},
		{"gocoap", 64, 1 << 20},
		{"gocoap-dtls", 64, 256 << 10},
		{"raw", 64, 64 << 10}, // 1k blocks
		{"raw", 64, 1 << 20},  // 16k blocks
		{"raw", 1024, 256 << 10},
	}
	for _, c := range cases {
		blocks := (c.total + c.size - 1) / c.size
		b.Run(fmt.Sprintf("%s/%dB/%dblocks", c.client, c.size, blocks), func(b *testing.B) {
			szx := uint8(0)
			for 16<<szx < c.size {
				szx++
			}
			switch c.client {
			case "gocoap":
				benchGoCoap(b, listenUDPOrSkip(b, "127.0.0.1:0", ackHandler(), Options{}), c.total, szx)
			case "gocoap-dtls":
				benchGoCoapDTLS(b, listenDTLS(b, "127.0.0.1:0", ackHandler()), c.total, szx)
			case "raw":
				benchRaw(b, listenUDPOrSkip(b, "127.0.0.1:0", ackHandler(), Options{}), c.total, szx)
			}
			reportUpload(b, blocks, c.size)
		})
	}
}

func benchGoCoap(b *testing.B, s *Server, total int, szx uint8) {
	cc, err := udp.Dial(s.Addr().String(), options.WithBlockwise(false, blockwise.SZX1024, time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	image := make([]byte, total)
	ctx := context.Background()
	for b.Loop() {
		if err := uploadBlocks(ctx, cc, "/fw", image, szx, []byte{1}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGoCoapDTLS(b *testing.B, s *Server, total int, szx uint8) {
	cc, err := coapdtls.Dial(s.Addr().String(),
		coapdtls.NewDTLSClientOptions(clientDTLSOptions(testKey, piondtls.TLS_PSK_WITH_AES_128_CCM_8)...),
		options.WithBlockwise(false, blockwise.SZX1024, time.Second))
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	image := make([]byte, total)
	ctx := context.Background()
	for b.Loop() {
		if err := uploadBlocks(ctx, cc, "/fw", image, szx, []byte{1}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRaw drives the server in lockstep from a plain socket with prebuilt
// datagrams, so that the figure is mostly the server's.
func benchRaw(b *testing.B, s *Server, total int, szx uint8) {
	size := 16 << szx
	blocks := (total + size - 1) / size
	dgrams := make([][]byte, blocks)
	payload := make([]byte, size)
	for i := range dgrams {
		dgrams[i] = encode(b, message.Confirmable, codes.PUT, 0, []byte{1, 2, 3, 4}, "/fw", payload,
			blockOpt(uint32(i), i < blocks-1, szx), message.Option{ID: message.RequestTag, Value: []byte{1}})
	}
	c, err := net.DialUDP("udp", nil, s.Addr().(*net.UDPAddr))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1500)
	mid := uint16(0)
	for b.Loop() {
		for _, d := range dgrams {
			mid++
			binary.BigEndian.PutUint16(d[2:], mid)
			if _, err := c.Write(d); err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			if n < 4 || binary.BigEndian.Uint16(buf[2:]) != mid {
				b.Fatalf("reply % x to MID %d", buf[:n], mid)
			}
		}
	}
}
