package esprom_test

import (
	"context"
	"os/exec"
)

func execContext(ctx context.Context, c *exec.Cmd) *exec.Cmd {
	n := exec.CommandContext(ctx, c.Path, c.Args[1:]...)
	n.Env, n.Dir = c.Env, c.Dir
	return n
}
