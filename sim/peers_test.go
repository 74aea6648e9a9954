package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/fwproto"
)

// Interop with programs someone else wrote: libcoap's coap-client (CoAP over
// UDP and DTLS-PSK, Block1 uploads) and gdb-multiarch (load and verify over
// the probe port). A board that only talks to our own client proves little.

// debianPackage names the package that provides each external program, for
// skip and failure messages.
var debianPackage = map[string]string{
	"coap-client-notls":     "libcoap3-bin",
	"coap-client-openssl":   "libcoap3-bin",
	"gdb-multiarch":         "gdb-multiarch",
	"arm-none-eabi-objcopy": "binutils-arm-none-eabi",
}

// needTool returns the path of an external program. When it is missing the
// test is skipped, except under CI=true, where a missing peer is a failure.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	pkg := debianPackage[name]
	if pkg == "" {
		pkg = "unknown"
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (Debian package %s): %v", name, pkg, err)
	}
	t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	return ""
}

// coapClient runs one libcoap coap-client and returns what it wrote to its
// output file (-o), which is where the CBOR reply lands byte for byte.
func coapClient(t *testing.T, prog string, args ...string) ([]byte, error) {
	t.Helper()
	path := needTool(t, prog)
	out := filepath.Join(t.TempDir(), "reply.cbor")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// -B bounds libcoap's own wait, so a silent board fails fast.
	cmd := exec.CommandContext(ctx, path, append([]string{"-B", "5", "-o", out}, args...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s %q: %w\n%s", prog, args, err, stderr.Bytes())
	}
	b, err := os.ReadFile(out)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return b, nil
}

func TestNeedToolSkipsWhenMissing(t *testing.T) {
	t.Setenv("CI", "")
	var skipped bool
	t.Run("missing", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		needTool(t, "fudbench-no-such-program")
	})
	if !skipped {
		t.Fatal("a missing program did not skip the test")
	}
	if p := needTool(t, "sh"); !filepath.IsAbs(p) {
		t.Errorf("needTool(sh) = %q, want an absolute path", p)
	}
}

func pskArgs(b *Board) []string {
	return []string{"-k", string(b.Config().PSK), "-u", b.Config().PSKIdentity}
}

// haveIPv6 reports whether this host can bind UDP on [::1].
func haveIPv6() bool {
	c, err := net.ListenPacket("udp", "[::1]:0")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestCoapClientReadsBoot(t *testing.T) {
	addrs := []string{"127.0.0.1:0", "[::1]:0"}
	ipv6 := haveIPv6()
	if !ipv6 {
		addrs = addrs[:1]
	}
	b := newBoard(t, Config{UDPAddrs: addrs, DTLSAddr: "127.0.0.1:0"}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	udp, dtls := b.Endpoints()
	if len(udp) != len(addrs) || dtls == "" {
		t.Fatalf("endpoints %v %q", udp, dtls)
	}
	if !ipv6 {
		udp = append(udp, "")
	}
	tests := []struct {
		name string
		prog string
		args []string
		uri  string
	}{
		{"udp4", "coap-client-notls", nil, "coap://" + udp[0] + "/boot"},
		{"udp6", "coap-client-notls", nil, "coap://" + udp[1] + "/boot"},
		{"dtls-psk", "coap-client-openssl", pskArgs(b), "coaps://" + dtls + "/boot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "udp6" {
				if !ipv6 && os.Getenv("CI") != "true" {
					t.Skip("no IPv6 loopback on this host")
				}
				if !strings.HasPrefix(udp[1], "[::1]:") {
					t.Fatalf("IPv6 endpoint %q", udp[1])
				}
			}
			out, err := coapClient(t, tt.prog, append(tt.args, "-m", "get", tt.uri)...)
			if err != nil {
				t.Fatal(err)
			}
			boot, err := fwproto.DecodeBoot(out)
			if err != nil {
				t.Fatalf("reply % x: %v", out, err)
			}
			want := fwproto.Boot{Mode: ModeApp, Boots: 1, ResetCause: fwproto.ResetPower, Version: "1.0.0"}
			if boot != want {
				t.Errorf("boot report %+v, want %+v", boot, want)
			}
		})
	}
	t.Run("dtls-wrong-key", func(t *testing.T) {
		// The later -B wins: a refused handshake need not wait 5 s.
		args := []string{"-B", "1", "-k", "not-the-key", "-u", b.Config().PSKIdentity, "-m", "get", "coaps://" + dtls + "/boot"}
		out, err := coapClient(t, "coap-client-openssl", args...)
		if len(out) > 0 {
			t.Fatalf("board answered a client with the wrong key: % x", out)
		}
		t.Logf("wrong key: no reply (coap-client exit: %v)", err)
	})
}

// TestCoapClientBlock1Upload has libcoap upload an image with RFC 7959
// Block1 to a naive-inplace board, which writes it over itself and boots it.
func TestCoapClientBlock1Upload(t *testing.T) {
	base := buildImage(t, "1.0.0", 1, 4<<10, 1)
	b := newBoard(t, Config{Strategy: NaiveInplace, DTLSAddr: "127.0.0.1:0"}, base)
	udp, dtls := b.Endpoints()
	tests := []struct {
		name  string
		prog  string
		args  []string
		uri   string
		block int
		img   []byte
	}{
		{"udp-1024", "coap-client-notls", nil, "coap://" + udp[0] + "/fw", 1024, buildImage(t, "2.0.0", 2, 20<<10+123, 2)},
		{"udp-64", "coap-client-notls", nil, "coap://" + udp[0] + "/fw", 64, buildImage(t, "2.1.0", 2, 3<<10+5, 3)},
		{"dtls-1024", "coap-client-openssl", pskArgs(b), "coaps://" + dtls + "/fw", 1024, buildImage(t, "3.0.0", 3, 24<<10+7, 4)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			needTool(t, tt.prog)
			file := filepath.Join(t.TempDir(), "fw.img")
			if err := os.WriteFile(file, tt.img, 0o600); err != nil {
				t.Fatal(err)
			}
			boots := b.Boots()
			args := append(tt.args, "-m", "put", "-b", fmt.Sprint(tt.block), "-f", file, tt.uri)
			if _, err := coapClient(t, tt.prog, args...); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
				t.Fatalf("after upload: mode %s, %v", m, err)
			}
			if got, want := runningDigest(t, b), sha256.Sum256(tt.img); got != want {
				t.Fatalf("running digest %x, want the file's %x", got, want)
			}
		})
	}
}

// TestGDBLoadIntoAppSlot has gdb-multiarch load an ELF holding a signed
// image into the board's app slot over the probe port, verify it with
// compare-sections and reset the board, which then boots it.
func TestGDBLoadIntoAppSlot(t *testing.T) {
	gdb := needTool(t, "gdb-multiarch")
	objcopy := needTool(t, "arm-none-eabi-objcopy")
	const flashBase = 0x08000000
	b := newBoard(t, Config{GDBAddr: "127.0.0.1:0", FlashBase: flashBase}, buildImage(t, "1.0.0", 1, 4<<10, 1))
	// An odd length exercises the probe's padding of a partial write unit.
	img := buildImage(t, "2.0.0", 2, 24<<10+3, 9)
	addr := flashBase + uint32(b.Layout().AppStart)

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "img.bin"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	// "contents" matters: without it objcopy keeps the section but zeroes
	// its bytes.
	cmd := exec.Command(objcopy, "-I", "binary", "-O", "elf32-littlearm", "-B", "arm",
		"--rename-section", ".data=.text,contents,alloc,load,readonly,code",
		"--change-section-address", fmt.Sprintf(".data=%#x", addr), "img.bin", "img.elf")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}

	boots := b.Boots()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, gdb, "-nx", "-batch",
		"-ex", "set confirm off",
		"-ex", "target remote "+b.GDBAddr(),
		"-ex", "load",
		"-ex", "compare-sections",
		"-ex", "monitor reset",
		"-ex", "detach",
		filepath.Join(dir, "img.elf")).CombinedOutput()
	t.Logf("gdb-multiarch output:\n%s", out)
	if err != nil {
		t.Fatalf("gdb-multiarch: %v", err)
	}
	text := string(out)
	for _, want := range []string{
		fmt.Sprintf("Loading section .text, size %#x lma %#x", len(img), addr),
		fmt.Sprintf("Section .text, range %#x -- %#x: matched.", addr, addr+uint32(len(img))),
	} {
		if !strings.Contains(text, want) {
			t.Errorf("gdb output lacks %q", want)
		}
	}
	if strings.Contains(text, "MIS-MATCHED") {
		t.Error("compare-sections found a mismatch")
	}
	if m, err := b.WaitBoot(ctx, boots); err != nil || m != ModeApp {
		t.Fatalf("after monitor reset: mode %s, %v", m, err)
	}
	if got, want := runningDigest(t, b), sha256.Sum256(img); got != want {
		t.Fatalf("running digest %x, want the loaded image's %x", got, want)
	}
	got := make([]byte, len(img))
	if err := b.Flash().Read(b.Layout().AppStart, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Error("app slot does not hold the ELF's bytes")
	}
}
