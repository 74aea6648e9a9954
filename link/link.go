// Package link impairs the network path between the bench and a device:
// a UDP forwarder on the bench host that the bench's CoAP client talks to
// instead of the device, and that passes each datagram on — or drops,
// delays, duplicates or reorders it — as a link profile says (loss, delay
// and jitter, a serialisation rate, an MTU, duplication, reordering).
//
// It needs no privileges and no traffic control of the kernel, and it
// works for real devices as well as simulated ones, since it sits on the
// bench host in the path of every datagram. It forwards opaque datagrams,
// so CoAP over UDP, DTLS and OSCORE all pass through it unchanged.
//
// Decisions are drawn from a seeded PCG generator per direction, one
// draw set per datagram in arrival order: the same seed and the same
// sequence of datagrams give the same decisions. What a host's timers
// and scheduler do to the delivery instants still varies from run to run.
//
// A link is configured in the bench file (a board's coap.link) and in a
// job (link:, links:); Decode reads both. See docs/bench.md.
package link

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fudbench/fudbench/internal/config"
)

// Limits of a link configuration.
const (
	MaxDelay = 10 * time.Second
	MinMTU   = 16
	MaxMTU   = 65507 // the largest UDP payload over IPv4
	MaxRate  = 10_000_000_000
)

// Percent is a probability in hundredths of a percent (basis points):
// 0 to 10000.
type Percent uint32

// String writes p the way Decode reads it: 5%, 0.5%, 0.25%.
func (p Percent) String() string {
	s := strconv.FormatFloat(float64(p)/100, 'f', -1, 64)
	return s + "%"
}

// Config is a link's impairments. The zero value forwards every datagram
// at once, unchanged.
type Config struct {
	// Profile is the named profile the configuration started from ("" for
	// none).
	Profile string
	// Off is set for the profile "none": no forwarder, the bench talks to
	// the device directly (a job uses it to turn off a board's link).
	Off bool
	// Loss, Duplicate and Reorder are per-datagram probabilities, drawn
	// independently for each direction.
	Loss, Duplicate, Reorder Percent
	// Delay is added to every datagram, with a uniform jitter in
	// [Delay−Jitter, Delay+Jitter]; Jitter is at most Delay.
	Delay, Jitter time.Duration
	// Rate is the link's bit rate in bit/s (0: unlimited): each datagram
	// occupies the link for its size in bits divided by Rate, and
	// datagrams queue behind each other.
	Rate uint64
	// MTU is the largest datagram the link carries (0: unlimited); a
	// larger one is dropped, as on a link that cannot fragment.
	MTU int
	// Seed seeds the decisions; at least 1.
	Seed uint64
	// File and At place the configuration, for messages.
	File string
	At   config.Pos
}

// String describes the configuration in the words of the bench file.
func (c *Config) String() string {
	if c == nil || c.Off {
		return "none"
	}
	var parts []string
	if c.Profile != "" {
		parts = append(parts, c.Profile+":")
	}
	if c.Loss > 0 {
		parts = append(parts, "loss "+c.Loss.String())
	}
	if c.Delay > 0 {
		d := "delay " + c.Delay.String()
		if c.Jitter > 0 {
			d += "±" + c.Jitter.String()
		}
		parts = append(parts, d)
	}
	if c.Rate > 0 {
		parts = append(parts, "rate "+FormatRate(c.Rate))
	}
	if c.MTU > 0 {
		parts = append(parts, fmt.Sprintf("mtu %d", c.MTU))
	}
	if c.Duplicate > 0 {
		parts = append(parts, "duplicate "+c.Duplicate.String())
	}
	if c.Reorder > 0 {
		parts = append(parts, "reorder "+c.Reorder.String())
	}
	parts = append(parts, fmt.Sprintf("seed %d", c.Seed))
	return strings.Join(parts, " ")
}

// FormatRate writes a bit rate the way Decode reads it.
func FormatRate(r uint64) string {
	switch {
	case r >= 1_000_000 && r%1_000 == 0:
		return strconv.FormatFloat(float64(r)/1e6, 'f', -1, 64) + "Mbit"
	case r >= 1_000:
		return strconv.FormatFloat(float64(r)/1e3, 'f', -1, 64) + "kbit"
	}
	return strconv.FormatUint(r, 10) + "bit"
}

// Profiles are the named links; docs/bench.md gives the source of each
// figure.
var profiles = map[string]Config{
	// An IEEE 802.15.4 2.4 GHz O-QPSK link (250 kbit/s) of one or two hops
	// with good link quality. 6LoWPAN fragments at the adaptation layer
	// (RFC 4944), so no MTU.
	"6lowpan-good": {Loss: 100, Delay: 10 * time.Millisecond, Jitter: 5 * time.Millisecond, Rate: 250_000},
	// The same radio over several hops with intermediate links: loss of
	// 10%, MAC retransmissions whose acknowledgement was lost showing as
	// duplicates, and reordering across routes.
	"6lowpan-lossy": {Loss: 1000, Delay: 40 * time.Millisecond, Jitter: 30 * time.Millisecond, Rate: 250_000,
		Duplicate: 50, Reorder: 100},
	// LoRa SF7 at 125 kHz, coding rate 4/5: 5.47 kbit/s raw, the
	// 222-byte LoRaWAN payload limit at that data rate, no fragmentation.
	"lora-sf7": {Loss: 500, Delay: time.Second, Jitter: 100 * time.Millisecond, Rate: 5_470, MTU: 222},
	// As lora-sf7 with a 1% duty cycle (ETSI EN 300 220, sub-band g1):
	// the average airtime a device may use, as a rate.
	"lora-sf7-duty": {Loss: 500, Delay: time.Second, Jitter: 100 * time.Millisecond, Rate: 55, MTU: 222},
}

// ProfileNames lists the named profiles, "none" first.
func ProfileNames() []string {
	return []string{"none", "6lowpan-good", "6lowpan-lossy", "lora-sf7", "lora-sf7-duty"}
}

// Profile returns the named profile.
func Profile(name string) (Config, bool) {
	if name == "none" {
		return Config{Profile: name, Off: true, Seed: 1}, true
	}
	c, ok := profiles[name]
	if !ok {
		return Config{}, false
	}
	c.Profile, c.Seed = name, 1
	return c, true
}
