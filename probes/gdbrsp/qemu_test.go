package gdbrsp_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/probes/gdbrsp"
)

// needProgram skips the test when an external program is missing. Under
// CI=true a missing program fails the test when the peer is required there.
func needProgram(t *testing.T, name, pkg string, requiredInCI bool) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if requiredInCI && os.Getenv("CI") == "true" {
		t.Fatalf("%s is required under CI=true (Debian package %s): %v", name, pkg, err)
	}
	t.Skipf("%s not installed (Debian package %s): %v", name, pkg, err)
	return ""
}

// The firmware prints a banner on UART0 of the LM3S6965 and spins.
const firmwareC = `
#define UART0_DR (*(volatile unsigned int *)0x4000C000)
void reset(void) {
	const char *s = "fudbench-fw 1.0 up\n";
	while (*s) UART0_DR = *s++;
	for (;;) {}
}
__attribute__((section(".vectors"), used))
const void *vectors[] = { (void *)0x20010000, (void *)reset };
`

const firmwareLD = `
ENTRY(reset)
SECTIONS {
	. = 0;
	.text : { KEEP(*(.vectors)) *(.text*) *(.rodata*) }
}
`

// buildFirmware compiles the banner firmware into a flat binary at 0.
func buildFirmware(t *testing.T, dir string) []byte {
	t.Helper()
	gcc := needProgram(t, "arm-none-eabi-gcc", "gcc-arm-none-eabi", true)
	objcopy := needProgram(t, "arm-none-eabi-objcopy", "binutils-arm-none-eabi", true)
	for name, text := range map[string]string{"fw.c": firmwareC, "fw.ld": firmwareLD} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(argv ...string) {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	run(gcc, "-mcpu=cortex-m3", "-mthumb", "-Os", "-nostdlib", "-ffreestanding", "-T", "fw.ld", "-o", "fw.elf", "fw.c")
	run(objcopy, "-O", "binary", "fw.elf", "fw.bin")
	bin, err := os.ReadFile(filepath.Join(dir, "fw.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(bin) < 8 {
		t.Fatalf("firmware of %d bytes", len(bin))
	}
	return bin
}

// TestQEMU flashes firmware into QEMU's Cortex-M gdbstub, which has no
// memory map, no vFlash, no X and no qCRC: the client falls back to M and
// reads back. It then resets with QEMU's system_reset, detaches so the core
// runs, and reads the firmware's banner from the emulated UART.
func TestQEMU(t *testing.T) {
	qemu := needProgram(t, "qemu-system-arm", "qemu-system-arm", true)
	dir := t.TempDir()
	fw := buildFirmware(t, dir)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	serial := filepath.Join(dir, "uart.txt")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-M", "lm3s6965evb", "-S", "-gdb", "tcp:127.0.0.1:"+strconv.Itoa(port),
		"-nographic", "-monitor", "none", "-serial", "file:"+serial)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("qemu stderr: %s", stderr.String())
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			// QEMU serves one client; this probe connection ends at once.
			c.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("qemu's gdb port never opened: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	var log bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	defer func() { t.Logf("probe log:\n%s", log.String()) }()
	p, err := gdbrsp.New(gdbrsp.Config{Address: addr, Reset: "system_reset", Timeout: 5 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	regions, err := p.MemoryMap(ctx)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	if len(regions) != 0 {
		t.Logf("qemu now serves a memory map: %v", regions)
	}
	start := time.Now()
	if err := p.Flash(ctx, 0, fw, nil); err != nil {
		t.Fatalf("Flash: %v", err)
	}
	t.Logf("flashed %d bytes into qemu in %v", len(fw), time.Since(start))
	back := make([]byte, len(fw))
	if err := p.Read(ctx, 0, back); err != nil || !bytes.Equal(back, fw) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(back, fw))
	}
	if err := p.Reset(ctx); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for {
		out, _ := os.ReadFile(serial)
		if bytes.Contains(out, []byte("fudbench-fw 1.0 up")) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no banner on the UART; got %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
