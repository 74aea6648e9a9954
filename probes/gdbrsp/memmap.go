package gdbrsp

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Region kinds of a memory map.
const (
	KindFlash = "flash"
	KindRAM   = "ram"
	KindROM   = "rom"
)

// Region is one entry of a server's memory map.
type Region struct {
	Kind      string // KindFlash, KindRAM or KindROM
	Start     uint32
	Length    uint32
	BlockSize uint32 // erase block size of a flash region; 0 otherwise
}

// End is the first address after r, as a uint64 so that a region ending
// at 4 GiB does not wrap.
func (r Region) End() uint64 { return uint64(r.Start) + uint64(r.Length) }

func (r Region) String() string {
	if r.Kind == KindFlash {
		return fmt.Sprintf("%s %#08x+%#x (blocks of %#x)", r.Kind, r.Start, r.Length, r.BlockSize)
	}
	return fmt.Sprintf("%s %#08x+%#x", r.Kind, r.Start, r.Length)
}

type xmlMemoryMap struct {
	XMLName xml.Name    `xml:"memory-map"`
	Memory  []xmlMemory `xml:"memory"`
}

type xmlMemory struct {
	Type     string        `xml:"type,attr"`
	Start    string        `xml:"start,attr"`
	Length   string        `xml:"length,attr"`
	Property []xmlProperty `xml:"property"`
}

type xmlProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:",chardata"`
}

// maxMemoryMap bounds the memory-map document a server may send: a real
// one is under 1 KiB, and 256 KiB holds 2,500 regions of 100 bytes. The
// bound is low because encoding/xml allocates up to 64 bytes a byte (a
// document of nothing but nested elements): 16 MiB at most.
const maxMemoryMap = 256 << 10

// ParseMemoryMap parses GDB's memory-map XML (gdb-memory-map.dtd) as
// served by qXfer:memory-map:read. It returns the regions sorted by start.
// Numbers are read as GDB reads them (0x hex, leading-0 octal, decimal). A
// flash region needs a blocksize property that divides its length;
// regions must not overlap or pass 4 GiB.
func ParseMemoryMap(doc []byte) ([]Region, error) {
	if len(doc) > maxMemoryMap {
		return nil, fmt.Errorf("memory map: %d bytes, more than the %d a memory map may have", len(doc), maxMemoryMap)
	}
	var m xmlMemoryMap
	dec := xml.NewDecoder(bytes.NewReader(doc))
	// The DTD is never fetched; entities beyond XML's own are errors.
	dec.Strict = true
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("memory map: %w", err)
	}
	regions := make([]Region, 0, len(m.Memory))
	for i, x := range m.Memory {
		r, err := x.region()
		if err != nil {
			return nil, fmt.Errorf("memory map: region %d: %w", i, err)
		}
		regions = append(regions, r)
	}
	slices.SortFunc(regions, func(a, b Region) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
	for i := 1; i < len(regions); i++ {
		if uint64(regions[i].Start) < regions[i-1].End() {
			return nil, fmt.Errorf("memory map: %v overlaps %v", regions[i], regions[i-1])
		}
	}
	return regions, nil
}

func (x xmlMemory) region() (Region, error) {
	var r Region
	switch x.Type {
	case KindFlash, KindRAM, KindROM:
		r.Kind = x.Type
	default:
		return r, fmt.Errorf("type %q (want flash, ram or rom)", x.Type)
	}
	start, err := parseNumber(x.Start)
	if err != nil {
		return r, fmt.Errorf("start: %w", err)
	}
	length, err := parseNumber(x.Length)
	if err != nil {
		return r, fmt.Errorf("length: %w", err)
	}
	// Length is a uint32: a region cannot span all 4 GiB.
	if length == 0 || length >= 1<<32 || start+length > 1<<32 {
		return r, fmt.Errorf("range %#x+%#x is empty or passes 4 GiB", start, length)
	}
	r.Start, r.Length = uint32(start), uint32(length)
	for _, p := range x.Property {
		if p.Name != "blocksize" {
			continue
		}
		bs, err := parseNumber(p.Value)
		if err != nil {
			return r, fmt.Errorf("blocksize: %w", err)
		}
		if bs == 0 || bs > length || length%bs != 0 {
			return r, fmt.Errorf("blocksize %#x does not divide length %#x", bs, length)
		}
		r.BlockSize = uint32(bs)
	}
	if r.Kind == KindFlash && r.BlockSize == 0 {
		return r, fmt.Errorf("flash region at %#x has no blocksize", start)
	}
	if r.Kind != KindFlash {
		r.BlockSize = 0
	}
	return r, nil
}

// parseNumber reads a number as GDB's strtoulst with base 0 does: 0x hex,
// leading-0 octal, else decimal; at most 32 bits plus one (a length may
// reach 4 GiB).
func parseNumber(s string) (uint64, error) {
	orig := s
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, "_+-") {
		return 0, fmt.Errorf("number %q", orig)
	}
	base := 10
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		base, s = 16, s[2:]
	case len(s) > 1 && s[0] == '0':
		base, s = 8, s[1:]
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil || n > 1<<32 {
		return 0, fmt.Errorf("number %q", orig)
	}
	return n, nil
}
