package rsp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrRefused means the peer answered '-' to every try of a packet.
var ErrRefused = errors.New("rsp: packet refused")

// Link is one end of an RSP byte stream as far as acknowledgements go:
// until both ends agree on QStartNoAckMode, each packet is answered with
// '+' (received) or '-' (send it again). The client and the stub each keep
// one per connection.
type Link struct {
	R *bufio.Reader // the peer's bytes
	W io.Writer     // to the peer
	// NoAck: acknowledgements are off (after QStartNoAckMode).
	NoAck bool
	// Tries bounds how often Send writes one packet that the peer refuses.
	Tries int
	// MoveOn lists the bytes that, read in place of an acknowledgement,
	// show that the peer has moved on: a '$' is its next packet (a server
	// that does not acknowledge), 0x03 an interrupt. They are left in R
	// and the packet counts as received.
	MoveOn string
	// Resend, if not nil, is called with the payload before each
	// retransmission.
	Resend func(data []byte)

	frame []byte
}

// Send frames data and writes it; with acknowledgements on it then waits
// for the peer's '+' and writes the frame again after each '-', Tries
// times at most. I/O errors are returned as they are, so that the caller
// can tell a timeout or a hang-up; a packet refused every time is an error
// wrapping ErrRefused.
func (l *Link) Send(data []byte) error {
	l.frame = AppendPacket(l.frame[:0], data)
	for try := range l.Tries {
		if try > 0 && l.Resend != nil {
			l.Resend(data)
		}
		if _, err := l.W.Write(l.frame); err != nil {
			return err
		}
		if l.NoAck {
			return nil
		}
		acked, err := l.waitAck()
		if err != nil {
			return err
		}
		if acked {
			return nil
		}
	}
	return fmt.Errorf("%w %d times", ErrRefused, l.Tries)
}

// waitAck reads up to the acknowledgement of a packet: true for '+',
// false for '-'. A byte of MoveOn is left for the next read and counts as
// '+'; anything else is noise.
func (l *Link) waitAck() (bool, error) {
	for {
		b, err := l.R.ReadByte()
		if err != nil {
			return false, err
		}
		switch {
		case b == '+':
			return true, nil
		case b == '-':
			return false, nil
		case strings.IndexByte(l.MoveOn, b) >= 0:
			return true, l.R.UnreadByte()
		}
	}
}

// Ack answers a packet read from the peer: '+' when it was good, '-' to
// have it sent again. It writes nothing while acknowledgements are off.
func (l *Link) Ack(good bool) error {
	if l.NoAck {
		return nil
	}
	b := byte('+')
	if !good {
		b = '-'
	}
	_, err := l.W.Write([]byte{b})
	return err
}
