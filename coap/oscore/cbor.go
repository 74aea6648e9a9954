package oscore

// The CBOR structures OSCORE feeds to HKDF and the AEAD are of fixed shape,
// so they are written by hand (RFC 8949 §3) straight into caller buffers.

const (
	cborUint  = 0 << 5
	cborNeg   = 1 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
	cborArray = 4 << 5
	cborNull  = 0xf6
)

// appendHead appends a CBOR head of major type major and argument n.
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= 0xff:
		return append(b, major|24, byte(n))
	case n <= 0xffff:
		return append(b, major|25, byte(n>>8), byte(n))
	case n <= 0xffffffff:
		return append(b, major|26, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, major|27, byte(n>>56), byte(n>>48), byte(n>>40), byte(n>>32), byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendInt(b []byte, v int) []byte {
	if v >= 0 {
		return appendHead(b, cborUint, uint64(v))
	}
	return appendHead(b, cborNeg, uint64(-1-v))
}

func appendBytes(b, v []byte) []byte {
	return append(appendHead(b, cborBytes, uint64(len(v))), v...)
}

// appendInfo appends the HKDF info of §3.2.1:
// [id: bstr, id_context: bstr / nil, alg_aead: int, type: tstr, L: uint].
func appendInfo(b, id, idContext []byte, alg int, typ string, l int) []byte {
	b = append(b, cborArray|5)
	b = appendBytes(b, id)
	if idContext == nil {
		b = append(b, cborNull)
	} else {
		b = appendBytes(b, idContext)
	}
	b = appendInt(b, alg)
	b = append(appendHead(b, cborText, uint64(len(typ))), typ...)
	return appendHead(b, cborUint, uint64(l))
}

// appendAAD appends the AEAD additional data of §5.4: the COSE
// Enc_structure ["Encrypt0", protected, external_aad] with an empty
// protected bucket, where external_aad is the byte string holding
// aad_array = [1, [alg_aead], request_kid, request_piv, options], options
// being empty as no Class I options are defined.
func appendAAD(b []byte, alg int, kid, piv []byte) []byte {
	var arr [32]byte // 4 + 8 (kid) + 6 (piv) + 1
	a := append(arr[:0], cborArray|5, 1, cborArray|1)
	a = appendInt(a, alg)
	a = appendBytes(a, kid)
	a = appendBytes(a, piv)
	a = append(a, cborBytes) // options: the empty byte string

	// "Encrypt0", the empty protected bucket, external_aad
	b = append(b, cborArray|3, cborText|8, 'E', 'n', 'c', 'r', 'y', 'p', 't', '0', cborBytes)
	return appendBytes(b, a)
}
