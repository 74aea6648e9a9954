package gdbstub

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/fudbench/fudbench/internal/rsp"
)

const monitorHelp = "monitor commands: reset [run|halt|init], system_reset, halt, help\n"

func (s *Server) monitor(cmd string) reply {
	s.log.Debug("monitor", "cmd", cmd)
	words := strings.Fields(strings.ToLower(cmd))
	if len(words) > 0 && words[0] == "monitor" {
		words = words[1:]
	}
	line := strings.Join(words, " ")
	var halt bool
	switch line {
	case "reset", "reset run", "system_reset":
	case "reset halt", "reset init":
		halt = true
	case "halt":
		return reply{consoleOutput("target halted\n"), []byte("OK")}
	case "help":
		return reply{consoleOutput(monitorHelp), []byte("OK")}
	default:
		return append(reply{consoleOutput(fmt.Sprintf("unknown monitor command %q\n%s", cmd, monitorHelp))},
			s.fail("E04", "qRcmd", fmt.Errorf("unknown monitor command %q", cmd))...)
	}
	if err := s.t.Reset(halt); err != nil {
		return append(reply{consoleOutput(fmt.Sprintf("reset failed: %v\n", err))}, s.fail("E03", "reset", err)...)
	}
	s.loadRegsLocked()
	msg := "target reset\n"
	if halt {
		msg = "target reset and halted\n"
	}
	return reply{consoleOutput(msg), []byte("OK")}
}

// consoleOutput is an O-packet: text for GDB's console, hex-encoded.
func consoleOutput(text string) []byte {
	return rsp.AppendHex([]byte{'O'}, []byte(text))
}

// loadRegsLocked puts the register file in its reset state: sp and pc from the
// vector table at the start of the lowest flash region, as a Cortex-M does.
func (s *Server) loadRegsLocked() {
	s.regs = [numRegs]uint32{}
	s.regs[regLR] = 0xffffffff
	s.regsLoaded = true
	var base *Region
	for _, r := range s.t.MemoryMap() {
		if r.Kind == KindFlash && (base == nil || r.Start < base.Start) {
			base = &r
		}
	}
	if base == nil {
		return
	}
	var vt [8]byte
	if err := s.t.ReadMemory(base.Start, vt[:]); err != nil {
		s.log.Info("vector table unreadable", "addr", base.Start, "err", err)
		return
	}
	s.regs[regSP] = binary.LittleEndian.Uint32(vt[0:])
	pc := binary.LittleEndian.Uint32(vt[4:])
	s.regs[regPC] = pc &^ 1
	s.regs[regXPSR] = (pc & 1) << 24 // the Thumb bit comes from the vector
}
