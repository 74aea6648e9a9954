package gdbstub_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/fudbench/fudbench/internal/rsp"
	"github.com/fudbench/fudbench/sim/gdbstub"
)

// board is about the smallest Target: 4 KiB of flash in one erase block.
type board struct{ flash [4096]byte }

var errRange = errors.New("outside flash")

func (b *board) MemoryMap() []gdbstub.Region {
	return []gdbstub.Region{{Kind: gdbstub.KindFlash, Start: 0, Length: 4096, BlockSize: 4096}}
}

func (b *board) ReadMemory(addr uint32, p []byte) error {
	if uint64(addr)+uint64(len(p)) > uint64(len(b.flash)) {
		return errRange
	}
	copy(p, b.flash[addr:])
	return nil
}

func (b *board) WriteMemory(uint32, []byte) error { return errRange }

func (b *board) FlashErase(addr, length uint32) error {
	for i := range length {
		b.flash[addr+i] = 0xff
	}
	return nil
}

func (b *board) FlashWrite(addr uint32, p []byte) error {
	copy(b.flash[addr:], p)
	return nil
}

func (b *board) FlashDone() error { return nil }
func (b *board) Reset(bool) error { return nil }

// A client asks the stub for the qCRC of the first nine bytes of flash, as
// GDB's compare-sections and the bench's verify do.
func Example() {
	b := &board{}
	copy(b.flash[:], "123456789")
	srv := gdbstub.New(b, gdbstub.Options{Name: "example"})
	client, stub := net.Pipe()
	defer client.Close()
	go srv.ServeConn(context.Background(), stub)

	link := rsp.Link{R: bufio.NewReader(client), W: client, Tries: 1}
	if err := link.Send([]byte("qCRC:0,9")); err != nil {
		fmt.Println(err)
		return
	}
	reply, err := rsp.ReadPacket(link.R, gdbstub.MaxPacket)
	if err == nil {
		err = link.Ack(true)
	}
	fmt.Printf("%s %v\n", reply, err)
	// Output: C0376e6e7 <nil>
}
