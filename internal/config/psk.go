package config

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxPSKFile bounds a PSK file: a key is a few dozen bytes, and a path to
// something endless (a device, a FIFO) must not hang a reader.
const MaxPSKFile = 4 << 10

// ReadPSK reads a DTLS pre-shared key file, for the bench inventory's
// key_file and the simulated board's psk_file alike: the key is the
// file's bytes with surrounding whitespace removed; a "hex:" or "0x"
// prefix means hex.
func ReadPSK(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxPSKFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > MaxPSKFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a pre-shared key file", path, MaxPSKFile)
	}
	s := strings.TrimSpace(string(b))
	if h, ok := strings.CutPrefix(s, "hex:"); ok {
		s = "0x" + h
	}
	if h, ok := strings.CutPrefix(s, "0x"); ok {
		out := make([]byte, len(h)/2)
		if _, err := fmt.Sscanf(h, "%x", &out); err != nil || len(h)%2 != 0 {
			return nil, fmt.Errorf("%s: bad hex", path)
		}
		return out, nil
	}
	if s == "" {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return []byte(s), nil
}
