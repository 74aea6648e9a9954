package jobs

import (
	"bytes"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/fwimage"
)

// imageVersion is the version string an image reports when it runs: the
// job's version: for it, its build's version, or its header's when it is
// in fudbench's format; "" when none says.
func imageVersion(spec ImageSpec, img []byte) string {
	switch {
	case spec.Version != "":
		return spec.Version
	case spec.Build != nil:
		return spec.Build.Version
	case bytes.HasPrefix(img, []byte(fwimage.Magic)):
		if h, err := fwimage.ParseHeader(img); err == nil {
			return h.Version
		}
	}
	return ""
}

// checkVersions makes sure a board whose version check reads a version
// string (a plain CoAP device: boards.VersionCheck) can tell the job's
// images apart by it: each must name its version, and the two must
// differ, or a device still running the baseline would pass for updated.
func (j *Job) checkVersions(p *Prepared, bd *boards.Board) error {
	if bd.CoAP == nil || !bd.CoAP.Version.Reads() {
		return nil
	}
	check := bd.CoAP.Version
	for _, im := range []struct {
		what string
		spec ImageSpec
		img  []byte
		v    string
	}{{"baseline", j.Baseline, p.Baseline, p.BaselineVersion}, {"update", j.Image, p.Update, p.UpdateVersion}} {
		if im.img != nil && im.v == "" {
			return j.errAt(im.spec.At, "%s image: board %s reads which image runs by %s (%s): give the version string this image reports, %s: {file: ..., version: ...}",
				im.what, bd.Name, check, bd.File, map[string]string{"baseline": "baseline", "update": "image"}[im.what])
		}
	}
	if p.Baseline != nil && p.BaselineVersion == p.UpdateVersion {
		at := j.Image.VersionAt
		if at.Line == 0 {
			at = j.Image.At
		}
		return j.errAt(at, "the baseline and the update both report version %q: board %s tells them apart by it (%s)", p.UpdateVersion, bd.Name, check)
	}
	return nil
}
