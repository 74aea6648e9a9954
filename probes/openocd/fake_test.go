package openocd_test

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	wrapPrefix = "set fudbench_rc [catch {"
	wrapSuffix = "} fudbench_msg]; list $fudbench_rc $fudbench_msg"
)

// fakeServer speaks OpenOCD's Tcl RPC framing for the success paths and
// failure modes the real server cannot show without a target: it unwraps
// each command and lets the test's handler answer.
type fakeServer struct {
	t    *testing.T
	ln   net.Listener
	addr string
	// handle answers one command on c; it runs on the connection's
	// goroutine.
	handle func(c *fakeConn, cmd string)

	mu    sync.Mutex
	cmds  []string
	conns int
}

// fakeConn is one client connection of the fake.
type fakeConn struct {
	nc net.Conn
}

// reply writes a wrapped command's reply.
func (c *fakeConn) reply(code int, msg string) {
	c.raw(fmt.Sprintf("%d %s\x1a", code, quoteTcl(msg)))
}

// raw writes bytes as they are.
func (c *fakeConn) raw(s string) { c.nc.Write([]byte(s)) }

// notify writes an OpenOCD notification frame.
func (c *fakeConn) notify(s string) { c.raw(s + "\r\n\x1a") }

func (c *fakeConn) close() { c.nc.Close() }

// quoteTcl quotes a message as Jim Tcl's list does, independently of the
// client's quoting: braces when they balance and no backslash is in the
// way, otherwise backslashes.
func quoteTcl(s string) string {
	if s == "" {
		return "{}"
	}
	if !strings.ContainsAny(s, " \t\n{}\\\"$[];") {
		return s
	}
	depth, ok := 0, !strings.Contains(s, `\`)
	for _, r := range s {
		switch r {
		case '{':
			depth++
		case '}':
			depth--
			ok = ok && depth >= 0
		}
	}
	if ok && depth == 0 {
		return "{" + s + "}"
	}
	r := strings.NewReplacer(" ", `\ `, "{", `\{`, "}", `\}`, `\`, `\\`, "\n", `\n`, "\t", `\t`, `"`, `\"`, "$", `\$`, "[", `\[`, "]", `\]`, ";", `\;`)
	return r.Replace(s)
}

func startFake(t *testing.T, handle func(c *fakeConn, cmd string)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{t: t, ln: ln, addr: ln.Addr().String(), handle: handle}
	done := make(chan struct{})
	var live sync.Map
	t.Cleanup(func() {
		ln.Close()
		live.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
		<-done
	})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			live.Store(nc, true)
			wg.Go(func() {
				defer nc.Close()
				defer live.Delete(nc)
				f.serve(&fakeConn{nc: nc})
			})
		}
	}()
	return f
}

func (f *fakeServer) serve(c *fakeConn) {
	r := bufio.NewReader(c.nc)
	for {
		frame, err := r.ReadString(0x1a)
		if err != nil {
			return
		}
		frame = strings.TrimSuffix(frame, "\x1a")
		cmd, ok := strings.CutPrefix(frame, wrapPrefix)
		if ok {
			cmd, ok = strings.CutSuffix(cmd, wrapSuffix)
		}
		if !ok {
			f.t.Errorf("fake: command not wrapped: %q", frame)
			c.raw("invalid command name \"x\"\x1a")
			continue
		}
		f.mu.Lock()
		f.cmds = append(f.cmds, cmd)
		f.mu.Unlock()
		f.handle(c, cmd)
	}
}

// commands returns the unwrapped commands received so far.
func (f *fakeServer) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func (f *fakeServer) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// slowly writes s in pieces of n bytes with a pause between them.
func (c *fakeConn) slowly(s string, n int) {
	for len(s) > 0 {
		k := min(n, len(s))
		c.raw(s[:k])
		s = s[k:]
		time.Sleep(2 * time.Millisecond)
	}
}
