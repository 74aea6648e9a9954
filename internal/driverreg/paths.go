package driverreg

import (
	"path/filepath"
	"strings"
)

// Path resolves a path a driver's settings name against the directory of
// the file the settings came from, when they came from one (settings with
// a Dir() string method, as a bench file's sections have): a bench file
// works from any working directory. An absolute path, an empty one, and
// settings made in code are left as they are; a resolved path is
// absolute.
func Path(st any, p string) string {
	d, ok := st.(interface{ Dir() string })
	if p == "" || filepath.IsAbs(p) || !ok {
		return p
	}
	j := filepath.Join(d.Dir(), p)
	// Absolute, so that a program beside a bench file named by a relative
	// path ("bench.yaml", "./relay.sh") is not looked up on PATH.
	if a, err := filepath.Abs(j); err == nil {
		return a
	}
	return j
}

// Program resolves a program a driver's settings name: a name without a
// slash is looked up on PATH when it runs, as a shell would; one with a
// slash is a path, resolved as Path does.
func Program(st any, p string) string {
	if !strings.Contains(p, "/") {
		return p
	}
	return Path(st, p)
}
