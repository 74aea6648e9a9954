package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is fudbench's own version, recorded with every run.
const version = "0.1.0-dev"

// commit is the source revision when the build could not stamp it
// itself: go build -ldflags "-X main.commit=$(git rev-parse HEAD)".
//
// The go command stamps vcs.revision, vcs.time and vcs.modified only in
// some builds. Checked with Go 1.26.8: `go build` and `go install` stamp
// them (-buildvcs=auto, the default) when the main module is in a git
// checkout; `go run` and `go test` never do unless given -buildvcs=true;
// a `git worktree` checkout (where .git is a file, not a directory) is
// not recognised and gets nothing, silently, even with -buildvcs=true;
// and GOFLAGS=-buildvcs=false (set in this project's development
// environment) turns it off. So the tests' binary, built in a worktree,
// carries no VCS settings, and a release build passes the commit here.
var commit string

// versionInfo is what `fudbench version --json` prints. A field the build
// does not know is null.
type versionInfo struct {
	Version  string  `json:"version"`
	Commit   *string `json:"commit"`   // full revision
	Time     *string `json:"time"`     // commit time, RFC 3339 (VCS stamp only)
	Modified *bool   `json:"modified"` // built with uncommitted changes (VCS stamp only)
	Go       string  `json:"go"`
}

// readVersion reads the running binary's version.
func readVersion() versionInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return versionFrom(bi, commit)
}

// versionFrom prefers the go command's VCS stamp in bi, then ldCommit
// (main.commit); either may be missing.
func versionFrom(bi *debug.BuildInfo, ldCommit string) versionInfo {
	v := versionInfo{Version: version, Go: runtime.Version()}
	if bi != nil {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = &s.Value
			case "vcs.time":
				v.Time = &s.Value
			case "vcs.modified":
				m := s.Value == "true"
				v.Modified = &m
			}
		}
	}
	if v.Commit == nil {
		// Without a revision the stamp's time and state mean nothing.
		v.Time, v.Modified = nil, nil
		if c := strings.TrimSpace(ldCommit); c != "" {
			v.Commit = &c
		}
	}
	return v
}

// String is the one-line form: 0.1.0-dev (commit 96edfa1, 2026-12-02T04:39:17Z, modified).
func (v versionInfo) String() string {
	if v.Commit == nil {
		return v.Version + " (commit unknown)"
	}
	parts := []string{"commit " + shortRev(*v.Commit)}
	if v.Time != nil {
		parts = append(parts, *v.Time)
	}
	if v.Modified != nil && *v.Modified {
		parts = append(parts, "modified")
	}
	return fmt.Sprintf("%s (%s)", v.Version, strings.Join(parts, ", "))
}

// shortRev abbreviates a full git hash as git does by default; anything
// else (say `git describe` output given with -X) is shown as it is.
func shortRev(rev string) string {
	if len(rev) != 40 && len(rev) != 64 {
		return rev
	}
	for _, c := range rev {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return rev
		}
	}
	return rev[:7]
}

func newVersionCmd() *cobra.Command {
	var jsonOut bool
	cmd := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print fudbench's version and the commit it was built from",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			v := readVersion()
			if jsonOut {
				return json.NewEncoder(c.OutOrStdout()).Encode(v)
			}
			_, err := fmt.Fprintln(c.OutOrStdout(), "fudbench "+v.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, "print the version as a JSON object")
	return cmd
}
