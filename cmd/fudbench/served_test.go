package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// servedSim is a `fudbench sim` process serving the sim: boards of a
// bench file on ephemeral ports, and the bench file it wrote for the
// other commands.
type servedSim struct {
	cmd     *exec.Cmd
	bench   string // the written bench file, with the real addresses
	control string // http://127.0.0.1:PORT
	out     []string
	stopped bool
}

// serveSim starts `fudbench sim --bench` on simBench (whose addresses use
// port 0, so a user's running sim or OpenOCD never collides) and waits
// until it has written its bench file. extra are further flags.
func serveSim(t *testing.T, simBench string, extra ...string) *servedSim {
	t.Helper()
	dir := t.TempDir()
	src := runWrite(t, filepath.Join(dir, "sim.yaml"), simBench)
	s := &servedSim{bench: filepath.Join(dir, "served.yaml")}
	args := append([]string{"sim", "--bench", src, "--state-dir", filepath.Join(dir, "state"),
		"--control", "127.0.0.1:0", "--write-bench", s.bench}, extra...)
	s.cmd = exec.Command(binary, args...)
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = os.Stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.stop(t) })
	sc := bufio.NewScanner(stdout)
	control := regexp.MustCompile(`^control endpoint: (http://\S+)/boards$`)
	done := make(chan bool, 1)
	go func() {
		for sc.Scan() {
			l := sc.Text()
			s.out = append(s.out, l)
			if m := control.FindStringSubmatch(l); m != nil {
				s.control = m[1]
			}
			if strings.HasPrefix(l, "bench file: ") {
				done <- true
				io.Copy(io.Discard, stdout)
				return
			}
		}
		done <- false
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Fatalf("fudbench sim ended before writing its bench file:\n%s", strings.Join(s.out, "\n"))
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("fudbench sim wrote no bench file in 60 s:\n%s", strings.Join(s.out, "\n"))
	}
	return s
}

// stop ends the sim with Ctrl-C and waits for it.
func (s *servedSim) stop(t *testing.T) {
	if s.stopped {
		return
	}
	s.stopped = true
	s.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sim exit after Ctrl-C: %v", err)
		}
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		t.Error("sim did not stop within 10 s of Ctrl-C")
	}
}

// simSection is a sim: section on ephemeral loopback ports.
func simSection(strategy string, extra string) string {
	return `    sim:
      strategy: ` + strategy + `
      coap: ["127.0.0.1:0"]
      coaps: "127.0.0.1:0"
      gdb: "127.0.0.1:0"
` + extra
}
