package oscore

import (
	"bytes"
	"testing"
)

// BenchmarkProtect measures one protect and one unprotect of a 1024-byte
// block-wise upload request: the bench's cost per firmware block on each
// side.
func BenchmarkProtect(b *testing.B) {
	cl, srv := pair(b, testParams)
	req := uploadBlock(5, bytes.Repeat([]byte{0xa5}, 1024))
	b.SetBytes(1024)
	b.ReportAllocs()
	for b.Loop() {
		out, _, err := cl.ProtectRequest(req)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := srv.UnprotectRequest(out); err != nil {
			b.Fatal(err)
		}
	}
}
