// Package jobs holds job plans — which boards, which images, where to cut
// power and what outcome counts as success — prepares them against a bench
// and runs them.
//
// A plan is a YAML file (see docs/jobs.md), read strictly by
// internal/config before anything is powered: an unknown key, a wrong type
// or a bad value is a *config.Error naming the file, line and column. Cut
// entries keep their positions, so a cut point that turns out to lie past
// the image's last block — known only once the image is built or read —
// or a cut a board's wiring cannot make is reported at its line.
//
// The lifecycle of a run, each step in one place:
//
//	Load/Parse   decode and validate the job file (decode.go)
//	Prepare      images read or built and checked, boards selected, the
//	             plan expanded, each board's wiring and timing checked
//	             against its cuts, drivers opened once and closed, keys
//	             read — nothing powered (prepare.go)
//	Execute      lease and bind each board (bench.Bind), then for every
//	             planned cycle run the board's bench.Strategy and record
//	             the outcome; a missed cut runs again once (executor.go)
//
// Each kind of cut is defined once, in its own file (cut_*.go): decode,
// expand, the wiring it needs, its description, its trigger and how to
// tell whether it landed.
package jobs

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/results"
)

// Defaults and limits of a job plan.
const (
	DefaultBlockSize       = 1024
	DefaultPath            = "/fw"
	DefaultOffTime         = 100 * time.Millisecond
	DefaultRecoveryTimeout = 30 * time.Second
	DefaultBuildSize       = 64 << 10

	MaxOffTime         = time.Minute
	MaxRecoveryTimeout = time.Hour
	MaxDelay           = 10 * time.Second
	MaxAtTime          = time.Hour
	MaxRepeat          = 100000
	MaxRandomCount     = 100000
	// MaxCycles bounds the cycles one job plans per board, so a typo in
	// a sweep cannot exhaust memory.
	MaxCycles = 1000000

	minBuildSize = 512 // a 256-byte image header plus some payload
	maxBuildSize = 64 << 20
)

// What a run does with a cycle whose cut missed its planned point.
const (
	MissedRetry = "retry" // run the cycle once more (default)
	MissedFail  = "fail"  // record it as missed-cut at once
)

// DemoFile is the name the built-in demo job carries in errors and
// reports.
const DemoFile = "(built-in demo)"

// Job is a decoded, validated job plan. Paths (Bench, image files) are
// resolved against the job file's directory.
type Job struct {
	File  string // the job file; "" for a job made in code
	Text  []byte // the bytes Parse read (the run's job hash is theirs)
	Name  string // default: the file's base name without extension
	Bench string // bench file; "" = the built-in simulated bench
	// Boards names the boards; Tag selects the bench's boards with that
	// tag. At most one is set; neither means every board of the bench.
	Boards   []string
	Tag      string
	Baseline ImageSpec // empty for a job made in code without one (update), and with Chain
	Image    ImageSpec // the update; with Chain, what every link is built from
	// Chain (baseline: chain) makes the campaign a chain of images built
	// from Image's build spec: each cycle updates from the image the
	// device runs to a new one (see Chain).
	Chain bool
	// Profile overrides every board's update profile ("resumable" or
	// "block1"; "" keeps the profile of each board's bench entry);
	// Profiles overrides it per board.
	Profile  string
	Profiles map[string]string
	// Link replaces every board's link (its bench entry's coap.link) for
	// the job; Links replaces it per board. nil keeps the bench entry's.
	Link      *link.Config
	Links     map[string]*link.Config
	BlockSize int    // 16..1024, a power of two
	Path      string // block1 upload path; "" is the board's, else /fw
	Cuts      []CutEntry
	OffTime   time.Duration
	// RecoveryTimeout bounds each wait for the device after power-on.
	RecoveryTimeout time.Duration
	// Accept maps a board name, or "*" for any other board, to the
	// outcomes that pass.
	Accept   map[string][]results.Outcome
	Repeat   int    // passes over the whole cut list
	Seed     uint64 // for random cuts
	Parallel bool   // boards run in parallel
	Reflash  bool   // a bricked board is reflashed over its probe
	// MissedCut is what a run does with a cycle whose cut missed its
	// planned point: MissedRetry or MissedFail.
	MissedCut string
	// Brownouts make every cut a brownout instead of off (cut:), each
	// level a pass over the cut list; none switches power off.
	Brownouts []bench.Brownout
	// Sample is how often a measuring supply is read during an update
	// (sample:); 0 is bench.DefaultSample, negative is off.
	Sample time.Duration

	cutAt, sampleAt, chainAt config.Pos

	benchAt, tagAt, cutsAt, profileAt, pathAt config.Pos
	boardsAt                                  []config.Pos
	acceptAt, profilesAt, linksAt             map[string]config.Pos
}

// ImageSpec is an image: a file, or one built on the fly (sim boards and
// any board that trusts the development key). At most one is set.
type ImageSpec struct {
	File  string // resolved path
	Build *BuildSpec
	// Version is the version string the image reports when it runs, for
	// a board whose version check reads one (boards.VersionCheck); ""
	// takes it from the image's header when it is in fudbench's format.
	Version   string
	VersionAt config.Pos
	At        config.Pos
}

// IsZero reports an image that is not given.
func (s ImageSpec) IsZero() bool { return s.File == "" && s.Build == nil }

// BuildSpec describes an image built with fwimage.Build.
type BuildSpec struct {
	Version string
	Seq     uint32
	Size    int // bytes, header included
	Seed    int64
}

func (j *Job) fileName() string {
	if j.File == "" {
		return DemoFile
	}
	return j.File
}

func (j *Job) errAt(p config.Pos, format string, a ...any) error {
	return config.Errorf(j.fileName(), p, format, a...)
}

// SZX is the RFC 7959 block size exponent of BlockSize.
func (j *Job) SZX() uint8 {
	var szx uint8
	for bs := 16; bs < j.BlockSize && szx < 6; bs <<= 1 {
		szx++
	}
	return szx
}

// Blocks is the number of blocks of an update image of size bytes: the
// argument Cycles needs.
func (j *Job) Blocks(size int) uint32 {
	bs := max(j.BlockSize, 16)
	return uint32((size + bs - 1) / bs)
}

// ProfileFor is the update profile of a board whose bench entry says
// benchProfile: the job's per-board override, else the job's, else the
// bench entry's.
func (j *Job) ProfileFor(board, benchProfile string) string {
	if p, ok := j.Profiles[board]; ok {
		return p
	}
	if j.Profile != "" {
		return j.Profile
	}
	if benchProfile != "" {
		return benchProfile
	}
	return boards.ProfileResumable
}

// LinkFor is the link the job sets for a board: its links entry, else
// the job's link; nil when the job keeps the bench entry's.
func (j *Job) LinkFor(board string) *link.Config {
	if l, ok := j.Links[board]; ok {
		return l
	}
	return j.Link
}

// AcceptedFor lists the outcomes that pass for a board: its own accept
// entry, else "*", else updated.
func (j *Job) AcceptedFor(board string) []results.Outcome {
	if o, ok := j.Accept[board]; ok {
		return o
	}
	if o, ok := j.Accept["*"]; ok {
		return o
	}
	return []results.Outcome{results.Updated}
}

// Accepts tells whether outcome o passes for board.
func (j *Job) Accepts(board string, o results.Outcome) bool {
	return slices.Contains(j.AcceptedFor(board), o)
}

// SelectBoards resolves the job's boards against a bench's inventory: the
// listed names in the job's order, or the bench's boards carrying Tag, or
// all of them, in bench order. A name the bench does not have — in boards,
// accept, profiles or links — is a configuration error at its line.
func (j *Job) SelectBoards(inventory []boards.Board) ([]string, error) {
	have := map[string]bool{}
	var all []string
	for _, b := range inventory {
		have[b.Name] = true
		all = append(all, b.Name)
	}
	var out []string
	switch {
	case len(j.Boards) > 0:
		for i, name := range j.Boards {
			if !have[name] {
				var p config.Pos
				if i < len(j.boardsAt) {
					p = j.boardsAt[i]
				}
				return nil, j.errAt(p, "board %q is not on the bench (have: %s)", name, orNone(all))
			}
			out = append(out, name)
		}
	case j.Tag != "":
		var tags []string
		for _, b := range inventory {
			if b.HasTag(j.Tag) {
				out = append(out, b.Name)
			}
			for _, t := range b.Tags {
				if !slices.Contains(tags, t) {
					tags = append(tags, t)
				}
			}
		}
		if len(out) == 0 {
			return nil, j.errAt(j.tagAt, "no board of the bench has tag %q (tags: %s)", j.Tag, orNone(tags))
		}
	default:
		out = all
		if len(out) == 0 {
			return nil, j.errAt(config.Pos{}, "the bench has no boards")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(j.Accept)) {
		if name != "*" && !slices.Contains(out, name) {
			return nil, j.errAt(j.acceptAt[name], "accept: board %q is not among the job's boards (%s)", name, strings.Join(out, ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(j.Profiles)) {
		if !slices.Contains(out, name) {
			return nil, j.errAt(j.profilesAt[name], "profiles: board %q is not among the job's boards (%s)", name, strings.Join(out, ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(j.Links)) {
		if !slices.Contains(out, name) {
			return nil, j.errAt(j.linksAt[name], "links: board %q is not among the job's boards (%s)", name, strings.Join(out, ", "))
		}
	}
	return out, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
