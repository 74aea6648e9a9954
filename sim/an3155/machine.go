package an3155

import (
	"fmt"
	"slices"
)

// Protocol bytes (AN3155).
const (
	Sync = 0x7F // autobaud byte, answered with ACK once
	ACK  = 0x79
	NACK = 0x1F
)

// Command codes the emulated bootloader knows.
const (
	CmdGet               = 0x00
	CmdGetVersion        = 0x01 // Get Version & Read Protection Status
	CmdGetID             = 0x02
	CmdRead              = 0x11
	CmdGo                = 0x21
	CmdWrite             = 0x31
	CmdErase             = 0x43
	CmdExtendedErase     = 0x44
	CmdWriteUnprotect    = 0x73
	CmdReadoutUnprotect  = 0x92
	cmdSyncRecord        = Sync // Command.Code of a recorded autobaud sync
	maxData              = 256  // Read and Write move at most this many bytes
	extendedEraseSpecial = 0xFFF0
)

// The emulated part: an STM32F10x medium-density device.
const (
	PID            = 0x0410
	Version        = 0x22 // bootloader version 2.2
	FlashBase      = 0x08000000
	FlashSize      = 128 << 10
	PageSize       = 1024
	RAMBase        = 0x20000000
	RAMSize        = 20 << 10
	SystemBase     = 0x1FFFF000 // system memory (the bootloader itself)
	SystemSize     = 0x800
	OptionBase     = 0x1FFFF800 // option bytes
	OptionSize     = 16
	flashSizeReg   = 0x1FFFF7E0 // F_SIZE: flash size in KiB, little endian
	uniqueIDReg    = 0x1FFFF7E8 // 96-bit unique ID
	extendedGlobal = 0xFFFF
	extendedBank1  = 0xFFFE
	extendedBank2  = 0xFFFD
)

// Command is one command as the device saw it.
type Command struct {
	Code byte   // command code; Sync (0x7F) for an autobaud sync
	Addr uint32 // Read, Write, Go: the address sent
	Len  int    // Read, Write: bytes asked for or sent
	// Pages lists the pages a page erase named, in order.
	Pages []int
	// Special is a global or bank erase: 0xFF for Erase's global erase,
	// 0xFFFF, 0xFFFE or 0xFFFD for Extended Erase's.
	Special uint16
	// NACK: the device refused the command (bad frame, bad checksum,
	// out of range, unsupported, or refused by Options.NACK).
	NACK bool
}

func (c Command) String() string {
	s := fmt.Sprintf("%#02x", c.Code)
	switch {
	case c.Code == Sync && !c.NACK:
		s = "sync"
	case c.Code == CmdRead || c.Code == CmdWrite:
		s += fmt.Sprintf(" at %#08x len %d", c.Addr, c.Len)
	case c.Code == CmdGo:
		s += fmt.Sprintf(" at %#08x", c.Addr)
	case c.Special != 0:
		s += fmt.Sprintf(" special %#04x", c.Special)
	case c.Pages != nil:
		s += fmt.Sprintf(" pages %v", c.Pages)
	}
	if c.NACK {
		s += " NACK"
	}
	return s
}

type state int

const (
	stSync        state = iota // waiting for the autobaud byte
	stCmd                      // waiting for [cmd, ^cmd]
	stAddr                     // Read, Write, Go: address + XOR
	stReadLen                  // Read: [N-1, ^(N-1)]
	stWriteLen                 // Write: N-1
	stWriteData                // Write: data + checksum
	stEraseN                   // Erase: N-1 or 0xFF
	stEraseGlobal              // Erase: the 0x00 after 0xFF
	stErasePages               // Erase: page bytes + checksum
	stExtN                     // Extended Erase: u16 N-1 or special
	stExtSpecial               // Extended Erase: checksum of a special
	stExtPages                 // Extended Erase: u16 pages + checksum
	stRunning                  // after Go: the firmware runs, nothing is read
)

// machine is the bootloader's byte-driven state machine, apart from any
// transport so that it can be fed arbitrary bytes.
type machine struct {
	st    state
	cmd   byte
	buf   []byte
	need  int
	addr  uint32
	n     int // Write: byte count; Extended Erase: page count
	ext   bool
	flash []byte
	ram   []byte
	nack  func(Command) bool
	log   []Command // the newest commands, at most MaxLog
	seen  uint64    // commands ever recorded
}

// MaxLog bounds the commands a device keeps for Commands: a host that
// sends commands for ever (two bytes each) must not grow it without end.
// A whole-flash write and read-back of the emulated part is about 1,100.
const MaxLog = 1 << 16

// record logs c, dropping the older half of the log when it is full.
func (m *machine) record(c Command) {
	if len(m.log) == MaxLog {
		m.log = append(m.log[:0], m.log[MaxLog/2:]...)
	}
	m.log = append(m.log, c)
	m.seen++
}

func newMachine(ext bool, nack func(Command) bool) *machine {
	m := &machine{ext: ext, nack: nack, flash: make([]byte, FlashSize), ram: make([]byte, RAMSize)}
	for i := range m.flash {
		m.flash[i] = 0xFF
	}
	return m
}

// commands returns the Get list: the erase command is one of the two, as
// on real parts.
func (m *machine) commands() []byte {
	er := byte(CmdErase)
	if m.ext {
		er = CmdExtendedErase
	}
	return []byte{CmdGet, CmdGetVersion, CmdGetID, CmdRead, CmdGo, CmdWrite, er, CmdWriteUnprotect, CmdReadoutUnprotect}
}

func (m *machine) expect(st state, n int) {
	m.st, m.need, m.buf = st, n, m.buf[:0]
}

// done records c and returns to command mode with reply.
func (m *machine) done(c Command, reply ...byte) []byte {
	m.record(c)
	m.expect(stCmd, 2)
	return reply
}

func (m *machine) refuse(c Command) []byte {
	c.NACK = true
	return m.done(c, NACK)
}

// allowed asks Options.NACK whether the device accepts c.
func (m *machine) allowed(c Command) bool {
	return m.nack == nil || !m.nack(c)
}

func xor(b []byte) byte {
	var x byte
	for _, v := range b {
		x ^= v
	}
	return x
}

// feed takes one byte from the host and returns what the device answers.
func (m *machine) feed(b byte) []byte {
	switch m.st {
	case stRunning:
		return nil
	case stSync:
		// Before autobaud the USART is not locked: other bytes are noise.
		if b != Sync {
			return nil
		}
		return m.done(Command{Code: Sync}, ACK)
	}
	m.buf = append(m.buf, b)
	if len(m.buf) < m.need {
		return nil
	}
	switch m.st {
	case stCmd:
		return m.command(m.buf[0], m.buf[1])
	case stAddr:
		return m.address()
	case stReadLen:
		return m.read()
	case stWriteLen:
		m.n = int(m.buf[0]) + 1
		m.expect(stWriteData, m.n+1)
		return nil
	case stWriteData:
		return m.write()
	case stEraseN:
		if m.buf[0] == 0xFF {
			m.expect(stEraseGlobal, 1)
			return nil
		}
		m.n = int(m.buf[0]) + 1
		// Keep N in the buffer: the checksum covers it.
		m.need = 1 + m.n + 1
		m.st = stErasePages
		return nil
	case stEraseGlobal:
		c := Command{Code: CmdErase, Special: 0xFF}
		if m.buf[0] != 0x00 || !m.allowed(c) {
			return m.refuse(c)
		}
		m.eraseAll()
		return m.done(c, ACK)
	case stErasePages:
		return m.erasePages()
	case stExtN:
		n := int(m.buf[0])<<8 | int(m.buf[1])
		if n >= extendedEraseSpecial {
			m.need = 3
			m.st = stExtSpecial
			return nil
		}
		m.n = n + 1
		m.need = 2 + 2*m.n + 1
		m.st = stExtPages
		return nil
	case stExtSpecial:
		return m.extSpecial()
	case stExtPages:
		return m.extPages()
	}
	return nil
}

func (m *machine) command(cmd, check byte) []byte {
	c := Command{Code: cmd}
	if check != ^cmd || !slices.Contains(m.commands(), cmd) {
		return m.refuse(c)
	}
	m.cmd = cmd
	switch cmd {
	case CmdGet:
		if !m.allowed(c) {
			return m.refuse(c)
		}
		cmds := m.commands()
		out := append([]byte{ACK, byte(len(cmds)), Version}, cmds...)
		return m.done(c, append(out, ACK)...)
	case CmdGetVersion:
		if !m.allowed(c) {
			return m.refuse(c)
		}
		// Version and two option bytes kept for compatibility (0 on F1).
		return m.done(c, ACK, Version, 0x00, 0x00, ACK)
	case CmdGetID:
		if !m.allowed(c) {
			return m.refuse(c)
		}
		return m.done(c, ACK, 1, PID>>8, PID&0xFF, ACK)
	case CmdRead, CmdWrite, CmdGo:
		m.expect(stAddr, 5)
	case CmdErase:
		m.expect(stEraseN, 1)
	case CmdExtendedErase:
		m.expect(stExtN, 2)
	case CmdWriteUnprotect, CmdReadoutUnprotect:
		if !m.allowed(c) {
			return m.refuse(c)
		}
		if cmd == CmdReadoutUnprotect {
			m.eraseAll()
		}
		m.record(c)
		// The part resets after the second ACK and boots into the
		// bootloader again, which waits for a new autobaud sync.
		m.expect(stSync, 0)
		return []byte{ACK, ACK}
	}
	return []byte{ACK}
}

func (m *machine) address() []byte {
	a := uint32(m.buf[0])<<24 | uint32(m.buf[1])<<16 | uint32(m.buf[2])<<8 | uint32(m.buf[3])
	c := Command{Code: m.cmd, Addr: a}
	if xor(m.buf[:4]) != m.buf[4] {
		return m.refuse(c)
	}
	m.addr = a
	switch m.cmd {
	case CmdRead:
		if m.region(a, 1, false) == nil {
			return m.refuse(c)
		}
		m.expect(stReadLen, 2)
	case CmdWrite:
		if m.region(a, 1, true) == nil {
			return m.refuse(c)
		}
		m.expect(stWriteLen, 1)
	case CmdGo:
		if !m.executable(a) || !m.allowed(c) {
			return m.refuse(c)
		}
		m.record(c)
		m.st = stRunning
	}
	return []byte{ACK}
}

func (m *machine) executable(a uint32) bool {
	in := func(base, size uint32) bool { return a >= base && a-base < size }
	return in(FlashBase, FlashSize) || in(RAMBase, RAMSize)
}

func (m *machine) read() []byte {
	n := int(m.buf[0]) + 1
	c := Command{Code: CmdRead, Addr: m.addr, Len: n}
	if m.buf[1] != ^m.buf[0] || !m.allowed(c) {
		return m.refuse(c)
	}
	mem := m.region(m.addr, n, false)
	if mem == nil {
		return m.refuse(c)
	}
	return m.done(c, append([]byte{ACK}, mem...)...)
}

func (m *machine) write() []byte {
	data := m.buf[:m.n]
	c := Command{Code: CmdWrite, Addr: m.addr, Len: m.n}
	if xor(data)^byte(m.n-1) != m.buf[m.n] || !m.allowed(c) {
		return m.refuse(c)
	}
	mem := m.region(m.addr, m.n, true)
	if mem == nil {
		return m.refuse(c)
	}
	if m.inFlash(m.addr) {
		// Flash is programmed a word at a time.
		if m.addr%4 != 0 || m.n%4 != 0 {
			return m.refuse(c)
		}
		// NOR flash: programming only clears bits.
		for i, v := range data {
			mem[i] &= v
		}
	} else {
		copy(mem, data)
	}
	return m.done(c, ACK)
}

func (m *machine) inFlash(a uint32) bool { return a >= FlashBase && a-FlashBase < FlashSize }

func (m *machine) eraseAll() {
	for i := range m.flash {
		m.flash[i] = 0xFF
	}
}

func (m *machine) erasePage(p int) {
	pg := m.flash[p*PageSize : (p+1)*PageSize]
	for i := range pg {
		pg[i] = 0xFF
	}
}

func (m *machine) erasePages() []byte {
	pages := make([]int, m.n)
	for i := range pages {
		pages[i] = int(m.buf[1+i])
	}
	return m.erase(Command{Code: CmdErase, Pages: pages}, xor(m.buf[:1+m.n]) == m.buf[1+m.n])
}

func (m *machine) extPages() []byte {
	pages := make([]int, m.n)
	for i := range pages {
		pages[i] = int(m.buf[2+2*i])<<8 | int(m.buf[3+2*i])
	}
	end := 2 + 2*m.n
	return m.erase(Command{Code: CmdExtendedErase, Pages: pages}, xor(m.buf[:end]) == m.buf[end])
}

// erase erases c.Pages when the checksum was good and every page exists.
func (m *machine) erase(c Command, sumOK bool) []byte {
	if !sumOK {
		return m.refuse(c)
	}
	for _, p := range c.Pages {
		if p >= FlashSize/PageSize {
			return m.refuse(c)
		}
	}
	if !m.allowed(c) {
		return m.refuse(c)
	}
	for _, p := range c.Pages {
		m.erasePage(p)
	}
	return m.done(c, ACK)
}

func (m *machine) extSpecial() []byte {
	code := uint16(m.buf[0])<<8 | uint16(m.buf[1])
	c := Command{Code: CmdExtendedErase, Special: code}
	// This part has a single bank: bank 1 is all of flash, bank 2 does
	// not exist; 0xFFF0-0xFFFC are reserved.
	if xor(m.buf[:2]) != m.buf[2] || (code != extendedGlobal && code != extendedBank1) || !m.allowed(c) {
		return m.refuse(c)
	}
	m.eraseAll()
	return m.done(c, ACK)
}

// region returns the memory at [a, a+n) when it lies wholly in one area
// the command may touch, or nil.
func (m *machine) region(a uint32, n int, write bool) []byte {
	within := func(base uint32, mem []byte) []byte {
		if a < base || uint64(a-base)+uint64(n) > uint64(len(mem)) {
			return nil
		}
		return mem[a-base : int(a-base)+n]
	}
	if mem := within(FlashBase, m.flash); mem != nil {
		return mem
	}
	if mem := within(RAMBase, m.ram); mem != nil {
		return mem
	}
	if write {
		// System memory is ROM; option bytes need their own sequence,
		// which this device does not emulate.
		return nil
	}
	if mem := within(SystemBase, systemMemory()); mem != nil {
		return mem
	}
	return within(OptionBase, optionBytes())
}

// systemMemory is the read-only area: zeros but for the flash size and
// unique ID registers, which tools read.
func systemMemory() []byte {
	mem := make([]byte, SystemSize)
	fs := mem[flashSizeReg-SystemBase:]
	fs[0], fs[1] = byte(FlashSize>>10), byte(FlashSize>>18)
	copy(mem[uniqueIDReg-SystemBase:], []byte{0x34, 0x12, 0xFF, 0x05, 0x41, 0x4E, 0x33, 0x31, 0x35, 0x35, 0x01, 0x02})
	return mem
}

// optionBytes are an F1's factory values: no readout protection (RDP
// 0xA5), every user and write-protection byte unset, each byte followed
// by its complement.
func optionBytes() []byte {
	return []byte{0xA5, 0x5A, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00, 0xFF, 0x00}
}
