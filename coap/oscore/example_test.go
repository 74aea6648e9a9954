package oscore_test

import (
	"bytes"
	"fmt"
	"log"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/fudbench/fudbench/coap/oscore"
)

// newPair returns the bench's and the device's contexts for one shared
// secret: each one's Sender ID is the other's Recipient ID.
func newPair() (bench, device *oscore.Context) {
	secret := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	bench, err := oscore.New(oscore.Params{MasterSecret: secret, SenderID: []byte{}, RecipientID: []byte{1}})
	if err != nil {
		log.Fatal(err)
	}
	device, err = oscore.New(oscore.Params{MasterSecret: secret, SenderID: []byte{1}, RecipientID: []byte{}})
	if err != nil {
		log.Fatal(err)
	}
	return bench, device
}

// A client protects a request, the server unprotects it and protects its
// response, and the client unprotects that.
func Example() {
	bench, device := newPair()
	device.StartReplayWindow() // a context just provisioned: nothing seen yet

	req := oscore.Message{Code: codes.GET, Options: message.Options{
		{ID: message.URIPath, Value: []byte("fw")},
		{ID: message.URIPath, Value: []byte("state")},
	}}
	wire, x, err := bench.ProtectRequest(req)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("on the wire: %v with %d option, %d bytes of ciphertext\n", wire.Code, len(wire.Options), len(wire.Payload))

	in, sx, err := device.UnprotectRequest(wire)
	if err != nil {
		code, diag := oscore.ErrorCode(err)
		log.Fatalf("answer %v %q: %v", code, diag, err)
	}
	path, _ := in.Options.Path()
	fmt.Printf("the device sees: %v %s, fresh: %v\n", in.Code, path, sx.Fresh)

	resp, use, err := device.ProtectResponse(oscore.Message{Code: codes.Content, Payload: []byte("idle")}, sx, false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("response: %v, request nonce reused: %v\n", resp.Code, use.Nonce == x.Request.Nonce)

	out, _, err := bench.UnprotectResponse(resp, x)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("the bench sees: %v %s\n", out.Code, out.Payload)
	// Output:
	// on the wire: POST with 1 option, 18 bytes of ciphertext
	// the device sees: GET /fw/state, fresh: true
	// response: Changed, request nonce reused: true
	// the bench sees: Content idle
}

// After a reboot that lost its replay window, the device verifies requests
// but cannot tell a replay: it asks for an Echo value back (RFC 8613
// Appendix B.1.2, RFC 9175).
func Example_echoRecovery() {
	bench, device := newPair()
	device.ForgetReplayWindow() // as after New: not initialised
	get := oscore.Message{Code: codes.GET, Options: message.Options{{ID: message.URIPath, Value: []byte("fw")}}}

	wire, x, _ := bench.ProtectRequest(get)
	_, sx, err := device.UnprotectRequest(wire)
	if err != nil {
		log.Fatal(err)
	}
	echo := oscore.NewEcho()
	if !sx.Fresh {
		resp, _, _ := device.ProtectResponse(oscore.Message{Code: codes.Unauthorized,
			Options: message.Options{{ID: oscore.EchoID, Value: echo}}}, sx, false)
		got, use, _ := bench.UnprotectResponse(resp, x)
		value, _ := oscore.Echo(got.Options)
		fmt.Printf("%v with Echo, answered under the device's own partial IV %x\n", got.Code, use.PIV)
		get.Options = append(get.Options, message.Option{ID: oscore.EchoID, Value: value})
	}

	wire, _, _ = bench.ProtectRequest(get)
	in, sx, err := device.UnprotectRequest(wire)
	if err != nil {
		log.Fatal(err)
	}
	if v, ok := oscore.Echo(in.Options); ok && bytes.Equal(v, echo) {
		if err := device.InitReplayWindow(sx); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("fresh after the Echo round:", sx.Fresh)

	_, _, err = device.UnprotectRequest(wire)
	fmt.Println("the same request again:", err)
	// Output:
	// Unauthorized with Echo, answered under the device's own partial IV 00
	// fresh after the Echo round: true
	// the same request again: oscore: replay detected: partial IV 1
}
