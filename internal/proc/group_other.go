//go:build !unix

package proc

import "os/exec"

// setGroup leaves cmd as it is: without process groups a cancel kills only
// the command itself.
func setGroup(*exec.Cmd) {}
