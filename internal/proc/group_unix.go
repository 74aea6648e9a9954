//go:build unix

package proc

import (
	"errors"
	"os/exec"
	"syscall"
)

// setGroup runs cmd in a process group of its own and makes a cancel kill
// the whole group, so that a script's children and the helpers a tool
// started die with it.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return nil // the group is gone already
		}
		return err
	}
}
