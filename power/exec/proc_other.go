//go:build !unix

package exec

import osexec "os/exec"

// setGroup leaves cmd as it is: without process groups only the command
// itself is killed on cancel.
func setGroup(*osexec.Cmd) {}
