//go:build unix

package scpi

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
)

// maxDrain bounds what drainTCP discards.
const maxDrain = 64 << 10

// drainTCP discards what the peer has sent and not been read, without
// waiting, and reports a connection the peer has closed or reset.
func drainTCP(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var (
		gone error
		buf  [512]byte
		n    int
	)
	err = rc.Read(func(fd uintptr) bool {
		for n < maxDrain {
			k, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_DONTWAIT)
			switch {
			case errors.Is(err, syscall.EINTR):
				continue
			case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK):
				return true
			case err != nil:
				gone = err
				return true
			case k == 0:
				gone = io.EOF
				return true
			}
			n += k
		}
		gone = fmt.Errorf("the instrument sent %d bytes or more nobody asked for", maxDrain)
		return true
	})
	if err != nil {
		return err
	}
	return gone
}
