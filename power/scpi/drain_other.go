//go:build !unix

package scpi

import "net"

// drainTCP would discard unread input; without a non-blocking peek here,
// a closed connection is found by the failure of the command instead.
func drainTCP(*net.TCPConn) error { return nil }
