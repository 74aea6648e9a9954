package results

import "time"

// Security findings: what a device did with its cached security context
// that breaks its protection. A finding fails its cycle whatever the
// outcome (the update may well have survived the cut) and the run's
// verdict with it.
const (
	// FindingNonceReuse: the device used one AEAD nonce (an OSCORE
	// Partial IV, a DTLS epoch and sequence number) twice under one key,
	// with different ciphertexts. Both messages' plaintexts leak their XOR,
	// and with CCM the key's integrity is gone.
	FindingNonceReuse = "nonce-reuse"
	// FindingReplayAccepted: after a power cut the device acted on a
	// request captured before the cut and sent again as it was.
	FindingReplayAccepted = "replay-accepted"
)

// Finding is one security finding of a cycle.
type Finding struct {
	Kind   string `json:"kind"`
	Detail string `json:"detail"`
}

// Handshake is one DTLS session set-up the bench saw: "full",
// "abbreviated" (session resumption) or "none" (the session continued
// with state both sides kept).
type Handshake struct {
	Kind  string        `json:"kind"`
	Dur   time.Duration `json:"dur"`
	Bytes int           `json:"bytes"` // UDP payload bytes both ways
}

// SecureRecovery is what getting back to a secured transfer cost after
// the cycle's power cut: from power-on to the first block the device
// accepted, the time and the bytes exchanged, and what they went to.
type SecureRecovery struct {
	// Profile is the security in use: "dtls" (with its cache mode,
	// "dtls/session"), "oscore".
	Profile string `json:"profile"`
	// Handshakes are the DTLS session set-ups from power-on to the first
	// accepted block (none for OSCORE).
	Handshakes []Handshake `json:"handshakes,omitempty"`
	// Echo counts the device's freshness challenges (RFC 9175 Echo)
	// answered in that time.
	Echo int `json:"echo,omitempty"`
	// FirstBlock is power-on to the first block accepted after the cut;
	// Bytes the UDP payload bytes both ways in that time. Zero when no
	// block was accepted.
	FirstBlock time.Duration `json:"first_block,omitempty"`
	Bytes      int           `json:"bytes,omitempty"`
	// Replay is what the device did with a request captured before the
	// cut and sent again after it: "rejected", "challenged" (Echo),
	// "ignored" (no answer), "accepted"; "" when not tried.
	Replay string `json:"replay,omitempty"`
}

// NonceUse is one AEAD nonce a device used, as the bench keeps it across
// a campaign (and across --resume): the key's fingerprint, never the key.
type NonceUse struct {
	Board string `json:"board"`
	Proto string `json:"proto"` // "oscore", "dtls"
	Key   []byte `json:"key"`   // fingerprint of the device's key
	Nonce []byte `json:"nonce"`
	CT    uint64 `json:"ct"` // hash of the ciphertext
	Cycle int    `json:"cycle"`
}
