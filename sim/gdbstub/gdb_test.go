package gdbstub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/rsp"
)

// recordingListener keeps a copy of every byte its connections receive, so a
// test can list the packets a real client sent.
type recordingListener struct {
	net.Listener
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, l: l}, nil
}

func (l *recordingListener) packets(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	r := bufio.NewReader(bytes.NewReader(l.buf.Bytes()))
	var out []string
	for {
		p, err := rsp.ReadPacket(r, MaxPacket)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("recorded stream: %v", err)
		}
		out = append(out, string(p))
	}
}

type recordingConn struct {
	net.Conn
	l *recordingListener
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	c.l.buf.Write(p[:n])
	c.l.mu.Unlock()
	return n, err
}

// TestGDBLoad has Debian's gdb-multiarch load an ELF into flash through the
// stub, verify it with compare-sections (qCRC) and reset the target with
// monitor commands. It pins the vFlash packet sequence GDB sends: one erase of
// the covering blocks, writes filling the advertised PacketSize with chunk
// ends 16-byte aligned, then done.
func TestGDBLoad(t *testing.T) {
	gdb := needTool(t, "gdb-multiarch", "gdb-multiarch")
	objcopy := needTool(t, "arm-none-eabi-objcopy", "binutils-arm-none-eabi")
	tests := []struct {
		name    string
		size    int
		wantSeq []string
	}{
		{"one packet", 6000, []string{
			"vFlashErase:00010000,00002000",
			"vFlashWrite:10000:<6000>",
			"vFlashDone",
			"qCRC:10000,1770",
		}},
		{"three packets", 36987, []string{
			"vFlashErase:00010000,0000a000",
			"vFlashWrite:10000:<16096>",
			"vFlashWrite:13ee0:<16128>",
			"vFlashWrite:17de0:<4763>",
			"vFlashDone",
			"qCRC:10000,907b",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testGDBLoad(t, gdb, objcopy, tt.size, tt.wantSeq)
		})
	}
}

func testGDBLoad(t *testing.T, gdb, objcopy string, size int, wantSeq []string) {
	// Random bytes at 0x10000, including every byte RSP must escape.
	dir := t.TempDir()
	blob := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range blob {
		blob[i] = byte(rng.UintN(256))
	}
	copy(blob, "#$}*")
	bin, elf := filepath.Join(dir, "blob.bin"), filepath.Join(dir, "blob.elf")
	if err := os.WriteFile(bin, blob, 0o644); err != nil {
		t.Fatal(err)
	}
	// "contents" matters: without it objcopy keeps the section but zeroes
	// its bytes.
	cmd := exec.Command(objcopy, "-I", "binary", "-O", "elf32-littlearm", "-B", "arm",
		"--rename-section", ".data=.text,contents,alloc,load,readonly,code",
		"--change-section-address", ".data=0x10000", "blob.bin", "blob.elf")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}

	f := newFakeTarget()
	withVectors(f, 0x20004000, 0x00010001)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: l}
	addr := serveOn(t, f, rl)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	out, err := exec.CommandContext(ctx, gdb, "-nx", "-batch",
		"-ex", "set confirm off",
		"-ex", "target remote "+addr,
		"-ex", "load",
		"-ex", "compare-sections",
		"-ex", "monitor reset halt",
		"-ex", "maintenance flush register-cache",
		"-ex", "printf \"sp=%#x pc=%#x\\n\", $sp, $pc",
		"-ex", "monitor reset",
		"-ex", "monitor frobnicate",
		"-ex", "detach",
		elf).CombinedOutput()
	elapsed := time.Since(start)
	t.Logf("gdb-multiarch took %v; output:\n%s", elapsed, out)
	if err != nil {
		t.Fatalf("gdb-multiarch: %v", err)
	}
	text := string(out)
	for _, want := range []string{
		fmt.Sprintf("Loading section .text, size %#x lma 0x10000", size),
		fmt.Sprintf("Section .text, range 0x10000 -- %#x: matched.", 0x10000+size),
		"target reset and halted",
		"sp=0x20004000 pc=0x10000",
		"target reset\n",
		"unknown monitor command \"frobnicate\"",
		"Protocol error with Rcmd",
		"detached",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("gdb output lacks %q", want)
		}
	}
	if strings.Contains(text, "MIS-MATCHED") {
		t.Errorf("compare-sections found a mismatch")
	}
	if got := f.flashBytes(0x10000, len(blob)); !bytes.Equal(got, blob) {
		t.Errorf("flash at 0x10000 does not hold the ELF's bytes")
	}
	if _, resets, _ := f.snapshot(); fmt.Sprint(resets) != "[true false]" {
		t.Errorf("resets = %v, want [true false]", resets)
	}

	// The vFlash sequence: one erase of the covering blocks, writes in
	// order that together are the section, then done.
	var seq []string
	var written []byte
	next := uint32(0x10000)
	for _, p := range rl.packets(t) {
		switch {
		case strings.HasPrefix(p, "vFlashWrite:"):
			a, data, _ := strings.Cut(p[len("vFlashWrite:"):], ":")
			if a != fmt.Sprintf("%x", next) {
				t.Errorf("vFlashWrite at %s, want %x", a, next)
			}
			raw, err := rsp.DecodeBinary([]byte(data))
			if err != nil {
				t.Fatal(err)
			}
			written = append(written, raw...)
			next += uint32(len(raw))
			seq = append(seq, fmt.Sprintf("vFlashWrite:%s:<%d>", a, len(raw)))
		case strings.HasPrefix(p, "vFlash"), strings.HasPrefix(p, "qCRC"), strings.HasPrefix(p, "qRcmd"):
			seq = append(seq, p)
		}
	}
	t.Logf("vFlash sequence: %q", seq)
	want := slices.Concat(wantSeq, []string{"qRcmd," + hexs("reset halt"), "qRcmd," + hexs("reset"), "qRcmd," + hexs("frobnicate")})
	if fmt.Sprint(seq) != fmt.Sprint(want) {
		t.Errorf("packet sequence\n got %q\nwant %q", seq, want)
	}
	if !bytes.Equal(written, blob) {
		t.Errorf("vFlashWrite data (%d bytes) differs from the section", len(written))
	}
}
