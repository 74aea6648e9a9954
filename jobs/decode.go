package jobs

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/goccy/go-yaml/ast"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/link"
	"github.com/fudbench/fudbench/results"
)

// Load reads, decodes and validates a job file, and checks that the files
// it names (bench file, image files) exist. Whether an image fits a
// board's flash is checked by Prepare, which knows the board.
func Load(path string) (*Job, error) {
	data, err := config.ReadFile(path, "job file")
	if err != nil {
		return nil, err
	}
	j, err := parse(path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if j.Bench != "" {
		if err := statFile(j.Bench); err != nil {
			return nil, j.errAt(j.benchAt, "bench: %v", err)
		}
	}
	for _, im := range []*ImageSpec{&j.Baseline, &j.Image} {
		if im.File != "" {
			if err := statFile(im.File); err != nil {
				return nil, j.errAt(im.At, "image file: %v", err)
			}
		}
	}
	return j, nil
}

func statFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	return nil
}

// Parse decodes and validates job file contents; name is used in errors
// and relative paths are resolved against its directory. Files are not
// opened.
//
// Environment variables are expanded only in a file Load reads; here
// ${NAME} is an error (a job sent to a lab is taken as written: the
// environment of the host it runs on is not the submitter's).
func Parse(name string, data []byte) (*Job, error) {
	return parse(name, data, nil)
}

// parse decodes job file contents, expanding ${NAME} with env (nil:
// refusing it).
func parse(name string, data []byte, env func(string) (string, bool)) (*Job, error) {
	d, body, err := config.Parse(name, data)
	if err != nil {
		return nil, err
	}
	if env != nil {
		err = d.ExpandEnv(body, env)
	} else {
		err = d.RefuseEnv(body, "environment variables are expanded in a job file read from disk (fudbench run), not in a job given as text (a lab's task)")
	}
	if err != nil {
		return nil, err
	}
	if body == nil {
		return nil, config.Errorf(name, config.Pos{Line: 1, Column: 1}, "empty job file: want at least baseline:, image: and cuts:")
	}
	j := &Job{File: name, Text: data}
	if err := decodeJob(d, j, body); err != nil {
		return nil, err
	}
	return j, nil
}

var topKeys = []string{"name", "bench", "boards", "tag", "baseline", "image", "profile", "profiles",
	"block_size", "path", "cuts", "off_time", "recovery_timeout", "accept", "repeat", "seed",
	"parallel", "reflash", "missed_cut", "link", "links", "cut", "sample"}

func decodeJob(d *config.Decoder, j *Job, body ast.Node) error {
	fs, err := d.Fields(body, "job", topKeys...)
	if err != nil {
		return err
	}
	dir := filepath.Dir(d.File)
	rel := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	j.Name = strings.TrimSuffix(filepath.Base(d.File), filepath.Ext(d.File))
	j.BlockSize = DefaultBlockSize
	j.OffTime = DefaultOffTime
	j.RecoveryTimeout = DefaultRecoveryTimeout
	j.Repeat = 1
	j.Seed = 1
	j.Parallel = true
	j.Reflash = true
	j.MissedCut = MissedRetry

	if f, ok := fs["name"]; ok {
		if j.Name, err = d.Str(f.Val, "name"); err != nil {
			return err
		}
		if strings.TrimSpace(j.Name) == "" || len(j.Name) > 128 {
			return d.Errf(f.Val, "name: want 1 to 128 characters")
		}
	}
	if f, ok := fs["bench"]; ok {
		b, err := d.Str(f.Val, "bench")
		if err != nil {
			return err
		}
		if b == "" {
			return d.Errf(f.Val, "bench: empty path (leave bench out for the built-in simulated bench)")
		}
		j.Bench, j.benchAt = rel(b), config.PosOf(f.Val)
	}
	fb, hasBoards := fs["boards"]
	ft, hasTag := fs["tag"]
	if hasBoards && hasTag {
		return d.Errf(ft.Key, "tag: give boards or tag, not both")
	}
	if hasBoards {
		if err := decodeBoardList(d, j, fb.Val); err != nil {
			return err
		}
	}
	if hasTag {
		if j.Tag, err = d.Str(ft.Val, "tag"); err != nil {
			return err
		}
		if j.Tag == "" {
			return d.Errf(ft.Val, "tag: empty")
		}
		j.tagAt = config.PosOf(ft.Val)
	}
	for _, im := range []struct {
		key, what string
		spec      *ImageSpec
	}{{"baseline", "baseline", &j.Baseline}, {"image", "update", &j.Image}} {
		f, ok := fs[im.key]
		if !ok {
			return d.Errf(body, "%s: required (the %s image: file: or build:)", im.key, im.what)
		}
		if im.key == "baseline" && !d.IsMap(f.Val) {
			if err := decodeChain(d, j, f.Val); err != nil {
				return err
			}
			continue
		}
		if err := decodeImage(d, im.spec, f.Val, im.key, rel); err != nil {
			return err
		}
	}
	if j.Chain {
		if err := j.checkChainImage(); err != nil {
			return err
		}
	}
	if f, ok := fs["profile"]; ok {
		if j.Profile, err = decodeProfile(d, f.Val, "profile"); err != nil {
			return err
		}
		j.profileAt = config.PosOf(f.Val)
	}
	if f, ok := fs["profiles"]; ok {
		pf, err := d.FieldsAny(f.Val, "profiles", false)
		if err != nil {
			return err
		}
		j.Profiles = map[string]string{}
		j.profilesAt = map[string]config.Pos{}
		for _, e := range pf {
			if !boards.NameOK(e.Name) {
				return d.Errf(e.Key, "profiles: %q is not a board name", e.Name)
			}
			p, err := decodeProfile(d, e.Val, "profiles."+e.Name)
			if err != nil {
				return err
			}
			j.Profiles[e.Name] = p
			j.profilesAt[e.Name] = config.PosOf(e.Key)
		}
	}
	if f, ok := fs["link"]; ok {
		if j.Link, err = link.Decode(d, f.Val, "link"); err != nil {
			return err
		}
	}
	if f, ok := fs["links"]; ok {
		lf, err := d.FieldsAny(f.Val, "links", false)
		if err != nil {
			return err
		}
		j.Links = map[string]*link.Config{}
		j.linksAt = map[string]config.Pos{}
		for _, e := range lf {
			if !boards.NameOK(e.Name) {
				return d.Errf(e.Key, "links: %q is not a board name", e.Name)
			}
			if j.Links[e.Name], err = link.Decode(d, e.Val, "links."+e.Name); err != nil {
				return err
			}
			j.linksAt[e.Name] = config.PosOf(e.Key)
		}
	}
	if f, ok := fs["block_size"]; ok {
		v, err := d.Int(f.Val, "block_size")
		if err != nil {
			return err
		}
		if v < 16 || v > 1024 || v&(v-1) != 0 {
			return d.Errf(f.Val, "block_size %d: want a power of two from 16 to 1024", v)
		}
		j.BlockSize = int(v)
	}
	if f, ok := fs["path"]; ok {
		if j.Path, err = d.Str(f.Val, "path"); err != nil {
			return err
		}
		if !strings.HasPrefix(j.Path, "/") || strings.ContainsAny(j.Path, "?# ") {
			return d.Errf(f.Val, "path %q: want an absolute URI path such as /fw", j.Path)
		}
		j.pathAt = config.PosOf(f.Key)
	}
	if f, ok := fs["off_time"]; ok {
		if j.OffTime, err = d.Duration(f.Val, "off_time", MaxOffTime); err != nil {
			return err
		}
	}
	if f, ok := fs["recovery_timeout"]; ok {
		if j.RecoveryTimeout, err = d.Duration(f.Val, "recovery_timeout", MaxRecoveryTimeout); err != nil {
			return err
		}
		if j.RecoveryTimeout == 0 {
			return d.Errf(f.Val, "recovery_timeout: must be more than 0")
		}
	}
	if f, ok := fs["accept"]; ok {
		if err := decodeAccept(d, j, f.Val); err != nil {
			return err
		}
	} else {
		j.Accept = map[string][]results.Outcome{"*": {results.Updated}}
	}
	if f, ok := fs["repeat"]; ok {
		v, err := d.IntIn(f.Val, "repeat", 1, MaxRepeat)
		if err != nil {
			return err
		}
		j.Repeat = int(v)
	}
	if f, ok := fs["seed"]; ok {
		if j.Seed, err = d.Uint64(f.Val, "seed"); err != nil {
			return err
		}
	}
	for k, dst := range map[string]*bool{"parallel": &j.Parallel, "reflash": &j.Reflash} {
		if f, ok := fs[k]; ok {
			if *dst, err = d.Bool(f.Val, k); err != nil {
				return err
			}
		}
	}
	if f, ok := fs["missed_cut"]; ok {
		if j.MissedCut, err = d.Str(f.Val, "missed_cut"); err != nil {
			return err
		}
		if j.MissedCut != MissedRetry && j.MissedCut != MissedFail {
			return d.Errf(f.Val, "missed_cut %q: want retry (run the cycle once more) or fail", j.MissedCut)
		}
	}
	if f, ok := fs["cut"]; ok {
		if err := decodeCutMode(d, j, f); err != nil {
			return err
		}
	}
	if f, ok := fs["sample"]; ok {
		if err := decodeSample(d, j, f.Val); err != nil {
			return err
		}
	}
	f, ok := fs["cuts"]
	if !ok {
		return d.Errf(body, "cuts: required (a list; use [none] for plain updates)")
	}
	j.cutsAt = config.PosOf(f.Key)
	if err := decodeCuts(d, j, f.Val); err != nil {
		return err
	}
	return j.checkBrownoutKinds()
}

func decodeProfile(d *config.Decoder, n ast.Node, what string) (string, error) {
	p, err := d.Str(n, what)
	if err != nil {
		return "", err
	}
	switch p {
	case boards.ProfileResumable, boards.ProfileBlock1:
		return p, nil
	}
	return "", d.Errf(n, "%s %q: want resumable or block1", what, p)
}

func decodeBoardList(d *config.Decoder, j *Job, n ast.Node) error {
	items, err := d.Seq(n, "boards", false)
	if err != nil {
		return err
	}
	if len(items) == 0 {
		return d.Errf(n, "boards: empty list (leave boards out for every board of the bench)")
	}
	for _, it := range items {
		s, err := d.Str(it, "boards")
		if err != nil {
			return err
		}
		if !boards.NameOK(s) {
			return d.Errf(it, "boards: %q is not a board name", s)
		}
		if slices.Contains(j.Boards, s) {
			return d.Errf(it, "boards: %q listed twice", s)
		}
		j.Boards = append(j.Boards, s)
		j.boardsAt = append(j.boardsAt, config.PosOf(it))
	}
	return nil
}

func decodeAccept(d *config.Decoder, j *Job, n ast.Node) error {
	fs, err := d.FieldsAny(n, "accept", false)
	if err != nil {
		return err
	}
	j.Accept = map[string][]results.Outcome{}
	j.acceptAt = map[string]config.Pos{}
	for _, e := range fs {
		if e.Name != "*" && !boards.NameOK(e.Name) {
			return d.Errf(e.Key, "accept: %q is not a board name or \"*\"", e.Name)
		}
		items, err := d.Seq(e.Val, "accept."+e.Name, true)
		if err != nil {
			return err
		}
		if len(items) == 0 {
			return d.Errf(e.Val, "accept.%s: empty list: no outcome would pass", e.Name)
		}
		var outs []results.Outcome
		for _, it := range items {
			s, err := d.Str(it, "accept."+e.Name)
			if err != nil {
				return err
			}
			o := results.Outcome(s)
			switch {
			case o == results.MissedCut || o == results.InfraError:
				return d.Errf(it, "accept.%s: %s is a failure of the bench and is never accepted", e.Name, s)
			case !slices.Contains(results.Outcomes, o):
				return d.Errf(it, "accept.%s: unknown outcome %q (known: %s)", e.Name, s, outcomeList())
			}
			if !slices.Contains(outs, o) {
				outs = append(outs, o)
			}
		}
		j.Accept[e.Name] = outs
		j.acceptAt[e.Name] = config.PosOf(e.Key)
	}
	return nil
}

func outcomeList() string {
	var s []string
	for _, o := range results.Outcomes {
		s = append(s, string(o))
	}
	return strings.Join(s, ", ")
}

func decodeImage(d *config.Decoder, im *ImageSpec, n ast.Node, what string, rel func(string) string) error {
	fs, err := d.Fields(n, what, "file", "build", "version")
	if err != nil {
		return err
	}
	ff, hasFile := fs["file"]
	fb, hasBuild := fs["build"]
	if vf, ok := fs["version"]; ok {
		if hasBuild {
			return d.Errf(vf.Key, "%s.version: a built image reports its build.version", what)
		}
		if im.Version, err = d.Str(vf.Val, what+".version"); err != nil {
			return err
		}
		if im.Version == "" || strings.ContainsAny(im.Version, "\x00\n") {
			return d.Errf(vf.Val, "%s.version: want the version string the image reports, on one line", what)
		}
		im.VersionAt = config.PosOf(vf.Val)
	}
	switch {
	case hasFile && hasBuild:
		return d.Errf(fb.Key, "%s: give file or build, not both", what)
	case !hasFile && !hasBuild:
		return d.Errf(n, "%s: want file: or build:", what)
	case hasFile:
		p, err := d.Str(ff.Val, what+".file")
		if err != nil {
			return err
		}
		if p == "" {
			return d.Errf(ff.Val, "%s.file: empty path", what)
		}
		im.File, im.At = rel(p), config.PosOf(ff.Val)
		return nil
	}
	w := what + ".build"
	bs, err := d.Fields(fb.Val, w, "version", "seq", "size", "seed")
	if err != nil {
		return err
	}
	b := &BuildSpec{Size: DefaultBuildSize, Seed: 1}
	f, ok := bs["version"]
	if !ok {
		return d.Errf(fb.Key, "%s: version is required", w)
	}
	if b.Version, err = d.Str(f.Val, w+".version"); err != nil {
		return err
	}
	if b.Version == "" || len(b.Version) > 32 || strings.ContainsRune(b.Version, 0) {
		return d.Errf(f.Val, "%s.version: want 1 to 32 bytes", w)
	}
	f, ok = bs["seq"]
	if !ok {
		return d.Errf(fb.Key, "%s: seq (the anti-rollback sequence) is required", w)
	}
	seq, err := d.IntIn(f.Val, w+".seq", 0, math.MaxUint32)
	if err != nil {
		return err
	}
	b.Seq = uint32(seq)
	if f, ok := bs["size"]; ok {
		v, err := d.Size(f.Val, w+".size", minBuildSize, maxBuildSize)
		if err != nil {
			return err
		}
		b.Size = int(v)
	}
	if f, ok := bs["seed"]; ok {
		if b.Seed, err = d.Int(f.Val, w+".seed"); err != nil {
			return err
		}
	}
	im.Build, im.At = b, config.PosOf(fb.Key)
	return nil
}

// decodeChain reads baseline: chain, the one scalar baseline.
func decodeChain(d *config.Decoder, j *Job, n ast.Node) error {
	v, err := d.Str(n, "baseline")
	if err != nil {
		return d.Errf(n, "baseline: want chain, or file: or build:")
	}
	if v != "chain" {
		return d.Errf(n, "baseline %q: want chain (each cycle updates from the image of the cycle before), or file: or build:", v)
	}
	j.Chain, j.chainAt = true, config.PosOf(n)
	return nil
}
