package console

import (
	"errors"
	"fmt"
	"strings"

	"go.bug.st/serial/enumerator"
)

// USBMatch finds a USB-serial adapter by what it reports rather than by the
// name the kernel gave it, which can change when the adapter re-enumerates.
type USBMatch struct {
	VID    string // vendor ID in hex, e.g. "0483" or "0x0483"
	PID    string // product ID in hex
	Serial string // USB serial number; required when several adapters share VID:PID
}

var (
	errNoMatch   = errors.New("no port matches")
	errAmbiguous = errors.New("several ports match")
)

// normHex validates a 16-bit hex ID and returns it as four lowercase digits,
// the form Linux's sysfs (and so the enumerator) reports.
func normHex(what, s string) (string, error) {
	h := strings.ToLower(strings.TrimSpace(s))
	h = strings.TrimPrefix(h, "0x")
	if h == "" || len(h) > 4 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("usb %s %q: want 1 to 4 hex digits", what, s)
	}
	return strings.Repeat("0", 4-len(h)) + h, nil
}

// normalize checks m and puts its IDs in canonical form.
func (m USBMatch) normalize() (USBMatch, error) {
	vid, err := normHex("vid", m.VID)
	if err != nil {
		return m, err
	}
	pid, err := normHex("pid", m.PID)
	if err != nil {
		return m, err
	}
	return USBMatch{VID: vid, PID: pid, Serial: strings.TrimSpace(m.Serial)}, nil
}

func (m USBMatch) String() string {
	s := m.VID + ":" + m.PID
	if m.Serial != "" {
		s += " serial " + m.Serial
	}
	return s
}

// matches reports whether p is the adapter m describes; m is normalized.
func (m USBMatch) matches(p *enumerator.PortDetails) bool {
	if p == nil || !p.IsUSB {
		return false
	}
	vid, err1 := normHex("vid", p.VID)
	pid, err2 := normHex("pid", p.PID)
	if err1 != nil || err2 != nil || vid != m.VID || pid != m.PID {
		return false
	}
	return m.Serial == "" || strings.EqualFold(strings.TrimSpace(p.SerialNumber), m.Serial)
}

// pick returns the path of the one port matching m. Several matches are an
// error rather than a guess: flashing or judging the wrong one of two
// identical boards is worse than not starting.
func (m USBMatch) pick(ports []*enumerator.PortDetails) (string, error) {
	var found []*enumerator.PortDetails
	for _, p := range ports {
		if m.matches(p) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 1:
		if found[0].Name == "" {
			return "", fmt.Errorf("usb %s: the enumerator reported no device name", m)
		}
		return found[0].Name, nil
	case 0:
		return "", fmt.Errorf("usb %s: %w (seen: %s)", m, errNoMatch, describe(ports))
	default:
		hint := "set the adapter's serial number"
		if m.Serial != "" {
			hint = "the adapters share a serial number; use a by-path link instead"
		}
		return "", fmt.Errorf("usb %s: %w (%s): %s", m, errAmbiguous, describe(found), hint)
	}
}

// describe lists ports briefly for error messages.
func describe(ports []*enumerator.PortDetails) string {
	const most = 8
	var parts []string
	for _, p := range ports {
		if p == nil {
			continue
		}
		if len(parts) == most {
			parts = append(parts, fmt.Sprintf("and %d more", len(ports)-most))
			break
		}
		s := p.Name
		if p.IsUSB {
			s += fmt.Sprintf(" %s:%s", p.VID, p.PID)
			if p.SerialNumber != "" {
				s += " serial " + p.SerialNumber
			}
		} else {
			s += " (not USB)"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "no serial ports"
	}
	return strings.Join(parts, ", ")
}
