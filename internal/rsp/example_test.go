package rsp_test

import (
	"bufio"
	"bytes"
	"fmt"

	"github.com/fudbench/fudbench/internal/rsp"
)

// A vFlashWrite request framed and read back the way the stub reads it.
func ExampleReadPacket() {
	payload := rsp.AppendBinary([]byte("vFlashWrite:10000:"), []byte{'#', 0x01, '*'})
	frame := rsp.AppendPacket(nil, payload)
	fmt.Printf("%q\n", frame)

	pkt, err := rsp.ReadPacket(bufio.NewReader(bytes.NewReader(frame)), 0x4000)
	if err != nil {
		fmt.Println(err)
		return
	}
	data, _ := bytes.CutPrefix(pkt, []byte("vFlashWrite:10000:"))
	raw, err := rsp.DecodeBinary(data)
	fmt.Printf("% x %v\n", raw, err)
	// Output:
	// "$vFlashWrite:10000:}\x03\x01}\n#dc"
	// 23 01 2a <nil>
}

// The value GDB's compare-sections expects in a qCRC reply.
func ExampleCRC32() {
	fmt.Printf("C%08x\n", rsp.CRC32(0xffffffff, []byte("123456789")))
	// Output: C0376e6e7
}
