package openocd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/fudbench/fudbench/probes"
)

// Flash writes data to a temporary file and has OpenOCD program it at
// addr with verify. The target is left halted; call Reset to run it.
func (p *Probe) Flash(ctx context.Context, addr uint32, data []byte, progress func(done, total int)) error {
	op := fmt.Sprintf("program at 0x%08x", addr)
	if err := p.checkRange("program", addr, len(data)); err != nil {
		return err
	}
	if len(data) == 0 {
		return nil
	}
	if kind := misdetected(data); kind != "" {
		return fmt.Errorf("%s: %s: the image starts like %s, and program would read it as one, not as a binary: %w", p, op, kind, probes.ErrProbe)
	}
	path, err := p.writeImage(data)
	if err != nil {
		return fmt.Errorf("%s: %s: %w: %w", p, op, probes.ErrProbe, err)
	}
	defer os.Remove(path)
	if progress != nil {
		progress(0, len(data))
	}
	// pathSafe keeps braces out of path, so braces quote it whole.
	cmd := fmt.Sprintf("program {%s} %s 0x%08x", path, strings.Join(p.program, " "), addr)
	start := time.Now()
	if err := p.run(ctx, op, cmd); err != nil {
		return err
	}
	if progress != nil {
		progress(len(data), len(data))
	}
	p.log.Info("flashed", "addr", fmt.Sprintf("0x%08x", addr), "bytes", len(data), "took", time.Since(start))
	return nil
}

// writeImage writes data to a new *.bin file that OpenOCD can read.
func (p *Probe) writeImage(data []byte) (string, error) {
	f, err := os.CreateTemp(p.cfg.TempDir, "fudbench-openocd-*.bin")
	if err != nil {
		return "", fmt.Errorf("image file: %w", err)
	}
	path := f.Name()
	if err := pathSafe(path); err != nil {
		f.Close()
		os.Remove(path)
		return "", fmt.Errorf("image file: %w (set temp_dir)", err)
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(path)
		return "", fmt.Errorf("image file %s: %w", path, err)
	}
	return path, nil
}

// misdetected names the format OpenOCD's image loader would take data
// for, from the signatures it checks in the first 9 bytes; "" is binary.
func misdetected(data []byte) string {
	if len(data) < 9 {
		return ""
	}
	hexAt := func(is ...int) bool {
		for _, i := range is {
			if !isHex(data[i]) {
				return false
			}
		}
		return true
	}
	switch {
	case bytes.HasPrefix(data, []byte("\x7fELF")):
		return "an ELF file"
	case data[0] == ':' && hexAt(1, 2, 3, 4, 5, 6) && data[7] == '0' && data[8] >= '0' && data[8] < '6':
		return "an Intel HEX file"
	case data[0] == 'S' && hexAt(1, 2, 3) && data[1] >= '0' && data[1] < '9':
		return "an S-record file"
	}
	return ""
}
