package esprom

import "go.bug.st/serial"

// SetOpenPort replaces how the probe opens its port, for a test that
// sees the modem lines; the returned function restores it.
func SetOpenPort(f func(string, *serial.Mode) (serial.Port, error)) (restore func()) {
	old := openPort
	openPort = f
	return func() { openPort = old }
}
