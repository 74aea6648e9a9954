package bench

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/fudbench/fudbench/results"
)

// secWatch follows one board's secured link through a cycle: the DTLS
// session set-ups, the device's freshness challenges, the bytes on the
// wire, and every nonce the device used, which the board's ledger checks
// for reuse. The clients the bench dials report to it (Board.Dial).
type secWatch struct {
	mu         sync.Mutex
	handshakes []timedHandshake
	echoes     []time.Time
	findings   []results.Finding
	reused     map[string]bool // nonces already reported this cycle
	sent, recv int64           // UDP payload bytes, all clients of the board
}

type timedHandshake struct {
	at time.Time
	h  results.Handshake
}

// start begins a cycle.
func (w *secWatch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handshakes, w.echoes, w.findings, w.reused = nil, nil, nil, nil
}

func (w *secWatch) handshake(h results.Handshake) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.handshakes = append(w.handshakes, timedHandshake{at: time.Now(), h: h})
}

func (w *secWatch) echo() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.echoes = append(w.echoes, time.Now())
}

func (w *secWatch) wire(sent, recv int) {
	w.mu.Lock()
	w.sent += int64(sent)
	w.recv += int64(recv)
	w.mu.Unlock()
}

func (w *secWatch) bytes() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sent + w.recv
}

// finding records a security finding once per cycle and detail.
func (w *secWatch) finding(kind, detail string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := kind + "\x00" + detail
	if w.reused[key] {
		return false
	}
	if w.reused == nil {
		w.reused = map[string]bool{}
	}
	w.reused[key] = true
	w.findings = append(w.findings, results.Finding{Kind: kind, Detail: detail})
	return true
}

// since returns the handshakes and Echo challenges from t on.
func (w *secWatch) since(t time.Time) (hs []results.Handshake, echoes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range w.handshakes {
		if !h.at.Before(t) {
			hs = append(hs, h.h)
		}
	}
	for _, e := range w.echoes {
		if !e.Before(t) {
			echoes++
		}
	}
	return hs, echoes
}

// take returns the cycle's findings.
func (w *secWatch) take() []results.Finding {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.findings
	w.findings = nil
	return f
}

// dtlsNonce is a DTLS record's nonce as the ledger keeps it: epoch and
// sequence number (the explicit part; the implicit IV is fixed per key).
func dtlsNonce(epoch uint16, seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(epoch)<<48|seq&(1<<48-1))
	return b[:]
}

// seeNonce checks one nonce the device used against the board's ledger
// and records a reuse as a finding of the cycle, on the timeline too.
func (b *Board) seeNonce(proto string, key, nonce []byte, ct uint64, label string) {
	if b.Nonces == nil {
		return
	}
	cycle := b.Cycle()
	r, reused := b.Nonces.See(proto, key, nonce, ct, cycle, label)
	if !reused {
		return
	}
	detail := r.String()
	if b.sec.finding(results.FindingNonceReuse, detail) {
		e := b.Event(results.Security)
		e.Text = fmt.Sprintf("%s: %s", results.FindingNonceReuse, detail)
		b.Emit(e)
	}
}
