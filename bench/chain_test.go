package bench

import (
	"testing"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/power"
)

// TestSetImages: the strategy's next cycle compares what runs with the
// new images, by digest and by the versions in their headers.
func TestSetImages(t *testing.T) {
	img := func(v string, seq uint32) []byte {
		b, err := fwimage.Build(fwimage.Spec{Version: v, Seq: seq, Size: 1024, Seed: int64(seq)}, fwimage.DevKey())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	s := &Strategy{Baseline: img("1.0.0", 1), Update: img("2.0.0", 2), BaselineVersion: "one", UpdateVersion: "two"}
	s.digests()
	old := s.updDigest
	s.SetImages(img("2.0.0+c1", 2), img("2.0.0+c2", 3))
	s.digests()
	if s.updDigest == old || s.baseImg.Version != "2.0.0+c1" || s.updImg.Version != "2.0.0+c2" {
		t.Errorf("after SetImages: digest changed %v, versions %q %q", s.updDigest != old, s.baseImg.Version, s.updImg.Version)
	}
}

func TestSectorErases(t *testing.T) {
	before := power.FlashStats{Erases: []uint32{3, 0, 7}}
	after := power.FlashStats{Erases: []uint32{5, 1, 7, 2}}
	if n := sectorErases(before, after); n != 2+1+0+2 {
		t.Errorf("sectorErases = %d, want 5", n)
	}
}
