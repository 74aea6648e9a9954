package rsp

// crcTable is the MSB-first table for polynomial 0x04C11DB7, the one behind
// GDB's xcrc32 (libiberty), which compare-sections uses for qCRC.
var crcTable = func() (t [256]uint32) {
	for i := range t {
		c := uint32(i) << 24
		for range 8 {
			if c&0x80000000 != 0 {
				c = c<<1 ^ 0x04C11DB7
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC32 continues GDB's qCRC checksum over p from crc. Start with
// 0xffffffff; there is no final xor. It is CRC-32/MPEG-2: "123456789"
// gives 0x0376e6e7.
func CRC32(crc uint32, p []byte) uint32 {
	for _, b := range p {
		crc = crc<<8 ^ crcTable[byte(crc>>24)^b]
	}
	return crc
}
