package esprom

import (
	"bytes"
	"compress/zlib"
)

// deflate is data as a zlib stream, as FLASH_DEFL_DATA carries it.
func deflate(data []byte) []byte {
	var b bytes.Buffer
	w, _ := zlib.NewWriterLevel(&b, zlib.BestCompression)
	_, _ = w.Write(data)
	_ = w.Close()
	return b.Bytes()
}
