package gdbrsp_test

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/fudbench/fudbench/internal/rsp"
)

// fakeServer is a scripted GDB server for the failure modes a real server
// shows rarely: NAKs, corrupt replies, error replies, a server that dies
// mid-transfer, no memory map, no X, a wrong CRC. Its framing is the
// client's own (internal/rsp); the framing is checked against servers
// written by others in qemu_test.go and, through the sim's stub, against
// gdb-multiarch in sim/gdbstub.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	addr string

	// Knobs, set before the first connection.
	supported string // qSupported reply; "" is a default with PacketSize=400
	memoryMap string // served via qXfer when non-empty
	noX       bool   // X gets an empty reply
	noCRC     bool   // qCRC gets an empty reply
	badCRC    bool   // qCRC answers a wrong CRC
	erased    byte   // what unwritten memory reads as and vFlashErase writes; 0xff from startFake
	// hook, when set, sees each packet first; handled=true means it
	// answered (replies) or, with closeConn, hung up.
	hook func(pkt string) (replies []string, handled, closeConn bool)
	// nakPackets: the first N packets received are answered with '-'.
	nakPackets int
	// corruptReplies: the first N replies go out with a bad checksum.
	corruptReplies int
	silent         bool // never answer anything

	hookMu sync.Mutex

	mu      sync.Mutex
	mem     map[uint32]byte
	packets []string // every packet accepted, in order
	naks    int      // '-' received from the client
	conns   int
	live    map[net.Conn]bool
}

func startFake(t *testing.T, setup func(f *fakeServer)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, ln: ln, addr: ln.Addr().String(), mem: map[uint32]byte{}, live: map[net.Conn]bool{}, erased: 0xff}
	if setup != nil {
		setup(f)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.live[c] = true
			f.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					c.Close()
					f.mu.Lock()
					delete(f.live, c)
					f.mu.Unlock()
				}()
				stop := make(chan struct{})
				defer close(stop)
				go func() {
					select {
					case <-done:
					case <-stop:
					}
					c.Close()
				}()
				f.serve(c)
			}()
		}
	}()
	return f
}

func (f *fakeServer) Packets() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.packets...)
}

func (f *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	noAck := false
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		switch b {
		case '-':
			f.mu.Lock()
			f.naks++
			f.mu.Unlock()
			continue
		case '$':
		default:
			continue
		}
		r.UnreadByte()
		raw, err := rsp.ReadPacket(r, 64<<10)
		if err != nil {
			c.Write([]byte("-"))
			continue
		}
		if f.silent {
			continue
		}
		f.mu.Lock()
		nak := f.nakPackets > 0
		if nak {
			f.nakPackets--
		}
		f.mu.Unlock()
		if nak {
			c.Write([]byte("-"))
			continue
		}
		if !noAck {
			c.Write([]byte("+"))
		}
		pkt := string(raw)
		f.mu.Lock()
		f.packets = append(f.packets, pkt)
		f.mu.Unlock()
		var replies []string
		handled, closeConn := false, false
		if f.hook != nil {
			// Hooks keep counters; connections may overlap.
			f.hookMu.Lock()
			replies, handled, closeConn = f.hook(pkt)
			f.hookMu.Unlock()
		}
		if closeConn {
			return
		}
		if !handled {
			replies = f.handle(pkt)
		}
		for _, rep := range replies {
			if !f.reply(c, r, rep, noAck) {
				return
			}
		}
		if pkt == "QStartNoAckMode" {
			noAck = true
		}
	}
}

// reply sends one reply; in ack mode it waits for the client's '+' and
// resends on '-'.
func (f *fakeServer) reply(c net.Conn, r *bufio.Reader, rep string, noAck bool) bool {
	frame := rsp.AppendPacket(nil, []byte(rep))
	for range 20 {
		out := frame
		f.mu.Lock()
		if f.corruptReplies > 0 {
			f.corruptReplies--
			out = append([]byte(nil), frame...)
			out[len(out)-1] ^= 1 // still a hex digit, wrong sum
			if out[len(out)-1] > 'f' || (out[len(out)-1] > '9' && out[len(out)-1] < 'a') {
				out[len(out)-1] = '0'
			}
		}
		f.mu.Unlock()
		if _, err := c.Write(out); err != nil {
			return false
		}
		if noAck {
			return true
		}
		for {
			b, err := r.ReadByte()
			if err != nil {
				return false
			}
			if b == '+' {
				return true
			}
			if b == '-' {
				f.mu.Lock()
				f.naks++
				f.mu.Unlock()
				break
			}
		}
	}
	return false
}

func parseAddrLen(s string) (uint32, int) {
	a, l, _ := strings.Cut(s, ",")
	addr, _ := strconv.ParseUint(a, 16, 32)
	n, _ := strconv.ParseUint(l, 16, 32)
	return uint32(addr), int(n)
}

func (f *fakeServer) handle(pkt string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case pkt == "qSupported":
		if f.supported != "" {
			return []string{f.supported}
		}
		s := "PacketSize=190"
		if f.memoryMap != "" {
			s += ";qXfer:memory-map:read+"
		}
		return []string{s}
	case pkt == "QStartNoAckMode":
		return []string{"OK"}
	case strings.HasPrefix(pkt, "qXfer:memory-map:read::"):
		off, n := parseAddrLen(pkt[len("qXfer:memory-map:read::"):])
		doc := f.memoryMap
		if int(off) >= len(doc) {
			return []string{"l"}
		}
		end := min(int(off)+n, len(doc))
		kind := "m"
		if end == len(doc) {
			kind = "l"
		}
		return []string{kind + string(rsp.AppendBinary(nil, []byte(doc[off:end])))}
	case strings.HasPrefix(pkt, "m"):
		addr, n := parseAddrLen(pkt[1:])
		b := make([]byte, n)
		for i := range b {
			b[i] = f.at(addr + uint32(i))
		}
		return []string{hex.EncodeToString(b)}
	case strings.HasPrefix(pkt, "X"):
		if f.noX {
			return []string{""}
		}
		head, bin, _ := strings.Cut(pkt[1:], ":")
		addr, n := parseAddrLen(head)
		data, err := rsp.DecodeBinary([]byte(bin))
		if err != nil || len(data) != n {
			return []string{"E01"}
		}
		f.store(addr, data)
		return []string{"OK"}
	case strings.HasPrefix(pkt, "M"):
		head, hx, _ := strings.Cut(pkt[1:], ":")
		addr, n := parseAddrLen(head)
		data, err := hex.DecodeString(hx)
		if err != nil || len(data) != n {
			return []string{"E01"}
		}
		f.store(addr, data)
		return []string{"OK"}
	case strings.HasPrefix(pkt, "vFlashErase:"):
		addr, n := parseAddrLen(pkt[len("vFlashErase:"):])
		for i := range n {
			f.mem[addr+uint32(i)] = f.erased
		}
		return []string{"OK"}
	case strings.HasPrefix(pkt, "vFlashWrite:"):
		a, bin, _ := strings.Cut(pkt[len("vFlashWrite:"):], ":")
		addr, _ := strconv.ParseUint(a, 16, 32)
		data, err := rsp.DecodeBinary([]byte(bin))
		if err != nil {
			return []string{"E01"}
		}
		f.store(uint32(addr), data)
		return []string{"OK"}
	case pkt == "vFlashDone":
		return []string{"OK"}
	case strings.HasPrefix(pkt, "qCRC:"):
		if f.noCRC {
			return []string{""}
		}
		addr, n := parseAddrLen(pkt[len("qCRC:"):])
		b := make([]byte, n)
		for i := range b {
			b[i] = f.at(addr + uint32(i))
		}
		crc := rsp.CRC32(0xffffffff, b)
		if f.badCRC {
			crc ^= 0x100
		}
		return []string{fmt.Sprintf("C%08x", crc)}
	case strings.HasPrefix(pkt, "qRcmd,"):
		cmd, _ := hex.DecodeString(pkt[len("qRcmd,"):])
		if string(cmd) == "reset" {
			return []string{"O" + hex.EncodeToString([]byte("resetting\n")), "O" + hex.EncodeToString([]byte("done\n")), "OK"}
		}
		return []string{"O" + hex.EncodeToString([]byte("what?\n")), "E04"}
	case pkt == "D":
		return []string{"OK"}
	}
	return []string{""}
}

// at reads one byte of memory; f.mu is held.
func (f *fakeServer) at(addr uint32) byte {
	if b, ok := f.mem[addr]; ok {
		return b
	}
	return f.erased
}

func (f *fakeServer) store(addr uint32, data []byte) {
	for i, b := range data {
		f.mem[addr+uint32(i)] = b
	}
}

func (f *fakeServer) memory(addr uint32, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := make([]byte, n)
	for i := range b {
		b[i] = f.at(addr + uint32(i))
	}
	return b
}

// testData is n bytes full of the characters RSP must escape.
func testData(n int) []byte {
	b := make([]byte, n)
	special := []byte("#$}*")
	for i := range b {
		if i%3 == 0 {
			b[i] = special[i%4]
		} else {
			b[i] = byte(i * 13)
		}
	}
	return b
}

const twoRegionMap = `<?xml version="1.0"?>
<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">
<memory-map>
  <memory type="flash" start="0x1000" length="0x1000">
    <property name="blocksize">0x400</property>
  </memory>
  <memory type="flash" start="0x2000" length="0x4000">
    <property name="blocksize">0x1000</property>
  </memory>
  <memory type="ram" start="0x20000000" length="0x10000"/>
</memory-map>
`

// kick hangs up on every connected client.
func (f *fakeServer) kick() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.live {
		c.Close()
	}
}
