package gdbstub

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/fudbench/fudbench/internal/rsp"
)

// dispatch runs one command with s.mu held and returns its replies and
// whether the session ends after them.
func (ss *session) dispatch(pkt []byte) (reply, bool) {
	if len(pkt) == 0 {
		return replyEmpty, false
	}
	s := ss.s
	args := pkt[1:]
	switch pkt[0] {
	case '?':
		return replyStop, false
	case 'g':
		var b []byte
		for _, r := range s.regs {
			b = binary.LittleEndian.AppendUint32(b, r)
		}
		return reply{rsp.AppendHex(nil, b)}, false
	case 'G':
		b, err := rsp.DecodeHex(args)
		if err != nil || len(b)%4 != 0 || len(b) > 4*numRegs {
			return s.fail("E01", "G", err), false
		}
		for i := 0; i < len(b); i += 4 {
			s.regs[i/4] = binary.LittleEndian.Uint32(b[i:])
		}
		return replyOK, false
	case 'p':
		n, err := parseHex32(args)
		if err != nil {
			return s.fail("E01", "p", err), false
		}
		if n >= numRegs {
			return s.fail("E02", "p", fmt.Errorf("register %d out of range", n)), false
		}
		return reply{rsp.AppendHex(nil, binary.LittleEndian.AppendUint32(nil, s.regs[n]))}, false
	case 'P':
		num, val, ok := bytes.Cut(args, []byte("="))
		n, err := parseHex32(num)
		if !ok || err != nil {
			return s.fail("E01", "P", err), false
		}
		b, err := rsp.DecodeHex(val)
		if err != nil || len(b) != 4 {
			return s.fail("E01", "P", err), false
		}
		if n >= numRegs {
			return s.fail("E02", "P", fmt.Errorf("register %d out of range", n)), false
		}
		s.regs[n] = binary.LittleEndian.Uint32(b)
		return replyOK, false
	case 'm':
		addr, length, err := parseAddrLen(args)
		if err != nil {
			return s.fail("E01", "m", err), false
		}
		length = min(length, maxRead)
		buf := make([]byte, length)
		if err := s.t.ReadMemory(addr, buf); err != nil {
			return s.fail("E03", "m", err), false
		}
		return reply{rsp.AppendHex(nil, buf)}, false
	case 'M':
		head, hexData, ok := bytes.Cut(args, []byte(":"))
		addr, length, err := parseAddrLen(head)
		if !ok || err != nil {
			return s.fail("E01", "M", err), false
		}
		data, err := rsp.DecodeHex(hexData)
		if err != nil || uint32(len(data)) != length {
			return s.fail("E01", "M", fmt.Errorf("length %d, data %d bytes: %v", length, len(data), err)), false
		}
		return s.write(addr, data), false
	case 'X':
		head, bin, ok := bytes.Cut(args, []byte(":"))
		addr, length, err := parseAddrLen(head)
		if !ok || err != nil {
			return s.fail("E01", "X", err), false
		}
		data, err := rsp.DecodeBinary(bin)
		if err != nil || uint32(len(data)) != length {
			return s.fail("E01", "X", fmt.Errorf("length %d, data %d bytes: %v", length, len(data), err)), false
		}
		// GDB probes X support with an empty write.
		if length == 0 {
			return replyOK, false
		}
		return s.write(addr, data), false
	case 'c':
		if len(args) > 0 {
			addr, err := parseHex32(args)
			if err != nil {
				return s.fail("E01", "c", err), false
			}
			s.regs[regPC] = addr
		}
		s.resume()
		ss.running = true
		return nil, false
	case 's':
		return replyStop, false
	case 'H', 'T':
		return replyOK, false
	case 'D':
		s.resume()
		return replyOK, true
	case 'k':
		return nil, true
	case 'q':
		return ss.query(pkt), false
	case 'Q':
		if string(pkt) == "QStartNoAckMode" {
			// The OK itself is still acknowledged; only then is
			// acknowledgement off.
			return replyOK, false
		}
		return replyEmpty, false
	case 'v':
		return ss.vPacket(pkt), false
	}
	return replyEmpty, false
}

// fail logs why a request failed and returns the error reply.
func (s *Server) fail(code, cmd string, err error) reply {
	s.log.Debug("request failed", "cmd", cmd, "reply", code, "err", err)
	return one(code)
}

func (s *Server) write(addr uint32, data []byte) reply {
	if err := s.t.WriteMemory(addr, data); err != nil {
		return s.fail("E03", "write", err)
	}
	return replyOK
}

func (s *Server) resume() {
	if r, ok := s.t.(Resumer); ok {
		if err := r.Resume(); err != nil {
			s.log.Info("resume failed", "err", err)
		}
	}
}

func (ss *session) query(pkt []byte) reply {
	s := ss.s
	str := string(pkt)
	switch {
	case str == "qSupported" || strings.HasPrefix(str, "qSupported:"):
		return one(fmt.Sprintf("PacketSize=%x;qXfer:memory-map:read+;qXfer:features:read+;QStartNoAckMode+", packetSize))
	case strings.HasPrefix(str, "qXfer:"):
		return s.xfer(str)
	case strings.HasPrefix(str, "qCRC:"):
		addr, length, err := parseAddrLen(pkt[len("qCRC:"):])
		if err != nil {
			return s.fail("E01", "qCRC", err)
		}
		crc, err := s.crc(addr, length)
		if err != nil {
			return s.fail("E03", "qCRC", err)
		}
		return one(fmt.Sprintf("C%08x", crc))
	case strings.HasPrefix(str, "qRcmd,"):
		cmd, err := rsp.DecodeHex(pkt[len("qRcmd,"):])
		if err != nil {
			return s.fail("E01", "qRcmd", err)
		}
		return s.monitor(string(cmd))
	case str == "qAttached" || strings.HasPrefix(str, "qAttached:"):
		return one("1")
	case str == "qC":
		return one("QC1")
	case str == "qfThreadInfo":
		return one("m1")
	case str == "qsThreadInfo":
		return one("l")
	}
	return replyEmpty
}

// xfer serves qXfer:OBJECT:read:ANNEX:OFFSET,LENGTH.
func (s *Server) xfer(str string) reply {
	// At most 6 parts: a packet of colons must not make one string each.
	parts := strings.SplitN(str, ":", 6)
	if len(parts) != 5 || parts[2] != "read" {
		return replyEmpty
	}
	var doc string
	switch {
	case parts[1] == "memory-map" && parts[3] == "":
		doc = memoryMapXML(s.t.MemoryMap())
	case parts[1] == "features" && parts[3] == "target.xml":
		doc = targetXML
	case parts[1] == "memory-map" || parts[1] == "features":
		return s.fail("E00", "qXfer", fmt.Errorf("unknown annex %q", parts[3]))
	default:
		return replyEmpty
	}
	off, length, err := parseAddrLen([]byte(parts[4]))
	if err != nil {
		return s.fail("E00", "qXfer", err)
	}
	if int64(off) >= int64(len(doc)) {
		return one("l")
	}
	end := min(int64(off)+int64(min(length, maxXfer)), int64(len(doc)))
	kind := byte('m')
	if end == int64(len(doc)) {
		kind = 'l'
	}
	return reply{rsp.AppendBinary([]byte{kind}, []byte(doc[off:end]))}
}

func (s *Server) crc(addr, length uint32) (uint32, error) {
	crc := uint32(0xffffffff)
	buf := make([]byte, 4096)
	for length > 0 {
		n := min(length, uint32(len(buf)))
		if err := s.t.ReadMemory(addr, buf[:n]); err != nil {
			return 0, err
		}
		crc = rsp.CRC32(crc, buf[:n])
		addr += n
		length -= n
	}
	return crc, nil
}

func (ss *session) vPacket(pkt []byte) reply {
	s := ss.s
	switch {
	case bytes.HasPrefix(pkt, []byte("vFlashErase:")):
		addr, length, err := parseAddrLen(pkt[len("vFlashErase:"):])
		if err != nil {
			return s.fail("E01", "vFlashErase", err)
		}
		if !s.inFlash(addr, length) {
			return s.fail("E02", "vFlashErase", fmt.Errorf("0x%x+0x%x not in flash", addr, length))
		}
		if length == 0 {
			return replyOK
		}
		if err := s.t.FlashErase(addr, length); err != nil {
			return s.fail("E03", "vFlashErase", err)
		}
		return replyOK
	case bytes.HasPrefix(pkt, []byte("vFlashWrite:")):
		a, bin, ok := bytes.Cut(pkt[len("vFlashWrite:"):], []byte(":"))
		addr, err := parseHex32(a)
		if !ok || err != nil {
			return s.fail("E01", "vFlashWrite", err)
		}
		data, err := rsp.DecodeBinary(bin)
		if err != nil {
			return s.fail("E01", "vFlashWrite", err)
		}
		if uint64(addr)+uint64(len(data)) > 1<<32 || !s.inFlash(addr, uint32(len(data))) {
			return s.fail("E.memtype", "vFlashWrite", fmt.Errorf("0x%x+0x%x not in flash", addr, len(data)))
		}
		if len(data) == 0 {
			return replyOK
		}
		if err := s.t.FlashWrite(addr, data); err != nil {
			return s.fail("E03", "vFlashWrite", err)
		}
		return replyOK
	case string(pkt) == "vFlashDone":
		if err := s.t.FlashDone(); err != nil {
			return s.fail("E03", "vFlashDone", err)
		}
		return replyOK
	}
	return replyEmpty
}

// inFlash reports whether [addr, addr+length) lies wholly in flash regions
// (adjacent regions may share it); an empty range needs addr in flash.
func (s *Server) inFlash(addr, length uint32) bool {
	regions := s.t.MemoryMap()
	cur, end := uint64(addr), uint64(addr)+uint64(length)
	for {
		found := false
		for _, r := range regions {
			rs, re := uint64(r.Start), uint64(r.Start)+uint64(r.Length)
			if r.Kind == KindFlash && cur >= rs && cur < re {
				cur, found = re, true
				break
			}
		}
		if !found {
			return false
		}
		if cur >= end {
			return true
		}
	}
}
