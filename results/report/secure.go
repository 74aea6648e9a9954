package report

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fudbench/fudbench/results"
)

// SecureBoard sums up what a board's secured recoveries cost and what the
// bench found: per board, over the cycles whose cut was followed by a
// secured recovery.
type SecureBoard struct {
	Board   string
	Profile string
	N       int // cycles with a secured recovery
	// FirstBlock is power-on to the first accepted block, Bytes the
	// bytes exchanged until then: medians and maxima.
	FirstP50, FirstMax time.Duration
	BytesP50, BytesMax int
	// Handshakes counts DTLS set-ups by kind; Echo the freshness
	// challenges; Replays the replay verdicts.
	Handshakes map[string]int
	Echo       int
	Replays    map[string]int
	// Findings counts the board's security findings by kind.
	Findings map[string]int
}

// HandshakeText lists the handshake counts, most frequent kind first.
func (s SecureBoard) HandshakeText() string { return countText(s.Handshakes) }

// ReplayText lists the replay verdicts.
func (s SecureBoard) ReplayText() string { return countText(s.Replays) }

func countText(m map[string]int) string {
	if len(m) == 0 {
		return "–"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k)
		b.WriteString(" ")
		b.WriteString(itoa(m[k]))
	}
	return b.String()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

// SecureRow is one cycle's secured recovery, or a cycle with a finding.
type SecureRow struct {
	Board, Plan string
	Cycle       int
	Secure      results.SecureRecovery
	Findings    []results.Finding
}

// Handshakes lists the row's DTLS set-ups.
func (r SecureRow) Handshakes() string {
	if len(r.Secure.Handshakes) == 0 {
		return "none"
	}
	var parts []string
	for _, h := range r.Secure.Handshakes {
		parts = append(parts, h.Kind+" "+h.Dur.Round(10*time.Microsecond).String()+" "+itoa(h.Bytes)+" B")
	}
	return strings.Join(parts, "; ")
}

// maxSecureRows bounds the per-cycle table; cycles with findings always
// come first.
const maxSecureRows = 200

func buildSecure(boards []string, cycles []results.Cycle) (sum []SecureBoard, rows []SecureRow, more int) {
	for _, b := range boards {
		sb := SecureBoard{Board: b, Handshakes: map[string]int{}, Replays: map[string]int{}, Findings: map[string]int{}}
		var first []time.Duration
		var bytes []int
		any := false
		for _, c := range cycles {
			if c.Board != b {
				continue
			}
			for _, f := range c.Findings {
				sb.Findings[f.Kind]++
				any = true
			}
			if c.Secure == nil {
				continue
			}
			any = true
			s := c.Secure
			sb.Profile = s.Profile
			sb.N++
			if s.FirstBlock > 0 {
				first = append(first, s.FirstBlock)
				bytes = append(bytes, s.Bytes)
			}
			for _, h := range s.Handshakes {
				sb.Handshakes[h.Kind]++
			}
			if len(s.Handshakes) == 0 && strings.HasPrefix(s.Profile, "dtls") {
				sb.Handshakes["none"]++
			}
			sb.Echo += s.Echo
			if s.Replay != "" {
				sb.Replays[s.Replay]++
			}
		}
		if !any {
			continue
		}
		if len(first) > 0 {
			slices.Sort(first)
			slices.Sort(bytes)
			sb.FirstP50, sb.FirstMax = first[(len(first)-1)/2], first[len(first)-1]
			sb.BytesP50, sb.BytesMax = bytes[(len(bytes)-1)/2], bytes[len(bytes)-1]
		}
		sum = append(sum, sb)
	}
	var withF, rest []SecureRow
	for _, c := range cycles {
		if c.Secure == nil && len(c.Findings) == 0 {
			continue
		}
		r := SecureRow{Board: c.Board, Plan: c.Plan, Cycle: c.Cycle, Findings: c.Findings}
		if c.Secure != nil {
			r.Secure = *c.Secure
		}
		if len(c.Findings) > 0 {
			withF = append(withF, r)
		} else {
			rest = append(rest, r)
		}
	}
	rows = append(withF, rest...)
	if len(rows) > maxSecureRows {
		more = len(rows) - maxSecureRows
		rows = rows[:maxSecureRows]
	}
	return sum, rows, more
}
