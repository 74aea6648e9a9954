package gdbstub

import (
	"fmt"
	"strings"
)

// memoryMapXML renders regions in GDB's memory-map format. Flash regions carry
// their erase block size, which GDB uses to align vFlashErase requests.
func memoryMapXML(regions []Region) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<!DOCTYPE memory-map PUBLIC "+//IDN gnu.org//DTD GDB Memory Map V1.0//EN" "http://sourceware.org/gdb/gdb-memory-map.dtd">` + "\n")
	b.WriteString("<memory-map>\n")
	for _, r := range regions {
		switch r.Kind {
		case KindFlash:
			fmt.Fprintf(&b, "  <memory type=\"flash\" start=\"0x%x\" length=\"0x%x\">\n", r.Start, r.Length)
			fmt.Fprintf(&b, "    <property name=\"blocksize\">0x%x</property>\n", r.BlockSize)
			b.WriteString("  </memory>\n")
		case KindRAM:
			fmt.Fprintf(&b, "  <memory type=\"ram\" start=\"0x%x\" length=\"0x%x\"/>\n", r.Start, r.Length)
		}
	}
	b.WriteString("</memory-map>\n")
	return b.String()
}

// targetXML is an ARM M-profile description in the shape OpenOCD serves, so
// that gdb-multiarch picks the architecture and the register layout of 'g'
// (r0-r12, sp, lr, pc, xpsr: 17 little-endian words) without
// "set architecture".
var targetXML = func() string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<!DOCTYPE target SYSTEM "gdb-target.dtd">` + "\n")
	b.WriteString("<target version=\"1.0\">\n")
	b.WriteString("  <architecture>arm</architecture>\n")
	b.WriteString("  <feature name=\"org.gnu.gdb.arm.m-profile\">\n")
	for i, name := range regNames {
		typ := "uint32"
		switch name {
		case "sp":
			typ = "data_ptr"
		case "pc":
			typ = "code_ptr"
		}
		fmt.Fprintf(&b, "    <reg name=%q bitsize=\"32\" regnum=\"%d\" type=%q group=\"general\"/>\n", name, i, typ)
	}
	b.WriteString("  </feature>\n")
	b.WriteString("</target>\n")
	return b.String()
}()

var regNames = [numRegs]string{
	"r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12",
	"sp", "lr", "pc", "xpsr",
}

const (
	numRegs = 17
	regSP   = 13
	regLR   = 14
	regPC   = 15
	regXPSR = 16
)
