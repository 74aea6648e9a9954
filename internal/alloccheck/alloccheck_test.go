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

func TestRepeat(t *testing.T) {
	s := Repeat("abc", 10)
	buf := make([]byte, 4)
	var got []byte
	for {
		n, err := s.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	if string(got) != "abcabcabca" || s.Off != 10 {
		t.Fatalf("read %q (off %d)", got, s.Off)
	}
	big := Repeat("x", 100<<20)
	c := Measure(func() {
		for {
			if _, err := big.Read(buf); err != nil {
				break
			}
			if big.Off > 1<<20 {
				break
			}
		}
	})
	if c.Bytes > 1024 {
		t.Fatalf("reading 1 MiB of a stream allocated %d bytes", c.Bytes)
	}
}
