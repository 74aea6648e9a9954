//go:build !unix

package cli

import osexec "os/exec"

// setGroup leaves cmd as it is: without process groups a cancel kills only
// the tool itself.
func setGroup(*osexec.Cmd) {}
