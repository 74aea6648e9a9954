package bench

import (
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/fudbench/fudbench/results"
)

// NonceLedger keeps every AEAD nonce a device used over a campaign — an
// OSCORE Partial IV under the device's sender key, a DTLS epoch and
// sequence number under its write key — so that a device that restores
// cached security state after a power cut and uses a nonce again is
// caught, whichever cycle the first use was in. A byte-identical message
// (a network duplicate, a reply the device sends again from its cache)
// is not a reuse; the same nonce over a different ciphertext is.
//
// The executor fills it from the results database on --resume, and
// stores each cycle's new entries with the cycle.
type NonceLedger struct {
	mu    sync.Mutex
	seen  map[nonceKey]nonceFirst
	fresh []results.NonceUse
}

type nonceKey struct {
	proto string
	key   [8]byte
	nonce [16]byte
	n     uint8
}

type nonceFirst struct {
	ct    uint64
	cycle int
}

// NewNonceLedger returns an empty ledger.
func NewNonceLedger() *NonceLedger {
	return &NonceLedger{seen: make(map[nonceKey]nonceFirst)}
}

func keyOf(proto string, key, nonce []byte) nonceKey {
	k := nonceKey{proto: proto, n: uint8(min(len(nonce), 16))}
	copy(k.key[:], key)
	copy(k.nonce[:], nonce)
	return k
}

// Load adds nonces recorded earlier in the campaign.
func (l *NonceLedger) Load(uses []results.NonceUse) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range uses {
		k := keyOf(u.Proto, u.Key, u.Nonce)
		if _, ok := l.seen[k]; !ok {
			l.seen[k] = nonceFirst{ct: u.CT, cycle: u.Cycle}
		}
	}
}

// NonceReuse is one nonce used twice.
type NonceReuse struct {
	Proto      string
	Nonce      []byte
	Label      string // what the nonce is made of, for a reader
	FirstCycle int
}

func (r NonceReuse) String() string {
	what := r.Label
	if what == "" {
		what = hex.EncodeToString(r.Nonce)
	}
	return fmt.Sprintf("the device used the %s nonce of %s again, over a different ciphertext (first used in cycle %d)", r.Proto, what, r.FirstCycle)
}

// See records a use of nonce under key (a fingerprint) with a ciphertext
// hashing to ct in cycle, and reports a reuse; label names the nonce in
// the report.
func (l *NonceLedger) See(proto string, key, nonce []byte, ct uint64, cycle int, label string) (NonceReuse, bool) {
	k := keyOf(proto, key, nonce)
	l.mu.Lock()
	defer l.mu.Unlock()
	if first, ok := l.seen[k]; ok {
		if first.ct == ct {
			return NonceReuse{}, false
		}
		return NonceReuse{Proto: proto, Nonce: append([]byte(nil), nonce...), Label: label, FirstCycle: first.cycle}, true
	}
	l.seen[k] = nonceFirst{ct: ct, cycle: cycle}
	l.fresh = append(l.fresh, results.NonceUse{Proto: proto, Key: append([]byte(nil), key...),
		Nonce: append([]byte(nil), nonce...), CT: ct, Cycle: cycle})
	return NonceReuse{}, false
}

// Drain returns the nonces first seen since the last Drain.
func (l *NonceLedger) Drain() []results.NonceUse {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.fresh
	l.fresh = nil
	return out
}

// Len is the number of nonces kept.
func (l *NonceLedger) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.seen)
}
