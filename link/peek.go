package link

// CoAP is what a glance at a datagram tells of a CoAP message (RFC 7252
// §3): enough to name a dropped block on the timeline. A datagram that is
// not plain CoAP (a DTLS record, garbage) gives OK false.
type CoAP struct {
	OK   bool
	Type uint8 // 0 CON, 1 NON, 2 ACK, 3 RST
	Code uint8 // class<<5 | detail
	MID  uint16
	// Block1 is the Block1 option's block number (RFC 7959 §2.2), or -1
	// when the message has none.
	Block1 int64
}

// Block1 is the Block1 option's number.
const optBlock1 = 27

// Peek reads a datagram's CoAP header and, when present, its Block1
// option, without allocating. It never reads past data and never fails:
// anything it cannot read is reported as not CoAP, or as no Block1.
func Peek(data []byte) CoAP {
	c := CoAP{Block1: -1}
	if len(data) < 4 || data[0]>>6 != 1 {
		return c
	}
	tkl := int(data[0] & 0x0f)
	if tkl > 8 || len(data) < 4+tkl {
		return c
	}
	c.OK = true
	c.Type = data[0] >> 4 & 3
	c.Code = data[1]
	c.MID = uint16(data[2])<<8 | uint16(data[3])
	i := 4 + tkl
	num := 0
	for i < len(data) {
		b := data[i]
		if b == 0xff {
			break
		}
		i++
		delta, length := int(b>>4), int(b&0x0f)
		var ok bool
		if delta, i, ok = ext(data, i, delta); !ok {
			return c
		}
		if length, i, ok = ext(data, i, length); !ok {
			return c
		}
		num += delta
		if i+length > len(data) || num > 0xffff {
			return c
		}
		if num == optBlock1 && length <= 3 {
			v := 0
			for _, x := range data[i : i+length] {
				v = v<<8 | int(x)
			}
			c.Block1 = int64(v >> 4)
			return c
		}
		if num > optBlock1 {
			return c
		}
		i += length
	}
	return c
}

// ext reads an option delta or length nibble's extension (RFC 7252
// §3.1): 13 adds one byte, 14 two, 15 is reserved.
func ext(data []byte, i, v int) (int, int, bool) {
	switch v {
	case 13:
		if i >= len(data) {
			return 0, i, false
		}
		return int(data[i]) + 13, i + 1, true
	case 14:
		if i+1 >= len(data) {
			return 0, i, false
		}
		return int(data[i])<<8 | int(data[i+1]) + 269, i + 2, true
	case 15:
		return 0, i, false
	}
	return v, i, true
}

// CodeString writes a CoAP code as c.dd (0.03 is PUT, 2.31 Continue).
func (c CoAP) CodeString() string {
	b := [4]byte{'0' + c.Code>>5, '.', '0' + (c.Code&31)/10, '0' + (c.Code&31)%10}
	return string(b[:])
}

// TypeString names the message type.
func (c CoAP) TypeString() string {
	return [...]string{"CON", "NON", "ACK", "RST"}[c.Type&3]
}
