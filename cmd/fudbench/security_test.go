package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/fudbench/fudbench/bench/fwclient"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/internal/simbench"
	"github.com/fudbench/fudbench/sim"
)

// argvRecorder is a program that writes its arguments, NUL-separated, to
// the file named by $ARGV_OUT (appending one record per call, ended by a
// newline), and does nothing else.
const argvRecorder = "#!/bin/sh\n{ printf '%s\\0' \"$@\"; printf '\\n'; } >> \"$ARGV_OUT\"\n"

// hostileArgs would each do something if a shell ever saw them.
var hostileArgs = []string{
	"--foo; rm -rf /",
	"$(touch pwned)",
	"`touch pwned`",
	"a b && touch pwned",
	"| touch pwned",
	"*",
	"$HOME",
	"'quoted' \"twice\"",
}

// exitOf is a finished command's exit code.
func exitOf(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatal(err)
	return -1
}

func readArgvRecords(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for rec := range strings.SplitSeq(strings.TrimSuffix(string(b), "\n"), "\n") {
		out = append(out, strings.Split(strings.TrimSuffix(rec, "\x00"), "\x00"))
	}
	return out
}

// yamlQuote quotes s as a YAML double-quoted scalar.
func yamlQuote(s string) string { return strconv.Quote(s) }

// TestSecurityArgvFromBenchFile: argv lists written in a bench file reach
// the power program and the probe tool as one literal argument each;
// nothing is run by a shell, and the image's file name never becomes an
// argument.
func TestSecurityArgvFromBenchFile(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	rec := filepath.Join(dir, "record.sh")
	if err := os.WriteFile(rec, []byte(argvRecorder), 0o755); err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(hostileArgs))
	for i, a := range hostileArgs {
		quoted[i] = yamlQuote(a)
	}
	list := "[" + yamlQuote(rec) + ", " + strings.Join(quoted, ", ") + "]"
	benchFile := runWrite(t, filepath.Join(dir, "bench.yaml"), fmt.Sprintf(`boards:
  - name: dut
    power: {driver: exec, on: %s, off: [%s, "off"]}
    probe:
      driver: probe-rs
      program: %s
      chip: %s
      probe: %s
      extra: [%s]
    flash: {size: 64KiB, app_address: 0x08000000}
`, list, yamlQuote(rec), yamlQuote(rec), yamlQuote("nrf52; touch pwned"), yamlQuote("0483:3748:$(touch pwned)"), yamlQuote("$(touch pwned)")))

	argvOut := filepath.Join(dir, "argv")
	env := append(os.Environ(), "ARGV_OUT="+argvOut, "TMPDIR="+dir)
	runIn := func(args ...string) (string, int) {
		cmd := exec.Command(binary, args...)
		cmd.Dir, cmd.Env = work, env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		return stderr.String(), exitOf(t, cmd.Run())
	}
	if errOut, code := runIn("power", "on", "dut", "--bench", benchFile); code != 0 {
		t.Fatalf("power on: exit %d: %s", code, errOut)
	}
	recs := readArgvRecords(t, argvOut)
	if len(recs) != 1 || !slices.Equal(recs[0], hostileArgs) {
		t.Errorf("power program got %q, want %q", recs, hostileArgs)
	}

	// An image whose file name is hostile too: the driver hands the tool
	// a file of its own, after "--".
	imgPath := filepath.Join(work, "--foo; $(touch pwned).bin")
	if err := os.WriteFile(imgPath, bytes.Repeat([]byte{0x5a}, 512), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(argvOut)
	if errOut, code := runIn("flash", "dut", imgPath, "--bench", benchFile, "--no-reset"); code != 0 {
		t.Fatalf("flash: exit %d: %s", code, errOut)
	}
	recs = readArgvRecords(t, argvOut)
	var flashArgv []string
	for _, r := range recs {
		if slices.Contains(r, "download") {
			flashArgv = r
		}
	}
	if flashArgv == nil {
		t.Fatalf("no download command among %q", recs)
	}
	for _, want := range []string{"nrf52; touch pwned", "0483:3748:$(touch pwned)", "$(touch pwned)"} {
		if !slices.Contains(flashArgv, want) {
			t.Errorf("probe argv %q lacks %q as one argument", flashArgv, want)
		}
	}
	for _, a := range flashArgv {
		if strings.Contains(a, "--foo;") {
			t.Errorf("the image's file name reached the tool's argv: %q", flashArgv)
		}
	}
	if i := slices.Index(flashArgv, "--"); i < 0 || i != len(flashArgv)-2 {
		t.Errorf("the image file is not the one argument after --: %q", flashArgv)
	}
	for _, d := range []string{work, dir} {
		if _, err := os.Stat(filepath.Join(d, "pwned")); err == nil {
			t.Fatalf("a shell ran: %s/pwned exists", d)
		}
	}
}

// secret is a DTLS pre-shared key that is easy to recognise in any
// encoding.
const secret = "S3cr3t-PSK-of-the-bench!"

// secretForms are the ways the key could appear in a file or a log.
func secretForms() map[string][]byte { return secretFormsOf([]byte(secret)) }

// secretFormsOf are the ways the key k could appear.
func secretFormsOf(k []byte) map[string][]byte {
	return map[string][]byte{
		"raw":           k,
		"hex":           []byte(hex.EncodeToString(k)),
		"HEX":           []byte(strings.ToUpper(hex.EncodeToString(k))),
		"base64":        []byte(base64.StdEncoding.EncodeToString(k)),
		"base64 raw":    []byte(base64.RawStdEncoding.EncodeToString(k)),
		"base64 url":    []byte(base64.RawURLEncoding.EncodeToString(k)),
		"go byte slice": []byte(fmt.Sprint(k)),
		"go %x spaced":  []byte(fmt.Sprintf("% x", k)),
		"utf-16le": func() []byte {
			var b []byte
			for _, c := range k {
				b = append(b, c, 0)
			}
			return b
		}(),
	}
}

func scanForSecret(t *testing.T, what string, data []byte) {
	t.Helper()
	for form, needle := range secretForms() {
		if bytes.Contains(data, needle) {
			t.Errorf("%s holds the DTLS key (%s)", what, form)
		}
	}
}

// syncBuffer is a log destination shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.b.Bytes())
}

// TestSecurityDTLSKeyNotRecorded runs a campaign over DTLS with debug
// logging, in this process, and looks for the key in every file the run
// wrote (events, summary, JUnit, the database file and every value of
// every table), in its stdout and stderr and in the simulated board's log.
func TestSecurityDTLSKeyNotRecorded(t *testing.T) {
	dir := t.TempDir()
	simLog := &syncBuffer{}
	osc := sim.DevOSCORE()
	osc.MasterSecret = []byte(secret)
	s, err := sim.Start([]sim.Config{{
		Name: "sec-dtls", Pins: true, StateDir: filepath.Join(dir, "sim"),
		UDPAddrs: []string{"127.0.0.1:0"}, DTLSAddr: "127.0.0.1:0", GDBAddr: "127.0.0.1:0",
		PSKIdentity: "bench-sec", PSK: []byte(secret), OSCORE: &osc,
	}}, true, slog.New(slog.NewTextHandler(simLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	board := s.Boards[0]
	board.SetPower(false)
	inv, err := simbench.Inventory(s.Boards, nil)
	if err != nil {
		t.Fatal(err)
	}
	info := board.Info()
	if info.CoAPS == "" {
		t.Fatal("the board serves no DTLS endpoint")
	}
	keyFile := runWrite(t, filepath.Join(dir, "psk.key"), secret+"\n")
	t.Setenv("FUDBENCH_TEST_PSK", secret)
	for _, key := range []string{"key_file: " + yamlQuote(keyFile), "key_env: FUDBENCH_TEST_PSK"} {
		t.Run(strings.TrimSuffix(strings.Fields(key)[0], ":"), func(t *testing.T) {
			entry := fmt.Sprintf(`{address: %q, profile: resumable, dtls: {identity: bench-sec, %s}}`, info.CoAPS, key)
			dtlsCampaign(t, filepath.Join(dir, strings.Fields(key)[0]), inv, entry, key, simLog)
		})
	}
	// The OSCORE master secret, from a file and from the environment: the
	// bench's sequence file (one per sender key) holds a number, nothing
	// else.
	seq := filepath.Join(dir, "bench-oscore.seq")
	for _, key := range []string{"master_secret_file: " + yamlQuote(keyFile), "master_secret_env: FUDBENCH_TEST_PSK"} {
		name := strings.TrimSuffix(strings.Fields(key)[0], ":")
		t.Run(name, func(t *testing.T) {
			entry := fmt.Sprintf(`{address: %q, profile: resumable, oscore: {%s, master_salt: "%x", sender_id: "01", recipient_id: "", sequence_file: %q}}`,
				info.OSCORE, key, osc.MasterSalt, seq)
			dtlsCampaign(t, filepath.Join(dir, name), inv, entry, key, simLog)
		})
	}
	b, err := os.ReadFile(seq)
	if err != nil {
		t.Fatal(err)
	}
	scanForSecret(t, "the bench's OSCORE sequence file", b)
}

// dtlsCampaign runs the campaign with the board's DTLS endpoint and the
// key given as key (a key_file: or key_env: entry) and scans what it left.
func dtlsCampaign(t *testing.T, dir string, inv []byte, entry, key string, simLog *syncBuffer) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	logStart := len(simLog.Bytes())
	coapLine := regexp.MustCompile(`(?m)^    coap: \{.*\}$`)
	benchText := coapLine.ReplaceAllString(string(inv), "    coap: "+entry)
	oscore := strings.Contains(entry, "oscore:")
	if !strings.Contains(benchText, "dtls:") && !oscore {
		t.Fatalf("bench file without dtls or oscore:\n%s", benchText)
	}
	benchFile := runWrite(t, filepath.Join(dir, "bench.yaml"), benchText)
	job := runWrite(t, filepath.Join(dir, "job.yaml"), `name: dtls-secret
baseline: {build: {version: 1.0.0, seq: 1, size: 4KiB}}
image: {build: {version: 2.0.0, seq: 2, size: 8KiB, seed: 2}}
block_size: 1024
cuts:
  - none
  - after_block: 2
accept: {"*": [updated]}
`)
	out, dbPath := filepath.Join(dir, "out"), filepath.Join(dir, "db", "results.db")
	stdout, err := os.Create(filepath.Join(dir, "stdout"))
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	stderr, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	code := run(rctx, []string{"-v", "run", job, "--bench", benchFile, "--out", out, "--db", dbPath, "--lock-dir", filepath.Join(dir, "locks")}, stdout, stderr)
	errText, _ := os.ReadFile(stderr.Name())
	outText, _ := os.ReadFile(stdout.Name())
	if code != ExitOK {
		t.Fatalf("run over DTLS (%s): exit %d\nstdout:\n%s\nstderr:\n%s", key, code, outText, errText)
	}
	// The run did go over DTLS: the board saw sessions with the bench's
	// PSK identity. Over OSCORE the board challenged with Echo after its
	// boots, and the bench answered.
	runLog := simLog.Bytes()[logStart:]
	if oscore {
		evs, _ := os.ReadFile(filepath.Join(out, "events.jsonl"))
		if !bytes.Contains(evs, []byte(`"kind":"echo.challenge"`)) {
			t.Errorf("no Echo challenge on the timeline: the run did not go over OSCORE")
		}
	} else if !bytes.Contains(runLog, []byte(`msg="coap dtls session" board=sec-dtls`)) || !bytes.Contains(runLog, []byte("identity=bench-sec")) {
		t.Errorf("no DTLS session in the board's log:\n%s", runLog)
	}
	if !bytes.Contains(errText, []byte("level=DEBUG")) {
		t.Errorf("debug logging was not on:\n%s", errText)
	}

	scanForSecret(t, "stdout", outText)
	scanForSecret(t, "stderr (debug log)", errText)
	scanForSecret(t, "the simulated board's log", simLog.Bytes())
	files := 0
	for _, d := range []string{out, filepath.Dir(dbPath)} {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files++
			scanForSecret(t, e.Name(), b)
		}
	}
	for _, name := range []string{"events.jsonl", "summary.json", "junit.xml"} {
		if _, err := os.Stat(filepath.Join(out, name)); err != nil {
			t.Errorf("%s not written: %v", name, err)
		}
	}

	// Every value of every table, decoded by SQLite.
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		if err := tables.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	tables.Close()
	values := 0
	for _, n := range names {
		rows, err := db.Query(`SELECT * FROM "` + n + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				values++
				var b []byte
				switch v := v.(type) {
				case []byte:
					b = v
				case string:
					b = []byte(v)
				default:
					b = fmt.Append(nil, v)
				}
				for form, needle := range secretForms() {
					if bytes.Contains(b, needle) {
						t.Errorf("table %s column %s holds the DTLS key (%s)", n, cols[i], form)
					}
				}
			}
		}
		rows.Close()
	}
	if len(names) == 0 || values < 100 || files < 4 {
		t.Errorf("scanned %d tables, %d values, %d files: too little to mean anything", len(names), values, files)
	}
}

// socketAddrs lists the local addresses of this process's UDP sockets and
// listening TCP sockets: /proc/self/net/* holds every socket of the
// network namespace, so only those whose inode is one of this process's
// file descriptors count.
func socketAddrs(t *testing.T) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		l, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, proto := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open("/proc/self/net/" + proto)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || !inodes[fs[9]] {
				continue
			}
			if strings.HasPrefix(proto, "tcp") && fs[3] != "0A" { // LISTEN
				continue
			}
			out = append(out, proto+" "+procAddr(t, fs[1]))
		}
		f.Close()
	}
	return out
}

// procAddr decodes /proc/net's "HEXADDR:HEXPORT" (the address in the
// kernel's byte order, 32-bit words little-endian).
func procAddr(t *testing.T, s string) string {
	a, p, ok := strings.Cut(s, ":")
	raw, err := hex.DecodeString(a)
	if !ok || err != nil || (len(raw) != 4 && len(raw) != 16) {
		t.Fatalf("address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, _ := strconv.ParseUint(p, 16, 16)
	return net.JoinHostPort(net.IP(raw).String(), strconv.FormatUint(port, 10))
}

// TestSecurityLoopbackOnly serves simulated boards with `fudbench sim`
// (in this process, every address left to its default) and reaches them
// from the bench's CoAP client over UDP and DTLS, then checks that every
// listening socket of the process is bound to 127.0.0.1 or ::1.
func TestSecurityLoopbackOnly(t *testing.T) {
	dir := t.TempDir()
	benchFile := runWrite(t, filepath.Join(dir, "sim.yaml"), `boards:
  - name: lo-a
    sim: {}
  - name: lo-b
    sim: {strategy: naive-inplace}
`)
	before := socketAddrs(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"sim", "--bench", benchFile, "--control", "127.0.0.1:0", "--state-dir", filepath.Join(dir, "state"), "--time-scale", "0"}, pw, devnull)
		pw.Close()
	}()
	defer func() {
		cancel()
		select {
		case code := <-done:
			if code != ExitOK {
				t.Errorf("sim exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("sim did not stop")
		}
	}()
	// The addresses it prints.
	var udpAddrs, coaps []string
	lines := bufio.NewScanner(pr)
	printed := make(chan struct{})
	go func() {
		defer close(printed)
		boards := 0
		for lines.Scan() {
			f := strings.Fields(lines.Text())
			switch {
			case len(f) >= 2 && f[0] == "coap":
				udpAddrs = append(udpAddrs, strings.TrimPrefix(f[1], "coap://"))
			case len(f) >= 2 && f[0] == "coaps":
				coaps = append(coaps, strings.TrimPrefix(f[1], "coaps://"))
			case len(f) >= 2 && f[0] == "power":
				if boards++; boards == 2 {
					go io.Copy(io.Discard, pr)
					return
				}
			}
		}
	}()
	select {
	case <-printed:
	case <-time.After(30 * time.Second):
		t.Fatal("sim printed no addresses")
	}
	if len(udpAddrs) < 4 || len(coaps) != 2 {
		t.Fatalf("endpoints: coap %v coaps %v", udpAddrs, coaps)
	}
	// The bench side: a client to every endpoint, kept open while the
	// sockets are listed.
	tx := coap.Transmission{AckTimeout: 200 * time.Millisecond, MaxRetransmit: 3}
	var clients []*coap.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func(addr string, psk *coap.PSK) {
		dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer dcancel()
		c, err := coap.Dial(dctx, addr, psk, tx)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
		if _, err := fwclient.New(c).Boot(dctx); err != nil {
			t.Errorf("GET /boot at %s: %v", addr, err)
		}
	}
	for _, a := range udpAddrs {
		dial(a, nil)
	}
	for _, a := range coaps {
		dial(a, &coap.PSK{Identity: "fudbench", Key: sim.DevPSK})
	}

	socks := socketAddrs(t)
	var fresh []string
	for _, s := range socks {
		if !slices.Contains(before, s) {
			fresh = append(fresh, s)
		}
	}
	// Per board: UDP v4 and v6, DTLS, GDB; the control endpoint; one
	// client socket per endpoint.
	if len(fresh) < 2*4+1+len(udpAddrs)+len(coaps) {
		t.Errorf("found only %d new sockets: %v", len(fresh), fresh)
	}
	for _, s := range socks {
		_, addr, _ := strings.Cut(s, " ")
		host, _, _ := net.SplitHostPort(addr)
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("socket not on loopback: %s", s)
		}
	}
	t.Logf("%d sockets, all on loopback: %v", len(socks), socks)
}
