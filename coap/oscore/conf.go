package oscore

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Bounds on a configuration file, which comes from outside.
const (
	maxConfLine  = 4096
	maxConfLines = 1000
)

// confKey describes one keyword of the file: which encodings it takes.
type confKey struct {
	name string
	encs string // accepted encodings, space separated
}

var confKeys = []confKey{
	{"master_secret", "hex ascii"},
	{"master_salt", "hex ascii"},
	{"id_context", "hex ascii"},
	{"sender_id", "hex ascii"},
	{"recipient_id", "hex ascii"},
	{"replay_window", "integer"},
	{"aead_alg", "integer text"},
	{"hkdf_alg", "integer text"},
	{"ssn_freq", "integer"},
	{"rfc8613_b_1_2", "bool"},
	{"rfc8613_b_2", "bool"},
}

// ParseConf reads libcoap's OSCORE configuration format, coap-oscore-conf(5):
// one "keyword,encoding,value" a line, where the encoding is hex or ascii
// (the value optionally in double quotes), integer, text or bool; lines
// starting with # and blank lines are skipped. The keywords are
// master_secret, master_salt, id_context, sender_id, recipient_id,
// replay_window, aead_alg, hkdf_alg and ssn_freq, plus rfc8613_b_1_2
// (true: the Echo recovery this package always does) and rfc8613_b_2
// (only false: Appendix B.2 is not implemented). master_secret, sender_id
// and recipient_id are required, and only one recipient is supported.
//
// The text comes from outside: lines are bounded to 4096 bytes and files
// to 1000 lines, and errors give the line number, never a value.
func ParseConf(r io.Reader) (Params, error) {
	var p Params
	seen := make(map[string]bool, len(confKeys))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), maxConfLine)
	n := 0
	for sc.Scan() {
		n++
		if n > maxConfLines {
			return Params{}, fmt.Errorf("oscore conf: more than %d lines", maxConfLines)
		}
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		if err := p.confLine(line, seen); err != nil {
			return Params{}, fmt.Errorf("oscore conf: line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return Params{}, fmt.Errorf("oscore conf: line %d: longer than %d bytes", n+1, maxConfLine)
		}
		return Params{}, fmt.Errorf("oscore conf: %w", err)
	}
	for _, k := range []string{"master_secret", "sender_id", "recipient_id"} {
		if !seen[k] {
			return Params{}, fmt.Errorf("oscore conf: no %s", k)
		}
	}
	if err := p.check(); err != nil {
		return Params{}, fmt.Errorf("oscore conf: %w", err)
	}
	return p, nil
}

// confLine applies one "keyword,encoding,value" line to p.
func (p *Params) confLine(line string, seen map[string]bool) error {
	kw, rest, ok := strings.Cut(line, ",")
	enc, val, ok2 := strings.Cut(rest, ",")
	if !ok || !ok2 {
		return errors.New(`not "keyword,encoding,value"`)
	}
	var key *confKey
	for i := range confKeys {
		if confKeys[i].name == kw {
			key = &confKeys[i]
		}
	}
	if key == nil {
		return fmt.Errorf("unknown keyword %q", clip(kw)) // a keyword, never a value
	}
	if !strings.Contains(" "+key.encs+" ", " "+enc+" ") {
		return fmt.Errorf("%s: encoding %q not one of: %s", kw, clip(enc), key.encs)
	}
	if seen[kw] {
		// libcoap takes several recipient_id for a server; one is all a
		// Context has.
		return fmt.Errorf("%s given twice", kw)
	}
	seen[kw] = true

	switch enc {
	case "hex", "ascii":
		b, err := confBytes(enc, val)
		if err != nil {
			return fmt.Errorf("%s: %w", kw, err)
		}
		if strings.HasSuffix(kw, "_id") && len(b) > maxIDLen {
			return fmt.Errorf("%s: %d bytes, longer than %d", kw, len(b), maxIDLen)
		}
		switch kw {
		case "master_secret":
			p.MasterSecret = b
		case "master_salt":
			p.MasterSalt = b
		case "id_context":
			p.IDContext = b
		case "sender_id":
			p.SenderID = b
		case "recipient_id":
			p.RecipientID = b
		}
	case "integer", "text":
		v, err := confInt(kw, enc, val)
		if err != nil {
			return fmt.Errorf("%s: %w", kw, err)
		}
		switch kw {
		case "replay_window":
			p.ReplayWindow = v
		case "aead_alg":
			p.AEAD = v
		case "hkdf_alg":
			p.HKDF = v
		case "ssn_freq":
			p.SSNFreq = v
		}
	case "bool":
		want := kw == "rfc8613_b_1_2" // the only value this package has
		if val != strconv.FormatBool(want) {
			return fmt.Errorf("%s: only %v is supported", kw, want)
		}
	}
	return nil
}

// confBytes decodes a hex or ascii value, optionally in double quotes.
func confBytes(enc, val string) ([]byte, error) {
	if strings.HasPrefix(val, `"`) {
		if len(val) < 2 || !strings.HasSuffix(val, `"`) {
			return nil, errors.New("unterminated quote")
		}
		val = val[1 : len(val)-1]
	}
	if enc == "ascii" {
		return []byte(val), nil
	}
	b, err := hex.DecodeString(val)
	if err != nil {
		// hex's error would quote the value, which may be a secret.
		return nil, errors.New("invalid hex")
	}
	return b, nil
}

// confInt decodes an integer, or the text name of an algorithm.
func confInt(kw, enc, val string) (int, error) {
	if enc == "text" {
		val = strings.Trim(val, `"`)
		switch {
		case kw == "aead_alg" && val == "AES-CCM-16-64-128":
			return AlgAESCCM16_64_128, nil
		case kw == "hkdf_alg" && val == "direct+HKDF-SHA-256":
			return AlgHKDFSHA256, nil
		}
		return 0, fmt.Errorf("unsupported algorithm %q", clip(val))
	}
	v, err := strconv.Atoi(val)
	if err != nil || v < -1<<31 || v > 1<<31-1 {
		return 0, fmt.Errorf("%q is not an integer", clip(val))
	}
	switch {
	case kw == "replay_window" && (v < 1 || v > MaxReplayWindow):
		return 0, fmt.Errorf("%d out of range 1..%d", v, MaxReplayWindow)
	case kw == "ssn_freq" && v < 1:
		return 0, fmt.Errorf("%d is not positive", v)
	case kw == "aead_alg" && v != AlgAESCCM16_64_128:
		return 0, fmt.Errorf("algorithm %d not supported (only %d, AES-CCM-16-64-128)", v, AlgAESCCM16_64_128)
	case kw == "hkdf_alg" && v != AlgHKDFSHA256:
		return 0, fmt.Errorf("algorithm %d not supported (only %d, HKDF-SHA-256)", v, AlgHKDFSHA256)
	}
	return v, nil
}

// clip shortens outside text quoted in an error.
func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}

// MarshalConf renders p in the format ParseConf reads, binary values in
// hex; zero integers and a nil salt or ID context are left out. The output
// holds the Master Secret: treat it as the key it is.
func (p Params) MarshalConf() []byte {
	var b bytes.Buffer
	put := func(kw string, v []byte) {
		fmt.Fprintf(&b, "%s,hex,\"%x\"\n", kw, v)
	}
	putInt := func(kw string, v int) {
		if v != 0 {
			fmt.Fprintf(&b, "%s,integer,%d\n", kw, v)
		}
	}
	put("master_secret", p.MasterSecret)
	if p.MasterSalt != nil {
		put("master_salt", p.MasterSalt)
	}
	if p.IDContext != nil {
		put("id_context", p.IDContext)
	}
	put("sender_id", p.SenderID)
	put("recipient_id", p.RecipientID)
	putInt("replay_window", p.ReplayWindow)
	putInt("aead_alg", p.AEAD)
	putInt("hkdf_alg", p.HKDF)
	putInt("ssn_freq", p.SSNFreq)
	return b.Bytes()
}
