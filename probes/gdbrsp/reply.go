package gdbrsp

import (
	"strconv"

	"github.com/fudbench/fudbench/internal/rsp"
)

// maxPacket bounds one reply payload after run-length expansion, so that
// a broken or hostile server cannot make the client grow without end.
const maxPacket = 1 << 20

// maxMonitorOutput bounds the console output a monitor command may send
// back ('O' packets, each renewing the command's timeout): a reset or
// halt prints a few lines; a server that never stops is refused.
const maxMonitorOutput = 64 << 10

// Reply kinds, as classify sees a reply payload.
const (
	replyOK      = iota // "OK"
	replyEmpty          // "": the server does not know the command
	replyError          // "Exx" or "E.text"
	replyConsole        // "O" + hex: console output
	replyData           // anything else
)

// classify sorts a reply payload. "OK" is no console output although it
// starts with 'O': console output is 'O' followed by hex digits.
func classify(p []byte) int {
	switch {
	case len(p) == 0:
		return replyEmpty
	case string(p) == "OK":
		return replyOK
	case isError(p):
		return replyError
	case p[0] == 'O' && len(p) > 1 && len(p)%2 == 1 && isHex(p[1:]):
		return replyConsole
	}
	return replyData
}

// isError: "Exx" with two hex digits, or "E." followed by text (the
// textual error form newer servers use, e.g. E.memtype).
func isError(p []byte) bool {
	if len(p) < 2 || p[0] != 'E' {
		return false
	}
	if p[1] == '.' {
		return true
	}
	return len(p) == 3 && isHex(p[1:])
}

func isHex(p []byte) bool {
	for _, c := range p {
		if _, ok := rsp.Unhex(c); !ok {
			return false
		}
	}
	return true
}

// parseSupported parses a qSupported reply ("PacketSize=4000;qXfer:memory-
// map:read+;...") into feature → value, where a "+" or "-" feature maps to
// "+" or "-".
func parseSupported(p []byte) map[string]string {
	f := map[string]string{}
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) && p[i] != ';' {
			continue
		}
		item := string(p[start:i])
		start = i + 1
		if item == "" {
			continue
		}
		if k, v, ok := cutByte(item, '='); ok {
			f[k] = v
			continue
		}
		switch last := item[len(item)-1]; last {
		case '+', '-', '?':
			f[item[:len(item)-1]] = string(last)
		default:
			f[item] = "+"
		}
	}
	return f
}

func cutByte(s string, sep byte) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// packetSizeOf reads PacketSize (hex) from qSupported features; it falls
// back to def when missing or absurd.
func packetSizeOf(f map[string]string, def int) int {
	v, ok := f["PacketSize"]
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 16, 32)
	if err != nil || n < 64 {
		return def
	}
	return int(min(n, maxPacket))
}
