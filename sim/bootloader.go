package sim

// The never-updated bootloader: what to boot, and the verification of an
// image (header, digest, signature, anti-rollback) before it runs.

import (
	"crypto/sha256"
	"fmt"

	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
)

// bootloader decides what to run: resume an update in progress, boot a
// valid app, fall back to recovery, or halt. A power cut stops it where
// it is: r.mode stays empty and boot sees the epoch gone.
func (b *Board) bootloader(r *ram) {
	if b.cfg.Strategy.AB() {
		b.abBootloader(r)
		return
	}
	if b.cfg.Strategy == InplaceRecovery {
		if rec, sector := b.activeRecord(); rec != nil && !b.recordDone(sector) {
			r.mode, r.rec = ModeRecovery, rec
			r.next = b.journalNext(rec)
			r.state = fwproto.StateReceiving
			b.console.Printf("BL recovery: resuming transfer size=%d szx=%d next=%d/%d peer=%s (cached context)", rec.Size, rec.SZX, r.next, rec.blocks(), rec.Peer)
			if r.next >= rec.blocks() {
				b.finishRecovery(r)
				if r.mode != ModeApp {
					return
				}
				// Verified: fall through to boot the new image below.
			} else {
				return
			}
		}
	}
	hdr, digest, err := b.verifyApp()
	if err == nil {
		err = b.checkRollback(hdr)
	}
	if err != nil {
		r.failure = err.Error()
		if b.cfg.Strategy == InplaceRecovery {
			r.mode, r.state, r.rec = ModeRecovery, fwproto.StateFailed, nil
			return
		}
		r.mode = ModeHalted
		return
	}
	r.mode, r.app, r.appDigest = ModeApp, hdr, digest
}

// verifyApp checks the image in the app slot (the primary slot of an A/B
// layout).
func (b *Board) verifyApp() (*fwimage.Header, [32]byte, error) {
	return b.verifyAt(b.lay.AppStart, b.lay.AppSize())
}

// verifyAt checks the image at off in a slot of size bytes: header, size,
// SHA-256 and signature. It returns the header and the SHA-256 of the
// image's bytes (header and payload).
func (b *Board) verifyAt(off, size int) (*fwimage.Header, [32]byte, error) {
	var none [32]byte
	head := make([]byte, fwimage.HeaderSize)
	if err := b.fl.Read(off, head); err != nil {
		return nil, none, fmt.Errorf("reading app header: %w", err)
	}
	h, err := fwimage.ParseHeader(head)
	if err != nil {
		return nil, none, fmt.Errorf("app header: %w", err)
	}
	total := fwimage.HeaderSize + int(h.PayloadSize)
	if total > size {
		return nil, none, fmt.Errorf("app size %d exceeds the slot", total)
	}
	img := make([]byte, total)
	if err := b.fl.Read(off, img); err != nil {
		return nil, none, fmt.Errorf("reading app image: %w", err)
	}
	h, err = fwimage.Verify(img, b.pub)
	if err != nil {
		return nil, none, fmt.Errorf("app image: %w", err)
	}
	return h, sha256.Sum256(img), nil
}

// checkRollback refuses an image older than the stored counter and bumps
// the counter when a newer one boots.
func (b *Board) checkRollback(h *fwimage.Header) error {
	if err := b.rollbackOK(h); err != nil {
		return err
	}
	return b.raiseCounter(h)
}

// rollbackOK refuses an image older than the stored counter.
func (b *Board) rollbackOK(h *fwimage.Header) error {
	if ctr, _ := b.readCounter(); h.Seq < ctr {
		return fmt.Errorf("rollback refused: image seq %d below counter %d", h.Seq, ctr)
	}
	return nil
}

// raiseCounter raises the anti-rollback counter to the image's sequence
// number when that is higher.
func (b *Board) raiseCounter(h *fwimage.Header) error {
	if ctr, used := b.readCounter(); h.Seq > ctr {
		if err := b.writeCounter(h.Seq, used); err != nil {
			return fmt.Errorf("counter update: %w", err)
		}
	}
	return nil
}

// finishRecovery verifies a fully received image; on success it marks the
// record done and leaves r in app mode, otherwise failed in recovery.
func (b *Board) finishRecovery(r *ram) {
	r.state = fwproto.StateVerifying
	b.console.Printf("RECOVERY verifying %d bytes", r.rec.Size)
	img := make([]byte, r.rec.Size)
	if err := b.fl.Read(b.lay.AppStart, img); err != nil {
		r.state, r.failure = fwproto.StateFailed, err.Error()
		return
	}
	if sha256.Sum256(img) != r.rec.Digest {
		r.state, r.failure = fwproto.StateFailed, "digest mismatch: received bytes differ from the prepared digest"
		b.console.Printf("RECOVERY verify failed: %s", r.failure)
		return
	}
	h, err := fwimage.Verify(img, b.pub)
	if err == nil {
		ctr, _ := b.readCounter()
		if h.Seq < ctr {
			err = fmt.Errorf("rollback refused: image seq %d below counter %d", h.Seq, ctr)
		}
	}
	if err != nil {
		r.state, r.failure = fwproto.StateFailed, err.Error()
		b.console.Printf("RECOVERY verify failed: %s", r.failure)
		return
	}
	_, sector := b.activeRecord()
	if err := b.markDone(sector); err != nil {
		r.state, r.failure = fwproto.StateFailed, err.Error()
		return
	}
	b.console.Printf("RECOVERY verify ok v%s seq=%d, booting", h.Version, h.Seq)
	r.mode = ModeApp
}

// stateOf is the protocol's state report.
func stateOf(r *ram) fwproto.State {
	s := fwproto.State{Mode: fwproto.ModeRecovery, State: r.state}
	if r.rec != nil {
		s.Size, s.SZX, s.Tag, s.Next = r.rec.Size, r.rec.SZX, r.rec.Tag, r.next
		s.Digest = append([]byte(nil), r.rec.Digest[:]...)
	}
	return s
}
