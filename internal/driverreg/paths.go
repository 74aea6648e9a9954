package driverreg

import (
	"path/filepath"
	"strings"
)

// Path resolves a path a driver's settings name against the directory of
// the file the settings came from, when they came from one (settings with
// a Dir() string method, as a bench file's sections have): a bench file
// works from any working directory. An absolute path, an empty one, and
// settings made in code are left as they are.
func Path(st any, p string) string {
	d, ok := st.(interface{ Dir() string })
	if p == "" || filepath.IsAbs(p) || !ok {
		return p
	}
	return filepath.Join(d.Dir(), p)
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
