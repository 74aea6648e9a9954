package sim

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/internal/alloccheck"
	"github.com/fudbench/fudbench/internal/config"
)

// fakeSection is a Section as the inventory makes one: the sim: node of
// the first board of a bench file, decoded with the project's strict
// reader.
type fakeSection struct {
	d        *config.Decoder
	key, val ast.Node
	dir      string
}

func parseSection(name, dir string, data []byte) (*fakeSection, error) {
	d, body, err := config.Parse(name, data)
	if err != nil {
		return nil, err
	}
	top, err := d.Fields(body, "bench", "boards")
	if err != nil {
		return nil, err
	}
	boards, err := d.Seq(top["boards"].Val, "boards", false)
	if err != nil {
		return nil, err
	}
	if len(boards) == 0 {
		return nil, d.Errf(top["boards"].Key, "no boards")
	}
	bd, err := d.Fields(boards[0], "boards[0]", "name", "sim")
	if err != nil {
		return nil, err
	}
	return &fakeSection{d: d, key: bd["sim"].Key, val: bd["sim"].Val, dir: dir}, nil
}

func (s *fakeSection) Decode(v any) error { return s.d.DecodeNode(s.val, v) }
func (s *fakeSection) Errorf(format string, a ...any) error {
	return s.d.Errf(s.key, format, a...)
}
func (s *fakeSection) Dir() string { return s.dir }

var _ Section = (*fakeSection)(nil)

// benchWith is a bench file whose first board's sim: section holds lines;
// the first of them is line 4, its key at column 7.
func benchWith(lines ...string) string {
	var b strings.Builder
	b.WriteString("boards:\n  - name: b1\n    sim:\n")
	for _, l := range lines {
		b.WriteString("      " + l + "\n")
	}
	return b.String()
}

func configFrom(t testing.TB, dir, text string) (Config, error) {
	t.Helper()
	sec, err := parseSection("bench.yaml", dir, []byte(text))
	if err != nil {
		t.Fatalf("the fake section does not parse: %v\n%s", err, text)
	}
	return ConfigFromSection("b1", sec)
}

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestConfigFromSectionErrors: each bad value is reported at its own line
// and column, with the bench inventory's messages.
func TestConfigFromSectionErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "badhex.psk"), "hex:abc\n")
	writeFile(t, filepath.Join(dir, "empty.psk"), " \n")
	writeFile(t, filepath.Join(dir, "big.psk"), strings.Repeat("k", config.MaxPSKFile+1))
	tests := []struct {
		name, text string
		pos        string // line:column
		msg        string // the whole message, or with a trailing "…" its start
	}{
		{"strategy in flow style", "boards:\n  - name: sim-safe\n    sim: {strategy: yolo}\n",
			"3:21", `unknown strategy "yolo": want inplace-recovery, naive-inplace, ab-overwrite, ab-swap or ab-direct`},
		{"strategy", benchWith("strategy: yolo"), "4:17", `unknown strategy "yolo": want inplace-recovery, naive-inplace, ab-overwrite, ab-swap or ab-direct`},
		{"confirm", benchWith("strategy: ab-swap", "confirm: sometimes"), "5:16", `confirm "sometimes": want boot, never`},
		{"serial_recovery", benchWith("serial_recovery: always"), "4:24", `serial_recovery "always": want halted, off or wait DURATION (wait 500ms)`},
		{"serial_recovery wait", benchWith("serial_recovery: wait 2m"), "4:24", `serial_recovery "wait 2m": the wait must be a duration above 0 and at most 1m (wait 500ms)`},
		{"strategy not a scalar", benchWith("strategy: [naive-inplace]"), "4:17", `strategy: want a single value, got a list`},
		{"layout", benchWith("flash:", "  layout: wide"), "5:17", `unknown flash layout "wide": want uniform or stm32f4`},
		{"write_align", benchWith("flash: {write_align: 3}"), "4:28", `write_align 3: want 1, 4 or 8`},
		{"erased value", benchWith("flash:", "  size: 1MiB", "  erased: 0x55"), "6:17", `erased value 0x55: want 0xff or 0x00`},
		{"erased not a byte", benchWith("flash:", "  erased: 0x1ff"), "5:17", `byte "0x1ff": want 0x00-0xff`},
		{"size too small", benchWith("flash:", "  size: 32KiB"), "5:15", `flash size 32768: want 64KiB to 64MiB`},
		{"size too large", benchWith("flash:", "  size: 128MiB"), "5:15", `flash size 134217728: want 64KiB to 64MiB`},
		{"size not a size", benchWith("flash:", "  size: lots"), "5:15", `size "lots": want a number of bytes, optionally with KiB or MiB`},
		{"sector not a power of two", benchWith("flash:", "  sector: 1000"), "5:17", `sector size 1000: want a power of two of at least 512`},
		{"sector too small", benchWith("flash:", "  sector: 256"), "5:17", `sector size 256: want a power of two of at least 512`},
		{"program_time", benchWith("flash:", "  program_time: 41"), "5:23", `duration "41": want e.g. 20ms or 1.5s`},
		{"erase_time too long", benchWith("flash:", "  erase_time: 2h"), "5:21", `duration "2h" is more than 1h0m0s`},
		{"base", benchWith("flash:", "  base: 0x100000000"), "5:15", `address "0x100000000": want a 32-bit number such as 0x08000000`},
		{"unknown flash key", benchWith("flash:", "  sectors: 4KiB"), "5:9", `unknown field "sectors"…`},
		{"time_scale too large", benchWith("time_scale: 2000"), "4:19", `time_scale 2000: want 0 (instant) to 1000`},
		{"time_scale negative", benchWith("time_scale: -1"), "4:19", `time_scale -1: want 0 (instant) to 1000`},
		{"time_scale nan", benchWith("time_scale: NaN"), "4:19", `time_scale NaN: want 0 (instant) to 1000`},
		{"boot_delay", benchWith("boot_delay: soon"), "4:19", `duration "soon": want e.g. 20ms or 1.5s`},
		{"net_delay negative", benchWith("strategy: naive-inplace", "net_delay: -5ms"), "5:18", `duration "-5ms" is negative`},
		{"coap address", benchWith("coap: [127.0.0.1:0, 127.0.0.1]"), "4:27", `address "127.0.0.1": want host:port ([addr]:port for IPv6)`},
		{"coap port", benchWith("coap:", "  - \"[::1]:99999\""), "5:11", `address "[::1]:99999": want host:port ([addr]:port for IPv6)`},
		{"coaps", benchWith("coaps: localhost"), "4:14", `address "localhost": want host:port ([addr]:port for IPv6), or - to leave it out`},
		{"gdb", benchWith("gdb: 127.0.0.1:gdb"), "4:12", `address "127.0.0.1:gdb": want host:port ([addr]:port for IPv6), or - to leave it out`},
		{"psk_identity too long", benchWith("psk_identity: " + strings.Repeat("i", 33)), "4:21",
			`psk_identity "` + strings.Repeat("i", 33) + `": want 1 to 32 bytes (the recovery record caches it)`},
		{"psk_file missing", benchWith("psk_identity: bench-7", "psk_file: keys/none.psk"), "5:17",
			"psk_file: stat " + filepath.Join(dir, "keys/none.psk") + ": no such file or directory"},
		{"psk_file a directory", benchWith("psk_file: " + dir), "4:17", "psk_file: " + dir + " is not a regular file"},
		{"psk_file bad hex", benchWith("psk_file: badhex.psk"), "4:17", "psk_file: " + filepath.Join(dir, "badhex.psk") + ": bad hex"},
		{"psk_file empty", benchWith("psk_file: empty.psk"), "4:17", "psk_file: " + filepath.Join(dir, "empty.psk") + " is empty"},
		{"psk_file too large", benchWith("psk_file: big.psk"), "4:17", "psk_file: " + filepath.Join(dir, "big.psk") + " is larger than 4096 bytes: not a pre-shared key file"},
		{"unknown key", benchWith("strategy: naive-inplace", "stratgey: inplace-recovery"), "5:7", `unknown field "stratgey"…`},
		{"wrong kind", benchWith("reenumerate: sometimes"), "4:20", `cannot unmarshal string…`},
		{"not a mapping", "boards:\n  - name: b1\n    sim: [a]\n", "3:10", `want a mapping, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configFrom(t, dir, tt.text)
			if err == nil {
				t.Fatalf("no error for\n%s", tt.text)
			}
			var ce *config.Error
			if !errors.As(err, &ce) || !errors.Is(err, config.ErrConfig) {
				t.Fatalf("%T %v: not a configuration error", err, err)
			}
			prefix := "bench.yaml:" + tt.pos + ": "
			got := err.Error()
			if start, ok := strings.CutSuffix(tt.msg, "…"); ok {
				if !strings.HasPrefix(got, prefix+start) {
					t.Fatalf("got  %s\nwant %s%s…", got, prefix, start)
				}
				return
			}
			if got != prefix+tt.msg {
				t.Fatalf("got  %s\nwant %s%s", got, prefix, tt.msg)
			}
		})
	}
}

func TestConfigFromSection(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "keys", "bench.psk"), "hex:00112233445566778899aabbccddeeff\n")
	link := filepath.Join(dir, "b1.console")
	text := benchWith(
		"strategy: naive-inplace",
		"flash:",
		"  size: 1MiB",
		"  sector: 8KiB",
		"  layout: uniform",
		"  write_align: 8",
		"  erased: 0x00",
		"  program_time: 10us",
		"  erase_time: 20ms",
		"  base: 0x08000000",
		"time_scale: 0.5",
		"boot_delay: 30ms",
		"net_delay: 500ms",
		`coap: ["127.0.0.1:0", "[::1]:0"]`,
		`coaps: "-"`,
		"psk_identity: bench-7",
		"psk_file: keys/bench.psk",
		"gdb: 127.0.0.1:0",
		"console_link: "+link,
		"reenumerate: true",
		"serial_recovery: wait 500ms",
	)
	got, err := configFrom(t, dir, text)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Name: "b1", Strategy: NaiveInplace,
		FlashSize: 1 << 20, SectorSize: 8 << 10, Layout: "uniform", WriteAlign: 8, ErasedZero: true,
		FlashBase: 0x08000000, ProgramTime: 10 * time.Microsecond, EraseTime: 20 * time.Millisecond,
		TimeScale: 0.5, BootDelay: 30 * time.Millisecond, NetDelay: 500 * time.Millisecond,
		UDPAddrs: []string{"127.0.0.1:0", "[::1]:0"}, DTLSAddr: "-",
		SerialRecovery: "wait 500ms",
		PSKIdentity:    "bench-7", PSK: []byte{0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
		GDBAddr: "127.0.0.1:0", ConsoleLink: link, Reenumerate: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	// What the section describes is a board that can be made.
	got.StateDir = dir
	b, err := New(got)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	// An empty section, or none at all, is a board with every default.
	for _, text := range []string{benchWith(), "boards:\n  - name: b1\n    sim: {}\n", "boards:\n  - name: b1\n"} {
		got, err := configFrom(t, dir, text)
		if err != nil {
			t.Fatalf("%v\n%s", err, text)
		}
		if !reflect.DeepEqual(got, Config{Name: "b1"}) {
			t.Errorf("got %+v from\n%s", got, text)
		}
	}

	// An absolute psk_file, and a key written as text.
	writeFile(t, filepath.Join(dir, "text.psk"), "  secret-key \n")
	got, err = configFrom(t, t.TempDir(), benchWith("psk_file: "+filepath.Join(dir, "text.psk")))
	if err != nil {
		t.Fatal(err)
	}
	if string(got.PSK) != "secret-key" {
		t.Errorf("PSK %q, want %q", got.PSK, "secret-key")
	}
}

func TestConfigFromSectionNeedsAName(t *testing.T) {
	sec, err := parseSection("bench.yaml", t.TempDir(), []byte(benchWith("strategy: naive-inplace")))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ConfigFromSection("", sec)
	if err == nil || err.Error() != "bench.yaml:3:5: a simulated board needs a name" {
		t.Fatalf("got %v", err)
	}
}

// FuzzConfigFromSection: no bench file makes the section reader panic,
// and every error it returns is a configuration error.
func FuzzConfigFromSection(f *testing.F) {
	dir := f.TempDir()
	writeFile(f, filepath.Join(dir, "dev.psk"), "0x0011\n")
	for _, s := range []string{
		benchWith("strategy: naive-inplace", "flash: {size: 1MiB, sector: 4KiB, erased: 0xff, base: 0x08000000}",
			"time_scale: 1", "net_delay: 500ms", `coap: ["[::1]:0"]`, "psk_file: dev.psk", "reenumerate: true"),
		benchWith("flash:", "  layout: stm32f4", "  write_align: 4", "  program_time: 41us"),
		"boards:\n  - name: sim-safe\n    sim: {strategy: yolo}\n",
		benchWith("coaps: -", "gdb: '127.0.0.1:3333'", "psk_identity: &id x", "console_link: *id"),
		benchWith("time_scale: .inf"),
		"boards:\n  - name: b1\n    sim: !!str x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var sec *fakeSection
		var err error
		alloccheck.Bound(t, "parse and ConfigFromSection", len(data), alloccheck.YAMLPerByte, alloccheck.YAMLFixed+alloccheck.FuzzSlack, func() {
			if sec, err = parseSection("bench.yaml", dir, data); err == nil {
				_, err = ConfigFromSection("b1", sec)
			}
		})
		if sec == nil {
			return
		}
		if err == nil {
			return
		}
		var ce *config.Error
		if !errors.As(err, &ce) || !errors.Is(err, config.ErrConfig) {
			t.Fatalf("%T %v: not a configuration error", err, err)
		}
	})
}
