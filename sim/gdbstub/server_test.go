package gdbstub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/internal/rsp"
)

// startServer serves f on a loopback port until the test ends.
func startServer(t *testing.T, f *fakeTarget) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, f, l)
}

func serveOn(t *testing.T, f *fakeTarget, l net.Listener) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := New(f, Options{Logger: log, Name: "sim0"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Serve returned %v, want context.Canceled", err)
		}
	})
	return l.Addr().String()
}

// testWriter sends log lines to t.Log so they show only on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// client is a minimal hand-written RSP client.
type client struct {
	t     *testing.T
	c     net.Conn
	r     *bufio.Reader
	noAck bool
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *client) raw(s string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(s)); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *client) expectByte(want byte) {
	c.t.Helper()
	b, err := c.r.ReadByte()
	if err != nil || b != want {
		c.t.Fatalf("read %q, %v; want %q", b, err, want)
	}
}

// reply reads one reply packet and acknowledges it.
func (c *client) reply() string {
	c.t.Helper()
	p, err := rsp.ReadPacket(c.r, MaxPacket)
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	if !c.noAck {
		c.raw("+")
	}
	return string(p)
}

// send sends one packet and waits for its acknowledgement.
func (c *client) send(data string) {
	c.t.Helper()
	c.raw(string(rsp.AppendPacket(nil, []byte(data))))
	if !c.noAck {
		c.expectByte('+')
	}
}

// cmd sends one packet and returns the reply.
func (c *client) cmd(data string) string {
	c.t.Helper()
	c.send(data)
	return c.reply()
}

// expectClosed checks that the server hung up.
func (c *client) expectClosed() {
	c.t.Helper()
	if b, err := c.r.ReadByte(); !errors.Is(err, io.EOF) {
		c.t.Fatalf("read %q, %v; want EOF", b, err)
	}
}

func hexs(s string) string { return hex.EncodeToString([]byte(s)) }

// withVectors puts a vector table (sp, reset handler) at the start of flash.
func withVectors(f *fakeTarget, sp, pc uint32) {
	binary.LittleEndian.PutUint32(f.flash[0:], sp)
	binary.LittleEndian.PutUint32(f.flash[4:], pc)
}

func TestRequests(t *testing.T) {
	f := newFakeTarget()
	withVectors(f, 0x20008000, 0x00000101)
	copy(f.ram[0x100:], "123456789")
	c := dial(t, startServer(t, f))

	// Requests answered the same way whatever the order; each row runs on
	// the same connection.
	tests := []struct {
		name, req, want string
	}{
		{"qSupported", "qSupported:multiprocess+;swbreak+;xmlRegisters=i386", "PacketSize=4000;qXfer:memory-map:read+;qXfer:features:read+;QStartNoAckMode+"},
		{"halt reason", "?", "S05"},
		{"attached", "qAttached", "1"},
		{"current thread", "qC", "QC1"},
		{"thread list", "qfThreadInfo", "m1"},
		{"thread list end", "qsThreadInfo", "l"},
		{"set thread", "Hg0", "OK"},
		{"unknown q", "qTStatus", ""},
		{"offsets", "qOffsets", ""},
		{"must reply empty", "vMustReplyEmpty", ""},
		{"unknown packet", "Z0,100,2", ""},
		{"empty packet", "", ""},
		{"registers at reset", "g", regsHex(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20008000, 0xffffffff, 0x100, 0x01000000)},
		{"read sp", "pd", "00800020"},
		{"read xpsr", "p10", "00000001"},
		{"read bad register", "p11", "E02"},
		{"write r0", "P0=78563412", "OK"},
		{"read r0", "p0", "78563412"},
		{"write bad register", "P20=00000000", "E02"},
		{"write malformed register", "P0=123", "E01"},
		{"write all registers", "G" + regsHex(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17), "OK"},
		{"read all back", "g", regsHex(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17)},
		{"G too long", "G" + strings.Repeat("00", 4*18), "E01"},
		{"read flash", "m0,8", "0080002001010000"},
		{"read ram", "m20000100,9", hexs("123456789")},
		{"read malformed", "m20000100", "E01"},
		{"read past 4 GiB", "mffffffff,2", "E01"},
		{"read unmapped", "m10000000,4", "E03"},
		{"write ram", "M20000200,3:616263", "OK"},
		{"read it back", "m20000200,3", "616263"},
		{"write length mismatch", "M20000200,4:616263", "E01"},
		{"write flash refused", "M0,1:00", "E03"},
		{"X probe", "X0,0:", "OK"},
		{"X escaped specials", "X20000300,5:}\x03}\x04}]}\x0a\x00", "OK"},
		{"X read back", "m20000300,5", hexs("#$}*\x00")},
		{"X trailing escape", "X20000300,1:}", "E01"},
		{"crc of check string", "qCRC:20000100,9", "C0376e6e7"},
		{"crc unmapped", "qCRC:10000000,4", "E03"},
		{"crc malformed", "qCRC:20000100", "E01"},
		{"xfer unknown annex", "qXfer:features:read:other.xml:0,100", "E00"},
		{"xfer unknown object", "qXfer:threads:read::0,100", ""},
		{"xfer past end", "qXfer:features:read:target.xml:ffff,100", "l"},
		{"erase outside flash", "vFlashErase:20000000,1000", "E02"},
		{"erase across flash end", "vFlashErase:0007f000,2000", "E02"},
		{"erase unaligned refused by target", "vFlashErase:00000010,10", "E03"},
		{"flash write to ram", "vFlashWrite:20000000:abc", "E.memtype"},
		{"flash write malformed", "vFlashWrite:zz:abc", "E01"},
		{"step", "s", "S05"},
		{"monitor unknown", "qRcmd," + hexs("frobnicate"), "O" + hexs("unknown monitor command \"frobnicate\"\n"+monitorHelp)},
		{"monitor unknown status", "", "E04"}, // second packet of the reply above
		{"monitor malformed", "qRcmd,zz", "E01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.t = t
			var got string
			if tt.name == "monitor unknown status" {
				got = c.reply()
			} else {
				got = c.cmd(tt.req)
			}
			if got != tt.want {
				t.Errorf("%q → %q, want %q", tt.req, got, tt.want)
			}
		})
	}
}

func regsHex(v ...uint32) string {
	var b []byte
	for _, r := range v {
		b = binary.LittleEndian.AppendUint32(b, r)
	}
	return hex.EncodeToString(b)
}

func TestChecksumErrorRetransmit(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	c.raw("$qC#00")
	c.expectByte('-')
	c.raw("$qC#b4")
	c.expectByte('+')
	if got := c.reply(); got != "QC1" {
		t.Fatalf("reply after retransmit = %q, want QC1", got)
	}
	// A '-' from the client makes the server send its reply again.
	c.send("?")
	if p, err := rsp.ReadPacket(c.r, MaxPacket); err != nil || string(p) != "S05" {
		t.Fatalf("first reply %q, %v", p, err)
	}
	c.raw("-")
	if got := c.reply(); got != "S05" {
		t.Fatalf("retransmitted reply = %q, want S05", got)
	}
	// Run-length encoding in a request is expanded.
	copy(f.ram[:4], "\x01\x02\x03\x04")
	c.raw("$m20*\"0,4#ab")
	c.expectByte('+')
	if got := c.reply(); got != "01020304" {
		t.Fatalf("run-length request reply = %q", got)
	}
}

func TestNoAckMode(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	if got := c.cmd("QStartNoAckMode"); got != "OK" {
		t.Fatalf("QStartNoAckMode → %q", got)
	}
	c.noAck = true
	// Without acks the next byte after a request is the reply itself.
	c.raw(string(rsp.AppendPacket(nil, []byte("qC"))))
	if b, _ := c.r.Peek(1); len(b) != 1 || b[0] != '$' {
		t.Fatalf("got %q before the reply, want '$'", b)
	}
	if got := c.reply(); got != "QC1" {
		t.Fatalf("qC → %q", got)
	}
	// A broken packet gets no '-' either: the next reply is to the next packet.
	c.raw("$qC#00")
	if got := c.cmd("?"); got != "S05" {
		t.Fatalf("? → %q", got)
	}
}

func TestFlashSequence(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	data := make([]byte, 0x1800)
	for i := range data {
		data[i] = byte(i*7 + i>>8)
	}
	copy(data, "#$}*") // escapes at the start of a write
	steps := []struct{ req, want string }{
		{"vFlashErase:00010000,00002000", "OK"},
		{"vFlashWrite:10000:" + string(rsp.AppendBinary(nil, data[:0x1000])), "OK"},
		{"vFlashWrite:11000:" + string(rsp.AppendBinary(nil, data[0x1000:])), "OK"},
		{"vFlashDone", "OK"},
		{fmt.Sprintf("qCRC:10000,%x", len(data)), fmt.Sprintf("C%08x", rsp.CRC32(0xffffffff, data))},
	}
	for _, s := range steps {
		if got := c.cmd(s.req); got != s.want {
			t.Fatalf("%.40q → %q, want %q", s.req, got, s.want)
		}
	}
	if got := f.flashBytes(0x10000, len(data)); !bytes.Equal(got, data) {
		t.Errorf("flash at 0x10000 does not hold the written data")
	}
	ops, _, _ := f.snapshot()
	want := []string{"erase 0x10000,0x2000", "write 0x10000,0x1000", "write 0x11000,0x800", "done"}
	if fmt.Sprint(ops) != fmt.Sprint(want) {
		t.Errorf("target ops = %q, want %q", ops, want)
	}
}

func TestTargetErrors(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	f.setFail(true)
	tests := []struct{ req, want string }{
		{"m20000000,4", "E03"},
		{"M20000000,1:00", "E03"},
		{"X20000000,1:a", "E03"},
		{"vFlashErase:00000000,00001000", "E03"},
		{"vFlashWrite:0:abc", "E03"},
		{"vFlashDone", "E03"},
		{"qCRC:0,10", "E03"},
	}
	for _, tt := range tests {
		if got := c.cmd(tt.req); got != tt.want {
			t.Errorf("%q → %q, want %q", tt.req, got, tt.want)
		}
	}
	// A failed reset says why on the console, then fails.
	if got := c.cmd("qRcmd," + hexs("reset")); got != "O"+hexs("reset failed: "+errFake.Error()+"\n") {
		t.Errorf("failed reset output = %q", got)
	}
	if got := c.reply(); got != "E03" {
		t.Errorf("failed reset status = %q, want E03", got)
	}
	// The connection still works afterwards.
	f.setFail(false)
	if got := c.cmd("m20000000,2"); got != "0000" {
		t.Errorf("read after errors = %q", got)
	}
}

func TestMonitorReset(t *testing.T) {
	tests := []struct {
		cmd      string
		wantHalt bool
		wantText string
	}{
		{"reset", false, "target reset\n"},
		{"reset run", false, "target reset\n"},
		{"system_reset", false, "target reset\n"},
		{"monitor reset", false, "target reset\n"},
		{"RESET HALT", true, "target reset and halted\n"},
		{"reset init", true, "target reset and halted\n"},
		{"monitor reset halt", true, "target reset and halted\n"},
	}
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	for i, tt := range tests {
		// Each reset reloads sp and pc from the vector table.
		f.mu.Lock()
		withVectors(f, 0x20001000+uint32(i)*16, 0x201+uint32(i)*2)
		f.mu.Unlock()
		if got := c.cmd("qRcmd," + hexs(tt.cmd)); got != "O"+hexs(tt.wantText) {
			t.Errorf("monitor %q output = %q, want text %q", tt.cmd, got, tt.wantText)
		}
		if got := c.reply(); got != "OK" {
			t.Errorf("monitor %q status = %q, want OK", tt.cmd, got)
		}
		_, resets, _ := f.snapshot()
		if len(resets) != i+1 || resets[i] != tt.wantHalt {
			t.Errorf("monitor %q: resets = %v, want last halt=%v", tt.cmd, resets, tt.wantHalt)
		}
		if got, want := c.cmd("pd"), regsHex(0x20001000+uint32(i)*16); got != want {
			t.Errorf("sp after %q = %s, want %s", tt.cmd, got, want)
		}
		if got, want := c.cmd("pf"), regsHex(0x200+uint32(i)*2); got != want {
			t.Errorf("pc after %q = %s, want %s", tt.cmd, got, want)
		}
	}
	if got := c.cmd("qRcmd," + hexs("halt")); got != "O"+hexs("target halted\n") {
		t.Errorf("monitor halt output = %q", got)
	}
	if got := c.reply(); got != "OK" {
		t.Errorf("monitor halt status = %q", got)
	}
}

// memoryMap mirrors GDB's memory-map DTD.
type memoryMap struct {
	XMLName xml.Name `xml:"memory-map"`
	Memory  []struct {
		Type     string `xml:"type,attr"`
		Start    string `xml:"start,attr"`
		Length   string `xml:"length,attr"`
		Property []struct {
			Name  string `xml:"name,attr"`
			Value string `xml:",chardata"`
		} `xml:"property"`
	} `xml:"memory"`
}

// xfer reads a whole qXfer object in chunks of n bytes.
func (c *client) xfer(object, annex string, n int) string {
	c.t.Helper()
	var doc strings.Builder
	for {
		rep := c.cmd(fmt.Sprintf("qXfer:%s:read:%s:%x,%x", object, annex, doc.Len(), n))
		if rep == "" || (rep[0] != 'm' && rep[0] != 'l') {
			c.t.Fatalf("qXfer reply %q", rep)
		}
		chunk, err := rsp.DecodeBinary([]byte(rep[1:]))
		if err != nil {
			c.t.Fatal(err)
		}
		if len(chunk) > n {
			c.t.Fatalf("chunk of %d bytes, asked %d", len(chunk), n)
		}
		doc.Write(chunk)
		if rep[0] == 'l' {
			return doc.String()
		}
	}
}

func TestMemoryMapXML(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	for _, n := range []int{0x40, 0x1000} {
		doc := c.xfer("memory-map", "", n)
		var mm memoryMap
		if err := xml.Unmarshal([]byte(doc), &mm); err != nil {
			t.Fatalf("memory map (chunks of %d) is not well-formed XML: %v\n%s", n, err, doc)
		}
		got := fmt.Sprintf("%+v", mm.Memory)
		want := "[{Type:flash Start:0x0 Length:0x80000 Property:[{Name:blocksize Value:0x1000}]} {Type:ram Start:0x20000000 Length:0x10000 Property:[]}]"
		if got != want {
			t.Errorf("memory map = %s\nwant %s", got, want)
		}
	}
}

func TestTargetXML(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	doc := c.xfer("features", "target.xml", 0x80)
	var td struct {
		Architecture string `xml:"architecture"`
		Feature      []struct {
			Name string `xml:"name,attr"`
			Reg  []struct {
				Name    string `xml:"name,attr"`
				Bitsize int    `xml:"bitsize,attr"`
				Regnum  int    `xml:"regnum,attr"`
			} `xml:"reg"`
		} `xml:"feature"`
	}
	if err := xml.Unmarshal([]byte(doc), &td); err != nil {
		t.Fatalf("target.xml is not well-formed: %v\n%s", err, doc)
	}
	if td.Architecture != "arm" || len(td.Feature) != 1 || td.Feature[0].Name != "org.gnu.gdb.arm.m-profile" {
		t.Fatalf("target.xml architecture %q, features %+v", td.Architecture, td.Feature)
	}
	var names []string
	for i, r := range td.Feature[0].Reg {
		if r.Bitsize != 32 || r.Regnum != i {
			t.Errorf("reg %s: bitsize %d regnum %d", r.Name, r.Bitsize, r.Regnum)
		}
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, " "), "r0 r1 r2 r3 r4 r5 r6 r7 r8 r9 r10 r11 r12 sp lr pc xpsr"; got != want {
		t.Errorf("registers %q, want %q", got, want)
	}
}

func TestContinueInterrupt(t *testing.T) {
	f := newFakeTarget()
	c := dial(t, startServer(t, f))
	c.send("c")
	// Running: nothing comes back until the interrupt.
	if err := c.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if b, err := c.r.ReadByte(); err == nil {
		t.Fatalf("got %q while running", b)
	}
	if err := c.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	c.raw("\x03")
	if got := c.reply(); got != "S05" {
		t.Fatalf("stop reply = %q, want S05", got)
	}
	// Continue at an address sets pc.
	c.send("c400")
	c.raw("\x03")
	if got := c.reply(); got != "S05" {
		t.Fatalf("stop reply = %q", got)
	}
	if got := c.cmd("pf"); got != "00040000" {
		t.Fatalf("pc after c400 = %q", got)
	}
	// An interrupt while halted is ignored.
	c.raw("\x03")
	if got := c.cmd("?"); got != "S05" {
		t.Fatalf("? → %q", got)
	}
	if _, _, resumes := f.snapshot(); resumes != 2 {
		t.Errorf("Resume called %d times, want 2", resumes)
	}
}

func TestDetachAndKill(t *testing.T) {
	f := newFakeTarget()
	addr := startServer(t, f)

	c := dial(t, addr)
	if got := c.cmd("D"); got != "OK" {
		t.Fatalf("D → %q", got)
	}
	c.expectClosed()
	if _, _, resumes := f.snapshot(); resumes != 1 {
		t.Errorf("Resume after detach called %d times, want 1", resumes)
	}

	// The server takes the next client; the register file survives.
	c = dial(t, addr)
	if got := c.cmd("P1=efbeadde"); got != "OK" {
		t.Fatalf("P → %q", got)
	}
	c.send("k")
	c.expectClosed()

	c = dial(t, addr)
	if got := c.cmd("p1"); got != "efbeadde" {
		t.Fatalf("r1 on a new connection = %q", got)
	}
	// A client that just hangs up ends its session too.
	c.c.Close()
	c = dial(t, addr)
	if got := c.cmd("?"); got != "S05" {
		t.Fatalf("? → %q", got)
	}
}

func TestOneClientAtATime(t *testing.T) {
	f := newFakeTarget()
	addr := startServer(t, f)
	first := dial(t, addr)
	if got := first.cmd("?"); got != "S05" {
		t.Fatal(got)
	}
	second := dial(t, addr)
	second.raw(string(rsp.AppendPacket(nil, []byte("qC"))))
	if err := second.c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if b, err := second.r.ReadByte(); err == nil {
		t.Fatalf("second client served (%q) while the first is attached", b)
	}
	if err := second.c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := first.cmd("D"); got != "OK" {
		t.Fatal(got)
	}
	second.expectByte('+')
	if got := second.reply(); got != "QC1" {
		t.Fatalf("second client qC → %q", got)
	}
}

func TestServeConnContext(t *testing.T) {
	f := newFakeTarget()
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- New(f, Options{}).ServeConn(ctx, a) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ServeConn = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConn did not return after cancel")
	}
}

func TestServeListenerClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- New(newFakeTarget(), Options{}).Serve(context.Background(), l) }()
	l.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after listener close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after listener close")
	}
}

func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		"?", "g", "G0011", "p10", "P0=01020304", "m0,10", "M20000000,2:abcd", "X20000000,1:}]",
		"vFlashErase:0,1000", "vFlashWrite:0:ab", "vFlashDone", "qCRC:0,100", "qRcmd,7265736574",
		"qXfer:memory-map:read::0,fff", "qXfer:features:read:target.xml:10,20", "qSupported",
		"c", "c100", "s", "D", "k", "QStartNoAckMode", "qXfer:features:read:target.xml:ffffffff,ffffffff",
	} {
		f.Add([]byte(s))
	}
	t := newFakeTarget()
	srv := New(t, Options{})
	f.Fuzz(func(tt *testing.T, pkt []byte) {
		ss := &session{s: srv}
		var rep reply
		// Bounded: a request allocates at most 8 bytes a byte (a hex or
		// binary payload decoded, its reply encoded) plus 64 KiB (a
		// memory read or qXfer chunk of the fake target) and
		// alloccheck.FuzzSlack.
		alloccheck.Bound(tt, "dispatch", len(pkt), 8, 64<<10+alloccheck.FuzzSlack, func() {
			srv.mu.Lock()
			rep, _ = ss.dispatch(pkt)
			srv.mu.Unlock()
		})
		for _, p := range rep {
			// Every reply must frame: no raw framing bytes.
			if bytes.ContainsAny(p, "$#*") {
				tt.Fatalf("reply to %q holds a framing byte: %q", pkt, p)
			}
			if len(p) > packetSize+16 {
				tt.Fatalf("reply to %q is %d bytes", pkt, len(p))
			}
		}
	})
}
