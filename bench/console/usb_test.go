package console

import (
	"errors"
	"strings"
	"testing"

	"go.bug.st/serial/enumerator"
)

func TestNormHex(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"0483", "0483", true},
		{"0x0483", "0483", true},
		{"0X374B", "374b", true},
		{"483", "0483", true},
		{" 10c4 ", "10c4", true},
		{"", "", false},
		{"0x", "", false},
		{"12345", "", false},
		{"zz", "", false},
		{"-483", "", false},
	}
	for _, tt := range tests {
		got, err := normHex("vid", tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("normHex(%q) = %q, %v; want %q, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestUSBPick(t *testing.T) {
	ports := []*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		nil,
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "0483", PID: "374B", SerialNumber: "AAA"},
		{Name: "/dev/ttyACM1", IsUSB: true, VID: "0483", PID: "374b", SerialNumber: "BBB"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "10c4", PID: "ea60", SerialNumber: "BBB"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "DUP"},
		{Name: "/dev/ttyUSB2", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "DUP"},
	}
	tests := []struct {
		name    string
		m       USBMatch
		want    string
		err     error
		errText []string
	}{
		{"by serial", USBMatch{VID: "0483", PID: "374b", Serial: "BBB"}, "/dev/ttyACM1", nil, nil},
		{"ids in any form", USBMatch{VID: "0x483", PID: "374B", Serial: "aaa"}, "/dev/ttyACM0", nil, nil},
		{"serial alone is not enough", USBMatch{VID: "10c4", PID: "ea60", Serial: "BBB"}, "/dev/ttyUSB0", nil, nil},
		{"unique vid:pid needs no serial", USBMatch{VID: "10c4", PID: "ea60"}, "/dev/ttyUSB0", nil, nil},
		{"ambiguous without serial", USBMatch{VID: "0483", PID: "374b"}, "", errAmbiguous,
			[]string{"/dev/ttyACM0", "/dev/ttyACM1", "set the adapter's serial number"}},
		{"ambiguous shared serial", USBMatch{VID: "0403", PID: "6001", Serial: "DUP"}, "", errAmbiguous,
			[]string{"share a serial number"}},
		{"wrong serial", USBMatch{VID: "0483", PID: "374b", Serial: "CCC"}, "", errNoMatch,
			[]string{"usb 0483:374b serial CCC", "seen:", "/dev/ttyS0 (not USB)", "/dev/ttyACM1 0483:374b serial BBB"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := tt.m.normalize()
			if err != nil {
				t.Fatal(err)
			}
			got, err := m.pick(ports)
			if got != tt.want || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("pick = %q, %v; want %q, %v", got, err, tt.want, tt.err)
			}
			for _, s := range tt.errText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q lacks %q", err, s)
				}
			}
		})
	}
	if _, err := (USBMatch{VID: "1", PID: "2"}).pick(nil); err == nil || !strings.Contains(err.Error(), "no serial ports") {
		t.Errorf("empty list: %v", err)
	}
}
