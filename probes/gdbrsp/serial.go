package gdbrsp

import (
	"io"
	"net"
	"time"

	"github.com/fudbench/fudbench/internal/serialconn"
)

// transport is what the client needs of its byte stream: a net.Conn for a
// server on TCP, a serialconn.Conn for one on a serial port.
type transport interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
	SetReadDeadline(t time.Time) error
}

var (
	_ transport = net.Conn(nil)
	_ transport = (*serialconn.Conn)(nil)
)

// peer names the server: its address or its serial port.
func (cfg *Config) peer() string {
	if cfg.Port != "" {
		return cfg.Port
	}
	return cfg.Address
}
