package gdbstub

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Layout of fakeTarget: a small MCU with uniform 4 KiB flash blocks.
const (
	flashBase  = 0x00000000
	flashSize  = 512 << 10
	flashBlock = 4 << 10
	ramBase    = 0x20000000
	ramSize    = 64 << 10
)

var errFake = errors.New("fake target failure")

// fakeTarget is an in-memory Target: flash and RAM as byte arrays, erased
// value 0xFF, no NOR rules. It records every flash and reset operation.
type fakeTarget struct {
	mu    sync.Mutex
	flash []byte
	ram   []byte
	// ops records flash and reset operations in order.
	ops []string
	// resets records the halt argument of each Reset.
	resets []bool
	// resumes counts Resume calls.
	resumes int
	// fail makes every memory, flash and reset operation fail.
	fail bool
}

var (
	_ Target  = (*fakeTarget)(nil)
	_ Resumer = (*fakeTarget)(nil)
)

func newFakeTarget() *fakeTarget {
	f := &fakeTarget{flash: make([]byte, flashSize), ram: make([]byte, ramSize)}
	for i := range f.flash {
		f.flash[i] = 0xff
	}
	return f
}

func (f *fakeTarget) MemoryMap() []Region {
	return []Region{
		{Kind: KindFlash, Start: flashBase, Length: flashSize, BlockSize: flashBlock},
		{Kind: KindRAM, Start: ramBase, Length: ramSize},
	}
}

// span returns the backing slice for [addr, addr+n) and whether it is flash.
func (f *fakeTarget) span(addr uint32, n int) ([]byte, bool, error) {
	a, end := uint64(addr), uint64(addr)+uint64(n)
	switch {
	case a >= flashBase && end <= flashBase+flashSize:
		return f.flash[a-flashBase : end-flashBase], true, nil
	case a >= ramBase && end <= ramBase+ramSize:
		return f.ram[a-ramBase : end-ramBase], false, nil
	}
	return nil, false, fmt.Errorf("0x%x+0x%x unmapped", addr, n)
}

func (f *fakeTarget) ReadMemory(addr uint32, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errFake
	}
	b, _, err := f.span(addr, len(p))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

func (f *fakeTarget) WriteMemory(addr uint32, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return errFake
	}
	b, isFlash, err := f.span(addr, len(p))
	if err != nil {
		return err
	}
	if isFlash {
		return fmt.Errorf("plain write to flash at 0x%x", addr)
	}
	copy(b, p)
	return nil
}

func (f *fakeTarget) FlashErase(addr, length uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, fmt.Sprintf("erase 0x%x,0x%x", addr, length))
	if f.fail {
		return errFake
	}
	if addr%flashBlock != 0 || length%flashBlock != 0 {
		return fmt.Errorf("erase 0x%x+0x%x not block aligned", addr, length)
	}
	b, isFlash, err := f.span(addr, int(length))
	if err != nil || !isFlash {
		return fmt.Errorf("erase 0x%x+0x%x not in flash", addr, length)
	}
	for i := range b {
		b[i] = 0xff
	}
	return nil
}

func (f *fakeTarget) FlashWrite(addr uint32, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, fmt.Sprintf("write 0x%x,0x%x", addr, len(p)))
	if f.fail {
		return errFake
	}
	b, isFlash, err := f.span(addr, len(p))
	if err != nil || !isFlash {
		return fmt.Errorf("write 0x%x+0x%x not in flash", addr, len(p))
	}
	copy(b, p)
	return nil
}

func (f *fakeTarget) FlashDone() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, "done")
	if f.fail {
		return errFake
	}
	return nil
}

func (f *fakeTarget) Reset(halt bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ops = append(f.ops, fmt.Sprintf("reset halt=%v", halt))
	if f.fail {
		return errFake
	}
	f.resets = append(f.resets, halt)
	return nil
}

func (f *fakeTarget) Resume() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resumes++
	return nil
}

func (f *fakeTarget) setFail(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = v
}

func (f *fakeTarget) snapshot() (ops []string, resets []bool, resumes int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.ops...), append([]bool(nil), f.resets...), f.resumes
}

func (f *fakeTarget) flashBytes(addr uint32, n int) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.flash[addr-flashBase:int(addr-flashBase)+n]...)
}

// needTool returns the path of an external program, skipping the test when
// it is missing — except under CI=true, where it must be installed.
func needTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found (Debian package %s) and CI=true: %v", name, pkg, err)
	}
	t.Skipf("%s not found (install Debian package %s): %v", name, pkg, err)
	return ""
}
