package fwimage_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fudbench/fudbench/fwimage"
)

func Example() {
	key := fwimage.DevKey() // public development key: simulator and tests only
	img, err := fwimage.Build(fwimage.Spec{Version: "1.4.0", Seq: 12, Size: 64 << 10, Seed: 1}, key)
	if err != nil {
		panic(err)
	}
	pub := key.Public().(ed25519.PublicKey)
	h, err := fwimage.Verify(img, pub)
	if err != nil {
		panic(err)
	}
	fmt.Printf("version %s seq %d payload %d bytes key %x\n", h.Version, h.Seq, h.PayloadSize, h.KeyID)

	img[fwimage.HeaderSize+100] ^= 0x01 // a torn write in the payload
	_, err = fwimage.Verify(img, pub)
	fmt.Println(errors.Is(err, fwimage.ErrDigest))
	// Output:
	// version 1.4.0 seq 12 payload 65280 bytes key b5002f9d848c59c2
	// true
}
