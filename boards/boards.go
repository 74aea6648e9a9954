// Package boards is the bench inventory: a YAML file that lists boards and
// how each is wired — its power switch, probe, console, trigger inputs,
// CoAP endpoint, update profile and link, and flash layout. It is passive data:
// drivers act on it (power, probes, inputs), the bench binds it.
//
// Decoding is strict and happens before anything is powered: an unknown
// key, a wrong type or a bad value is a *config.Error naming the file, line
// and column. Each driver's settings, and a simulated board's sim section,
// stay YAML nodes (a Section) until their owner decodes them, with the
// same positions. See docs/bench.md.
package boards

import (
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/inputs"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/power"
)

// Bench is a decoded bench file.
type Bench struct {
	File   string
	Boards []Board
}

// Board is one board of the bench: what is wired where.
type Board struct {
	Name string
	Tags []string
	// Pool is the lab pool the board serves in (lab mode: jobs are
	// queued per pool); "" is the pool named "default".
	Pool string
	// Strategy labels the device's update strategy ("ab-swap",
	// "inplace-recovery", a team's own name) for the report's strategy
	// comparison; "" lets a device that describes itself name it.
	Strategy string
	Power    *DriverConfig
	Probe    *DriverConfig
	Console  *Console
	// Inputs are the board's trigger inputs, by the name a job uses
	// (on_gpio: {input: busy}), in file order.
	Inputs []Input
	CoAP   *CoAP
	Flash  *Flash
	// Sim is a simulated board's settings, decoded by the simulator
	// (`fudbench sim`); the inventory does not look inside.
	Sim *Section
	// At is the board's entry in File.
	At   config.Pos
	File string
}

// Input is one trigger input of a board.
type Input struct {
	Name string
	*DriverConfig
}

// Console is how a board's serial console is reached.
type Console struct {
	Port     string    // path or stable symlink
	USB      *USBMatch // or a USB adapter's identity
	Baud     int
	Patterns Patterns
	At       config.Pos
}

// USBMatch finds a USB serial adapter again after it re-enumerates.
type USBMatch struct {
	VID, PID, Serial string
}

// Patterns are regular expressions for console lines; validated at load.
type Patterns struct {
	Boot     string
	App      string
	Recovery string
}

// Update profiles a board's CoAP endpoint speaks.
const (
	ProfileResumable = "resumable" // the protocol of package fwproto: prepare, recovery, resume
	ProfileBlock1    = "block1"    // plain RFC 7959 PUT from block 0
)

// CoAP is a board's update endpoint.
type CoAP struct {
	Address string // host:port; IPv6 as [addr]:port
	Profile string // ProfileResumable or ProfileBlock1; never empty after load
	Path    string // block1 resource; "" is /fw
	DTLS    *DTLS
	OSCORE  *OSCORE
	// Link impairs the path to the device through a forwarder on the
	// bench host (nil: the bench talks to the device directly); a job's
	// link replaces it.
	Link *link.Config
	// QBlock sends image bodies with Q-Block1 (RFC 9177) instead of
	// Block1 (nil: Block1).
	QBlock *QBlock
	// Version is how the bench reads which image a block1 device runs
	// (nil: fudbench's own GET /fw/version).
	Version *VersionCheck
	At      config.Pos
	// ProfileAt is where the profile was set; zero when defaulted.
	ProfileAt config.Pos
}

// Version check modes (VersionCheck.Mode).
const (
	// VersionCoAP reads a CoAP resource and matches its payload.
	VersionCoAP = "coap"
	// VersionConsole matches the device's console lines since it was
	// last powered on.
	VersionConsole = "console"
	// VersionNone reads nothing: a cycle's outcome comes from the
	// transfer's final answer and the device answering afterwards.
	VersionNone = "none"
)

// LwM2MVersionPath is the LwM2M Device object's Firmware Version
// resource (object 3, instance 0, resource 3), read by `version: lwm2m`.
const LwM2MVersionPath = "/3/0/3"

// VersionCheck is how the bench asks a plain CoAP (block1) device which
// image it runs: the version string is the first group of Match, or its
// whole match (a group named "version" when there are more), or (Match nil, coap mode) the whole payload trimmed of
// white space. It is compared with the version string of each of the
// job's images.
type VersionCheck struct {
	Mode  string
	Get   string // VersionCoAP: the resource's path
	Match *regexp.Regexp
	At    config.Pos
}

// String describes the check for messages.
func (v *VersionCheck) String() string {
	switch {
	case v == nil:
		return "GET /fw/version"
	case v.Mode == VersionCoAP && v.Match != nil:
		return fmt.Sprintf("GET %s matching %q", v.Get, v.Match)
	case v.Mode == VersionCoAP:
		return "GET " + v.Get
	case v.Mode == VersionConsole:
		return fmt.Sprintf("console line matching %q", v.Match)
	}
	return "none"
}

// VersionOnConsole reports whether the board's device names its version
// on the console, which must then be open whenever it is updated.
func (bd *Board) VersionOnConsole() bool {
	return bd.CoAP != nil && bd.CoAP.Version != nil && bd.CoAP.Version.Mode == VersionConsole
}

// Reads reports whether the check reads a version string (coap or
// console), which each of a job's images must then name.
func (v *VersionCheck) Reads() bool {
	return v != nil && (v.Mode == VersionCoAP || v.Mode == VersionConsole)
}

// Extract returns the version a payload or line names: Match's first
// group, or its whole match; ok is false when it does not match.
func (v *VersionCheck) Extract(text string) (version string, ok bool) {
	if v.Match == nil {
		return strings.TrimSpace(text), true
	}
	m := v.Match.FindStringSubmatch(text)
	switch i := v.Match.SubexpIndex("version"); {
	case m == nil:
		return "", false
	case i > 0:
		return m[i], true
	case len(m) > 1:
		return m[1], true
	}
	return m[0], true
}

// QBlock holds the Q-Block1 parameters of an endpoint (RFC 9177 §7.2);
// zero values mean the RFC's defaults.
type QBlock struct {
	MaxPayloads int           // blocks per burst; default 10
	NonTimeout  time.Duration // wait for the answer to a burst; default 2 s
	At          config.Pos
}

// DTLS is a pre-shared key identity and where its key is kept. The key
// itself never appears in a bench file, a log or a result.
type DTLS struct {
	Identity string
	KeyFile  string // resolved against the bench file's directory; or
	KeyEnv   string // the name of an environment variable
	// File and IdentityAt place the identity for errors about it (a device
	// that refuses it).
	File       string
	IdentityAt config.Pos
	// Cache is what the bench keeps of its session with the device across
	// power cuts, matching what the device's recovery record keeps:
	// "none" (a full handshake each time), "session" (abbreviated
	// handshake) or "state" (the session goes on with no handshake).
	Cache string
}

// OSCORE is an OSCORE security context (RFC 8613) from the bench's side:
// where the master secret is kept, the salt and IDs, and where the bench
// keeps its own sender sequence number so that it never uses one twice,
// across runs included.
type OSCORE struct {
	SecretFile string // resolved against the bench file's directory; or
	SecretEnv  string // the name of an environment variable
	Salt       []byte
	SenderID   []byte // the bench's
	// RecipientID is the device's sender ID.
	RecipientID  []byte
	IDContext    []byte // nil: none
	ReplayWindow int
	// SequenceFile keeps the bench's sender sequence number a window
	// ahead (RFC 8613 Appendix B.1.1); "" is a file under the user's
	// state directory named after the bench's Sender Key.
	SequenceFile string
	File         string
	At           config.Pos
}

// Secret reads the OSCORE master secret from its file or environment
// variable.
func (o *OSCORE) Secret() ([]byte, error) {
	if o.SecretEnv != "" {
		v := os.Getenv(o.SecretEnv)
		if v == "" {
			return nil, fmt.Errorf("oscore master secret: environment variable %s is empty", o.SecretEnv)
		}
		return []byte(v), nil
	}
	return config.ReadPSK(o.SecretFile)
}

// Flash describes a board's flash as the bench needs it.
type Flash struct {
	Size     int64
	SlotSize int64 // room for an update image; 0 unknown
	Base     uint32
	AppAddr  uint32 // where a probe writes the app image
	// EraseFrom starts the range a baseline flash over the probe erases
	// first, up to the end of flash: records, journals and counters as
	// well as the app slot (a mass erase that keeps the bootloader).
	EraseFrom uint32
	// ProgramTime is how long the device takes to program WriteUnit
	// bytes, when the bench file says (Timed): it lets the bench refuse a
	// during_block delay that is longer than a block's write, which could
	// never land during the block.
	ProgramTime time.Duration
	WriteUnit   int
	Timed       bool
	At          config.Pos
}

// BlockWriteTime is the least time the device spends programming a block
// of size bytes, and whether the bench file gives the timing at all.
func (f *Flash) BlockWriteTime(size int) (time.Duration, bool) {
	if f == nil || !f.Timed || f.WriteUnit <= 0 {
		return 0, false
	}
	units := (size + f.WriteUnit - 1) / f.WriteUnit
	return time.Duration(units) * f.ProgramTime, true
}

// Section is a mapping of a bench file kept as a YAML node, for the
// driver (or the simulator) that owns it to decode strictly, with
// positions in the file.
type Section struct {
	d    *config.Decoder
	node ast.Node
	skip []string
	// At is where the section stands in the file.
	At config.Pos
}

// Decode decodes the section strictly into v (a struct with yaml tags):
// an unknown key or a value of the wrong kind is a *config.Error at its
// line. It implements power.Settings, probes.Settings and
// inputs.Settings.
func (s *Section) Decode(v any) error {
	if s == nil || s.d == nil {
		return nil
	}
	return s.d.DecodeNode(s.node, v, s.skip...)
}

// Errorf makes a *config.Error at the section.
func (s *Section) Errorf(format string, a ...any) error {
	file := ""
	if s.d != nil {
		file = s.d.File
	}
	return config.Errorf(file, s.At, format, a...)
}

// Dir is the directory of the bench file, against which relative paths in
// the section are resolved.
func (s *Section) Dir() string {
	if s == nil || s.d == nil {
		return "."
	}
	return filepath.Dir(s.d.File)
}

// DriverConfig is a driver name and the driver's own settings.
type DriverConfig struct {
	Driver string
	Section
}

// Pos is the driver entry's line and column.
func (d *DriverConfig) Pos() (line, col int) { return d.At.Line, d.At.Column }

// ProbeDrivers are the probe drivers the schema accepts (a build may
// compile in fewer; the run says so when a board needs a missing one).
var ProbeDrivers = []string{"gdbrsp", "openocd", "stm32uart", "smp", "esprom", "probe-rs", "pyocd"}

// Board returns the board called name.
func (b *Bench) Board(name string) (*Board, error) {
	for i := range b.Boards {
		if b.Boards[i].Name == name {
			return &b.Boards[i], nil
		}
	}
	return nil, config.Errorf(b.File, config.Pos{}, "no board %q (boards: %s)", name, strings.Join(b.Names(), ", "))
}

// Names lists the boards' names in file order.
func (b *Bench) Names() []string {
	names := make([]string, len(b.Boards))
	for i, bd := range b.Boards {
		names[i] = bd.Name
	}
	return names
}

// Input returns the board's trigger input called name, or nil.
func (b *Board) Input(name string) *Input {
	for i := range b.Inputs {
		if b.Inputs[i].Name == name {
			return &b.Inputs[i]
		}
	}
	return nil
}

// InputNames lists the board's trigger inputs.
func (b *Board) InputNames() []string {
	var out []string
	for _, in := range b.Inputs {
		out = append(out, in.Name)
	}
	return out
}

// Errorf makes a *config.Error at the board's entry.
func (b *Board) Errorf(format string, a ...any) error {
	return config.Errorf(b.File, b.At, "board %s: "+format, append([]any{b.Name}, a...)...)
}

// HasTag reports whether the board carries tag.
func (b *Board) HasTag(tag string) bool { return slices.Contains(b.Tags, tag) }

// Load reads and validates a bench file.
func Load(path string) (*Bench, error) {
	data, err := config.ReadFile(path, "bench file")
	if err != nil {
		return nil, err
	}
	return parse(path, data, os.LookupEnv)
}

// Parse decodes and validates bench file contents; name is used in errors
// and relative paths (key files) are resolved against its directory.
// Environment variables are expanded only in a file Load reads; here
// ${NAME} is an error.
func Parse(name string, data []byte) (*Bench, error) {
	return parse(name, data, nil)
}

// parse decodes bench file contents, expanding ${NAME} with env (nil:
// refusing it).
func parse(name string, data []byte, env func(string) (string, bool)) (*Bench, error) {
	d, body, err := config.Parse(name, data)
	if err != nil {
		return nil, err
	}
	if env != nil {
		err = d.ExpandEnv(body, env)
	} else {
		err = d.RefuseEnv(body, "environment variables are expanded in a bench file read from disk, not in bench text given another way")
	}
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, config.Errorf(name, config.Pos{Line: 1, Column: 1}, "empty file: want a boards: list")
	}
	fs, err := d.Fields(body, "bench", "boards")
	if err != nil {
		return nil, err
	}
	f, ok := fs["boards"]
	if !ok {
		return nil, d.Errf(body, "no boards: the file needs a boards: list")
	}
	items, err := d.Seq(f.Val, "boards", false)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return nil, d.Errf(f.Val, "no boards: the boards: list is empty")
	}
	b := &Bench{File: name}
	seen := map[string]int{}
	for i, it := range items {
		bd, err := decodeBoard(d, it, fmt.Sprintf("boards[%d]", i))
		if err != nil {
			return nil, err
		}
		if j, dup := seen[bd.Name]; dup {
			return nil, d.ErrAt(bd.nameAt, "duplicate board name %q (first at boards[%d])", bd.Name, j)
		}
		seen[bd.Name] = i
		b.Boards = append(b.Boards, bd.Board)
	}
	return b, nil
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// NameOK reports whether s is a valid board, tag or input name.
func NameOK(s string) bool { return nameRE.MatchString(s) }

type decodedBoard struct {
	Board
	nameAt config.Pos
}

var boardKeys = []string{"name", "tags", "pool", "strategy", "power", "probe", "console", "inputs", "coap", "flash", "sim"}

func decodeBoard(d *config.Decoder, n ast.Node, w string) (decodedBoard, error) {
	var out decodedBoard
	fs, err := d.Fields(n, w, boardKeys...)
	if err != nil {
		return out, err
	}
	bd := &out.Board
	bd.File, bd.At = d.File, config.PosOf(n)
	nf, ok := fs["name"]
	if !ok {
		return out, d.Errf(n, "%s has no name", w)
	}
	if bd.Name, err = d.Str(nf.Val, w+".name"); err != nil {
		return out, err
	}
	out.nameAt = config.PosOf(nf.Val)
	if !NameOK(bd.Name) {
		return out, d.Errf(nf.Val, "board name %q: use letters, digits, '.', '_' or '-'", bd.Name)
	}
	w = "board " + bd.Name
	if f, ok := fs["tags"]; ok {
		items, err := d.Seq(f.Val, w+": tags", false)
		if err != nil {
			return out, err
		}
		for _, it := range items {
			tag, err := d.Str(it, w+": tags")
			if err != nil {
				return out, err
			}
			if !NameOK(tag) {
				return out, d.Errf(it, "%s: tag %q: use letters, digits, '.', '_' or '-'", w, tag)
			}
			if !bd.HasTag(tag) {
				bd.Tags = append(bd.Tags, tag)
			}
		}
	}
	if f, ok := fs["pool"]; ok {
		if bd.Pool, err = d.Str(f.Val, w+": pool"); err != nil {
			return out, err
		}
		if !NameOK(bd.Pool) {
			return out, d.Errf(f.Val, "%s: pool %q: use letters, digits, '.', '_' or '-'", w, bd.Pool)
		}
	}
	if f, ok := fs["strategy"]; ok {
		if bd.Strategy, err = d.Str(f.Val, w+": strategy"); err != nil {
			return out, err
		}
		if !NameOK(bd.Strategy) {
			return out, d.Errf(f.Val, "%s: strategy %q: use letters, digits, '.', '_' or '-'", w, bd.Strategy)
		}
	}
	if f, ok := fs["power"]; ok {
		if bd.Power, err = driver(d, f, w+": power", "power", power.Drivers()); err != nil {
			return out, err
		}
	}
	if f, ok := fs["probe"]; ok {
		if bd.Probe, err = driver(d, f, w+": probe", "probe", ProbeDrivers); err != nil {
			return out, err
		}
	}
	if f, ok := fs["console"]; ok {
		if bd.Console, err = decodeConsole(d, f, w+": console"); err != nil {
			return out, err
		}
	}
	if f, ok := fs["inputs"]; ok {
		named, err := d.FieldsAny(f.Val, w+": inputs", false)
		if err != nil {
			return out, err
		}
		for _, nf := range named {
			if !NameOK(nf.Name) {
				return out, d.Errf(nf.Key, "%s: input name %q: use letters, digits, '.', '_' or '-'", w, nf.Name)
			}
			dc, err := driver(d, config.Field{Key: nf.Key, Val: nf.Val}, w+": inputs."+nf.Name, "input", inputs.Drivers())
			if err != nil {
				return out, err
			}
			bd.Inputs = append(bd.Inputs, Input{Name: nf.Name, DriverConfig: dc})
		}
	}
	if f, ok := fs["coap"]; ok {
		if bd.CoAP, err = decodeCoAP(d, f, w+": coap"); err != nil {
			return out, err
		}
		if v := bd.CoAP.Version; v != nil && v.Mode == VersionConsole && bd.Console == nil {
			return out, d.Errf(f.Key, "%s: coap.version reads the console, and the board has no console:", w)
		}
	}
	if f, ok := fs["flash"]; ok {
		if bd.Flash, err = decodeFlash(d, f, w+": flash"); err != nil {
			return out, err
		}
	}
	if f, ok := fs["sim"]; ok {
		if !d.IsMap(f.Val) {
			r, _ := d.Resolve(f.Val)
			return out, d.Errf(f.Val, "%s: sim: want a mapping, got %s", w, config.KindName(r))
		}
		bd.Sim = &Section{d: d, node: f.Val, At: config.PosOf(f.Key)}
	}
	return out, nil
}

// driver reads {driver: NAME, ...settings}: the name must be among known;
// the rest stays a node for the driver.
func driver(d *config.Decoder, f config.Field, w, kind string, known []string) (*DriverConfig, error) {
	r, err := d.Resolve(f.Val)
	if err != nil {
		return nil, err
	}
	mn, ok := r.(ast.MapNode)
	if !ok {
		return nil, d.Errf(f.Val, "%s: want a mapping with a driver: key, got %s", w, config.KindName(r))
	}
	dc := &DriverConfig{Section: Section{d: d, node: f.Val, skip: []string{"driver"}, At: config.PosOf(f.Val)}}
	it := mn.MapRange()
	for it.Next() {
		kv := it.KeyValue()
		if k, _ := config.ScalarText(kv.Key); k == "driver" {
			if dc.Driver, err = d.Str(kv.Value, w+".driver"); err != nil {
				return nil, err
			}
			if !slices.Contains(known, dc.Driver) {
				return nil, d.Errf(kv.Value, "unknown %s driver %q (known: %s)", kind, dc.Driver, strings.Join(known, ", "))
			}
			return dc, nil
		}
	}
	return nil, d.Errf(f.Val, "%s needs a driver: one of %s", kind, strings.Join(known, ", "))
}

func decodeConsole(d *config.Decoder, f config.Field, w string) (*Console, error) {
	fs, err := d.Fields(f.Val, w, "port", "usb", "baud", "patterns")
	if err != nil {
		return nil, err
	}
	c := &Console{At: config.PosOf(f.Key)}
	if pf, ok := fs["port"]; ok {
		if c.Port, err = d.Str(pf.Val, w+".port"); err != nil {
			return nil, err
		}
		if c.Port == "" {
			return nil, d.Errf(pf.Val, "%s.port: empty", w)
		}
		if !filepath.IsAbs(c.Port) {
			// Relative to the bench file, as every path in it.
			c.Port = filepath.Join(filepath.Dir(d.File), c.Port)
		}
	}
	if uf, ok := fs["usb"]; ok {
		us, err := d.Fields(uf.Val, w+".usb", "vid", "pid", "serial")
		if err != nil {
			return nil, err
		}
		c.USB = &USBMatch{}
		for k, dst := range map[string]*string{"vid": &c.USB.VID, "pid": &c.USB.PID, "serial": &c.USB.Serial} {
			if v, ok := us[k]; ok {
				if *dst, err = d.Str(v.Val, w+".usb."+k); err != nil {
					return nil, err
				}
			}
		}
		if c.USB.VID == "" || c.USB.PID == "" {
			return nil, d.Errf(uf.Val, "%s: usb match needs vid and pid", w)
		}
	}
	if (c.Port == "") == (c.USB == nil) {
		return nil, d.Errf(f.Val, "console needs exactly one of port: or usb:")
	}
	if bf, ok := fs["baud"]; ok {
		v, err := d.IntIn(bf.Val, w+".baud", 1, 12_000_000)
		if err != nil {
			return nil, err
		}
		c.Baud = int(v)
	}
	if pf, ok := fs["patterns"]; ok {
		ps, err := d.Fields(pf.Val, w+".patterns", "boot", "app", "recovery")
		if err != nil {
			return nil, err
		}
		for k, dst := range map[string]*string{"boot": &c.Patterns.Boot, "app": &c.Patterns.App, "recovery": &c.Patterns.Recovery} {
			v, ok := ps[k]
			if !ok {
				continue
			}
			if *dst, err = d.Str(v.Val, w+".patterns."+k); err != nil {
				return nil, err
			}
			if _, err := regexp.Compile(*dst); err != nil {
				return nil, d.Errf(v.Val, "%s.patterns.%s: bad pattern: %v", w, k, err)
			}
		}
	}
	return c, nil
}

func decodeCoAP(d *config.Decoder, f config.Field, w string) (*CoAP, error) {
	fs, err := d.Fields(f.Val, w, "address", "profile", "path", "dtls", "oscore", "link", "qblock", "version")
	if err != nil {
		return nil, err
	}
	c := &CoAP{Profile: ProfileResumable, At: config.PosOf(f.Key)}
	af, ok := fs["address"]
	if !ok {
		return nil, d.Errf(f.Key, "%s: address is required", w)
	}
	if c.Address, err = d.Str(af.Val, w+".address"); err != nil {
		return nil, err
	}
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, d.Errf(af.Val, "coap address %q: want host:port ([addr]:port for IPv6): %v", c.Address, err)
	}
	if pf, ok := fs["profile"]; ok {
		if c.Profile, err = d.Str(pf.Val, w+".profile"); err != nil {
			return nil, err
		}
		if c.Profile != ProfileResumable && c.Profile != ProfileBlock1 {
			return nil, d.Errf(pf.Val, "unknown profile %q: want resumable or block1", c.Profile)
		}
		c.ProfileAt = config.PosOf(pf.Val)
	}
	if pf, ok := fs["path"]; ok {
		if c.Path, err = d.Str(pf.Val, w+".path"); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, "?# ") {
			return nil, d.Errf(pf.Val, "%s.path %q: want an absolute URI path such as /fw", w, c.Path)
		}
	}
	if df, ok := fs["dtls"]; ok {
		ds, err := d.Fields(df.Val, w+".dtls", "identity", "key_file", "key_env", "cache")
		if err != nil {
			return nil, err
		}
		dt := &DTLS{File: d.File, IdentityAt: config.PosOf(df.Key)}
		if v, ok := ds["identity"]; ok {
			if dt.Identity, err = d.Str(v.Val, w+".dtls.identity"); err != nil {
				return nil, err
			}
			dt.IdentityAt = config.PosOf(v.Val)
		}
		if dt.Identity == "" {
			return nil, d.Errf(df.Val, "dtls needs an identity")
		}
		kf, hasFile := ds["key_file"]
		ke, hasEnv := ds["key_env"]
		if hasFile == hasEnv {
			return nil, d.Errf(df.Val, "dtls needs exactly one of key_file or key_env")
		}
		if hasFile {
			p, err := d.Str(kf.Val, w+".dtls.key_file")
			if err != nil {
				return nil, err
			}
			if !filepath.IsAbs(p) {
				p = filepath.Join(filepath.Dir(d.File), p)
			}
			if fi, err := os.Stat(p); err != nil {
				return nil, d.Errf(kf.Val, "key file: %v", err)
			} else if fi.IsDir() {
				return nil, d.Errf(kf.Val, "key file: %s is a directory", p)
			}
			dt.KeyFile = p
		} else {
			if dt.KeyEnv, err = d.Str(ke.Val, w+".dtls.key_env"); err != nil {
				return nil, err
			}
			if dt.KeyEnv == "" {
				return nil, d.Errf(ke.Val, "%s.dtls.key_env: empty", w)
			}
		}
		dt.Cache = "none"
		if cf, ok := ds["cache"]; ok {
			if dt.Cache, err = d.Str(cf.Val, w+".dtls.cache"); err != nil {
				return nil, err
			}
			if dt.Cache != "none" && dt.Cache != "session" && dt.Cache != "state" {
				return nil, d.Errf(cf.Val, "%s.dtls.cache %q: want none, session or state", w, dt.Cache)
			}
		}
		c.DTLS = dt
	}
	if of, ok := fs["oscore"]; ok {
		if c.DTLS != nil {
			return nil, d.Errf(of.Key, "%s: dtls and oscore are two ways to secure one endpoint: give one", w)
		}
		if c.OSCORE, err = decodeOSCORE(d, of, w+".oscore"); err != nil {
			return nil, err
		}
	}
	if lf, ok := fs["link"]; ok {
		if c.Link, err = link.Decode(d, lf.Val, w+".link"); err != nil {
			return nil, err
		}
	}
	if qf, ok := fs["qblock"]; ok {
		if c.QBlock, err = decodeQBlock(d, qf, w+".qblock"); err != nil {
			return nil, err
		}
		if c.QBlock != nil && c.OSCORE != nil {
			return nil, d.Errf(qf.Key, "%s: Q-Block1 is not offered over OSCORE: drop qblock or oscore", w)
		}
	}
	if vf, ok := fs["version"]; ok {
		if c.Version, err = decodeVersion(d, vf, w+".version"); err != nil {
			return nil, err
		}
		if c.Profile != ProfileBlock1 {
			return nil, d.Errf(vf.Key, "%s: a version check is for a plain CoAP device (profile: block1); a resumable device answers GET /fw/version", w)
		}
	}
	return c, nil
}

// decodeVersion reads version: none | lwm2m | {get: PATH, match: RE} |
// {console: RE}.
func decodeVersion(d *config.Decoder, f config.Field, w string) (*VersionCheck, error) {
	v := &VersionCheck{At: config.PosOf(f.Key)}
	const want = "want none, lwm2m, {get: /path, match: 'regexp'} or {console: 'regexp'}"
	if !d.IsMap(f.Val) {
		s, err := d.Str(f.Val, w)
		if err != nil {
			return nil, d.Errf(f.Val, "%s: %s", w, want)
		}
		switch s {
		case "none":
			v.Mode = VersionNone
		case "lwm2m":
			v.Mode, v.Get = VersionCoAP, LwM2MVersionPath
		default:
			return nil, d.Errf(f.Val, "%s: unknown check %q: %s", w, s, want)
		}
		return v, nil
	}
	fs, err := d.Fields(f.Val, w, "get", "match", "console")
	if err != nil {
		return nil, err
	}
	re := func(f config.Field, what string) (*regexp.Regexp, error) {
		s, err := d.Str(f.Val, what)
		if err != nil {
			return nil, err
		}
		if s == "" {
			return nil, d.Errf(f.Val, "%s: empty pattern", what)
		}
		r, err := regexp.Compile(s)
		if err != nil {
			return nil, d.Errf(f.Val, "%s: %v", what, err)
		}
		if r.NumSubexp() > 1 && r.SubexpIndex("version") < 0 {
			// The first group is the version; say so when there are more.
			return nil, d.Errf(f.Val, "%s: %d groups: the version is the first group, make the others non-capturing (?:...)", what, r.NumSubexp())
		}
		return r, nil
	}
	gf, hasGet := fs["get"]
	cf, hasConsole := fs["console"]
	mf, hasMatch := fs["match"]
	switch {
	case hasGet == hasConsole:
		return nil, d.Errf(f.Val, "%s: give exactly one of get: or console:", w)
	case hasConsole:
		if hasMatch {
			return nil, d.Errf(mf.Key, "%s: match: is for get:; console: is the pattern itself", w)
		}
		v.Mode = VersionConsole
		if v.Match, err = re(cf, w+".console"); err != nil {
			return nil, err
		}
		return v, nil
	}
	v.Mode = VersionCoAP
	if v.Get, err = d.Str(gf.Val, w+".get"); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(v.Get, "/") || strings.ContainsAny(v.Get, "?# ") {
		return nil, d.Errf(gf.Val, "%s.get %q: want an absolute URI path such as /fw/version", w, v.Get)
	}
	if hasMatch {
		if v.Match, err = re(mf, w+".match"); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// decodeQBlock reads qblock: true | false | {max_payloads: N, non_timeout: D}.
func decodeQBlock(d *config.Decoder, f config.Field, w string) (*QBlock, error) {
	q := &QBlock{At: config.PosOf(f.Key)}
	if !d.IsMap(f.Val) {
		on, err := d.Bool(f.Val, w)
		if err != nil {
			return nil, d.Errf(f.Val, "%s: want true, false or {max_payloads: N, non_timeout: D}", w)
		}
		if !on {
			return nil, nil
		}
		return q, nil
	}
	fs, err := d.Fields(f.Val, w, "max_payloads", "non_timeout")
	if err != nil {
		return nil, err
	}
	if v, ok := fs["max_payloads"]; ok {
		n, err := d.IntIn(v.Val, w+".max_payloads", 1, 64)
		if err != nil {
			return nil, err
		}
		q.MaxPayloads = int(n)
	}
	if v, ok := fs["non_timeout"]; ok {
		if q.NonTimeout, err = d.Duration(v.Val, w+".non_timeout", time.Minute); err != nil {
			return nil, err
		}
		if q.NonTimeout == 0 {
			return nil, d.Errf(v.Val, "%s.non_timeout: want more than 0 (e.g. 2s)", w)
		}
	}
	return q, nil
}

func decodeOSCORE(d *config.Decoder, f config.Field, w string) (*OSCORE, error) {
	fs, err := d.Fields(f.Val, w, "master_secret_file", "master_secret_env", "master_salt", "sender_id",
		"recipient_id", "id_context", "replay_window", "sequence_file")
	if err != nil {
		return nil, err
	}
	o := &OSCORE{File: d.File, At: config.PosOf(f.Key), ReplayWindow: 32, SenderID: []byte{}, RecipientID: []byte{}}
	sf, hasFile := fs["master_secret_file"]
	se, hasEnv := fs["master_secret_env"]
	if hasFile == hasEnv {
		return nil, d.Errf(f.Val, "oscore needs exactly one of master_secret_file or master_secret_env")
	}
	rel := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(filepath.Dir(d.File), p)
		}
		return p
	}
	if hasFile {
		p, err := d.Str(sf.Val, w+".master_secret_file")
		if err != nil {
			return nil, err
		}
		p = rel(p)
		if fi, err := os.Stat(p); err != nil {
			return nil, d.Errf(sf.Val, "master secret file: %v", err)
		} else if fi.IsDir() {
			return nil, d.Errf(sf.Val, "master secret file: %s is a directory", p)
		}
		o.SecretFile = p
	} else {
		if o.SecretEnv, err = d.Str(se.Val, w+".master_secret_env"); err != nil {
			return nil, err
		}
		if o.SecretEnv == "" {
			return nil, d.Errf(se.Val, "%s.master_secret_env: empty", w)
		}
	}
	for k, dst := range map[string]*[]byte{"master_salt": &o.Salt, "sender_id": &o.SenderID, "recipient_id": &o.RecipientID, "id_context": &o.IDContext} {
		v, ok := fs[k]
		if !ok {
			continue
		}
		str, err := d.Str(v.Val, w+"."+k)
		if err != nil {
			return nil, err
		}
		b, err := hex.DecodeString(str)
		if err != nil {
			return nil, d.Errf(v.Val, "%s.%s %q: want hex bytes (\"\" for none)", w, k, str)
		}
		// RFC 8613 §3.3: an ID is at most nonce length − 6 = 7 bytes.
		if (k == "sender_id" || k == "recipient_id") && len(b) > 7 {
			return nil, d.Errf(v.Val, "%s.%s: %d bytes, at most 7 with AES-CCM-16-64-128", w, k, len(b))
		}
		*dst = b
	}
	if _, ok := fs["sender_id"]; !ok {
		return nil, d.Errf(f.Val, "%s: sender_id is required (the bench's ID, hex)", w)
	}
	if _, ok := fs["recipient_id"]; !ok {
		return nil, d.Errf(f.Val, "%s: recipient_id is required (the device's ID, hex)", w)
	}
	if string(o.SenderID) == string(o.RecipientID) {
		return nil, d.Errf(fs["recipient_id"].Val, "%s: sender_id and recipient_id must differ", w)
	}
	if v, ok := fs["replay_window"]; ok {
		n, err := d.IntIn(v.Val, w+".replay_window", 1, 1024)
		if err != nil {
			return nil, err
		}
		o.ReplayWindow = int(n)
	}
	if v, ok := fs["sequence_file"]; ok {
		p, err := d.Str(v.Val, w+".sequence_file")
		if err != nil {
			return nil, err
		}
		o.SequenceFile = rel(p)
	}
	return o, nil
}

func decodeFlash(d *config.Decoder, f config.Field, w string) (*Flash, error) {
	fs, err := d.Fields(f.Val, w, "size", "slot_size", "base", "app_address", "erase_from", "program_time", "write_unit")
	if err != nil {
		return nil, err
	}
	fl := &Flash{At: config.PosOf(f.Key)}
	for k, dst := range map[string]*int64{"size": &fl.Size, "slot_size": &fl.SlotSize} {
		if v, ok := fs[k]; ok {
			if *dst, err = d.Size(v.Val, w+"."+k, 0, 1<<32); err != nil {
				return nil, err
			}
		}
	}
	for k, dst := range map[string]*uint32{"base": &fl.Base, "app_address": &fl.AppAddr, "erase_from": &fl.EraseFrom} {
		if v, ok := fs[k]; ok {
			n, err := d.Hex(v.Val, w+"."+k, 32)
			if err != nil {
				return nil, err
			}
			*dst = uint32(n)
		}
	}
	pt, hasTime := fs["program_time"]
	wu, hasUnit := fs["write_unit"]
	if hasTime != hasUnit {
		return nil, d.Errf(f.Val, "%s: program_time and write_unit go together (the time to program write_unit bytes)", w)
	}
	if hasTime {
		if fl.ProgramTime, err = d.Duration(pt.Val, w+".program_time", time.Second); err != nil {
			return nil, err
		}
		n, err := d.IntIn(wu.Val, w+".write_unit", 1, 4096)
		if err != nil {
			return nil, err
		}
		fl.WriteUnit, fl.Timed = int(n), true
	}
	if fl.Size > 0 && fl.SlotSize > fl.Size {
		return nil, d.Errf(fs["slot_size"].Val, "%s: slot_size %d is larger than the flash (%d)", w, fl.SlotSize, fl.Size)
	}
	return fl, nil
}

// Key reads the DTLS pre-shared key from its file or environment variable.
func (d *DTLS) Key() ([]byte, error) {
	if d.KeyEnv != "" {
		v := os.Getenv(d.KeyEnv)
		if v == "" {
			return nil, fmt.Errorf("dtls key: environment variable %s is empty", d.KeyEnv)
		}
		return []byte(v), nil
	}
	return config.ReadPSK(d.KeyFile)
}
