package fwimage

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fudbench/fudbench/internal/alloccheck"
)

// TestBombs: image files and headers that claim more than they hold. An
// 8 GiB file (sparse) is refused from its size before a byte is read;
// /dev/zero, which has no size, after limit+1 bytes; a header whose
// payload size claims 4 GiB is refused by Verify before anything is
// hashed. Each allocates at most 8 bytes a byte read plus 64 KiB (a
// buffer that grows by doubling: 4 bytes a byte, 8 under the race
// detector).
func TestBombs(t *testing.T) {
	dir := t.TempDir()
	sparse := alloccheck.Sparse(t, filepath.Join(dir, "huge.bin"), 8<<30)
	slot := filepath.Join(dir, "slot.bin")
	if err := os.WriteFile(slot, make([]byte, 65537), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		limit   int64
		read    int64 // bytes ReadFile may read
		wantErr string
	}{
		{"image file of 8 GiB", sparse, 0, 0, "huge.bin is 8589934592 bytes, more than 67108864"},
		{"image file of 64 KiB + 1 for a 64 KiB slot", slot, 64 << 10, 0, "slot.bin is 65537 bytes, more than 65536"},
		{"/dev/zero for a 64 KiB slot", "/dev/zero", 64 << 10, 64<<10 + 1, "/dev/zero has more than 65536 bytes"},
		{"/dev/zero as a key file", "", maxKeyFile, maxKeyFile + 1, "/dev/zero has more than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			c := alloccheck.Bound(t, tt.name, int(tt.read), 8, 64<<10, func() {
				if tt.path == "" {
					_, err = LoadPublicKey("/dev/zero")
				} else {
					_, err = ReadFile(tt.path, tt.limit)
				}
			})
			alloccheck.Log(t, tt.name, tt.read, c, err)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || tt.path != "" && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v, want ErrTooLarge with %q", err, tt.wantErr)
			}
		})
	}
	t.Run("header claiming a 4 GiB payload", func(t *testing.T) {
		img := mustBuild(t, Spec{Version: "1.0.0", Seq: 1, Size: HeaderSize + 40, Seed: 1}, DevKey())
		binary.LittleEndian.PutUint32(img[offSize:], 0xFFFFFFFF)
		var err error
		c := alloccheck.Bound(t, "Verify", len(img), 4, 4<<10, func() { _, err = Verify(img, DevKey().Public().(ed25519.PublicKey)) })
		alloccheck.Log(t, "header claiming a 4 GiB payload", int64(len(img)), c, err)
		if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "the header declares 4294967551") {
			t.Fatalf("Verify: %v", err)
		}
	})
}
