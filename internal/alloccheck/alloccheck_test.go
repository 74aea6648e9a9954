package alloccheck

import "testing"

var sink []byte

func TestMeasure(t *testing.T) {
	c := Measure(func() { sink = make([]byte, 1<<20) })
	if c.Bytes < 1<<20 || c.Bytes > 2<<20 || c.Objects < 1 {
		t.Fatalf("1 MiB allocation measured as %+v", c)
	}
	if c := Measure(func() {}); c.Bytes > 1024 {
		t.Fatalf("nothing allocated measured as %+v", c)
	}
}
