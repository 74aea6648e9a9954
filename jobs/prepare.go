package jobs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/power"
	"github.com/fudbench/fudbench/results"
)

// Use is what a command will do with the prepared boards; it decides what
// each board must have.
type Use int

// Uses.
const (
	// UseRun: a campaign. Every board needs a power switch and a CoAP
	// endpoint; images must fit its slot; its cuts must fit its wiring.
	UseRun Use = iota
	// UseUpdate: one update, cut or not. The board needs a CoAP endpoint,
	// and a power switch when a cut is planned.
	UseUpdate
	// UseFlash: write the image over the board's probe, at its
	// flash.app_address.
	UseFlash
	// UseFlashAt: write the image over the board's probe at an address
	// the caller gives.
	UseFlashAt
)

// PrepareOptions tune Prepare.
type PrepareOptions struct {
	Use Use
	// ImageKey verifies images in fudbench's signed format; nil is the
	// development key. KeyGiven says the caller named the key (an image
	// signed by another key is then an error in the image, not a hint to
	// give the key).
	ImageKey ed25519.PublicKey
	KeyGiven bool
	// SkipImageCheck passes images that do not verify (to test that a
	// device refuses them).
	SkipImageCheck bool
	// NoDrivers skips opening the boards' drivers: for a first look at a
	// bench whose boards are not up yet (the built-in simulated boards
	// before they are started).
	NoDrivers bool
	// Witnesses are the boards' own cut records when the caller has them
	// (simulated boards in this process), by board name, as for Execute.
	Witnesses map[string]power.CutWitness
	Log       *slog.Logger

	fit slotFit // the largest slot an image file may fill (Prepare sets it)
}

// Prepared is a job checked against a bench and ready to run: nothing is
// powered, no output exists.
type Prepared struct {
	Job   *Job
	Bench *boards.Bench
	// Boards are the selected boards in run order.
	Boards []*boards.Board
	// Baseline is nil for a job without one (an update). For a chain job
	// they are the chain's links 0 and 1, and Chain builds the others.
	Baseline, Update []byte
	// BaselineVersion and UpdateVersion are the version strings the
	// images report when they run ("" when neither the job nor the image
	// says): what a plain CoAP device's version check compares.
	BaselineVersion, UpdateVersion string
	Plan                           []CycleSpec
	Chain                          *Chain
}

// Names lists the selected boards.
func (p *Prepared) Names() []string {
	var out []string
	for _, b := range p.Boards {
		out = append(out, b.Name)
	}
	return out
}

// Prepare checks a job against a bench before anything is powered or
// written, in the order a user fixes things: the images (read or built,
// signature checked), the boards the job selects, the plan, then each
// board — what it is wired with, whether both images fit its slot,
// whether its wiring and timing can make every planned cut — and finally
// its drivers, opened once and closed, and its DTLS key read. Every
// mistake is a *config.Error naming the file and line (exit 2); a driver
// that fails for another reason is the bench's.
func Prepare(ctx context.Context, j *Job, inv *boards.Bench, o PrepareOptions) (*Prepared, error) {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	p := &Prepared{Job: j, Bench: inv}
	names, err := j.SelectBoards(inv.Boards)
	if err != nil {
		return nil, err
	}
	// An image file is checked against the slots before it is read: one
	// too large for every board's slot is refused by its size alone.
	o.fit = imageLimit(inv, names)
	switch {
	case j.Chain:
		if err := j.checkChainImage(); err != nil {
			return nil, err
		}
		p.Chain = &Chain{spec: *j.Image.Build}
		if p.Baseline, err = j.loadImage("baseline", ImageSpec{Build: ptrTo(j.chainLinkSpec(0)), At: j.chainAt}, o); err != nil {
			return nil, err
		}
		if p.Update, err = j.loadImage("update", ImageSpec{Build: ptrTo(j.chainLinkSpec(1)), At: j.Image.At}, o); err != nil {
			return nil, err
		}
	case !j.Baseline.IsZero():
		if p.Baseline, err = j.loadImage("baseline", j.Baseline, o); err != nil {
			return nil, err
		}
	}
	if !j.Chain {
		if p.Update, err = j.loadImage("update", j.Image, o); err != nil {
			return nil, err
		}
	}
	p.BaselineVersion, p.UpdateVersion = imageVersion(j.Baseline, p.Baseline), imageVersion(j.Image, p.Update)
	if j.Chain {
		// Each link reports the version in its header.
		p.BaselineVersion, p.UpdateVersion = imageVersion(ImageSpec{}, p.Baseline), imageVersion(ImageSpec{}, p.Update)
	}
	flash := o.Use == UseFlash || o.Use == UseFlashAt
	if !flash {
		if p.Plan, err = j.Cycles(j.Blocks(len(p.Update))); err != nil {
			return nil, err
		}
	}
	if j.Chain {
		if err := j.checkChain(len(p.Plan)); err != nil {
			return nil, err
		}
	}
	cuts := slices.ContainsFunc(p.Plan, func(c CycleSpec) bool { return c.Cut != NoCut })
	block1 := false
	for _, n := range names {
		bd, err := inv.Board(n)
		if err != nil {
			return nil, err
		}
		if err := j.checkBoard(bd, p, o.Use, cuts); err != nil {
			return nil, err
		}
		if err := j.checkBursts(p, bd); err != nil {
			return nil, err
		}
		if err := j.checkVersions(p, bd); err != nil {
			return nil, err
		}
		if bd.CoAP != nil && j.ProfileFor(n, bd.CoAP.Profile) == boards.ProfileBlock1 {
			block1 = true
		}
		p.Boards = append(p.Boards, bd)
	}
	if j.Path != "" && !block1 && !flash {
		return nil, j.errAt(j.pathAt, "path: only the block1 profile uploads to a path, and none of the job's boards uses it")
	}
	if o.NoDrivers {
		return p, nil
	}
	hub := bench.NewHub(results.NewClock(), nil)
	for _, bd := range p.Boards {
		b, err := bench.Bind(ctx, bd, hub, bench.BindOptions{Probe: o.Use != UseUpdate, Inputs: o.Use == UseRun, Witness: o.Witnesses[bd.Name]})
		if err != nil {
			return nil, err
		}
		err = j.checkArmer(p, b)
		if err == nil && o.Use == UseRun {
			err = j.checkSupply(p, b)
		}
		b.Close()
		if err != nil {
			return nil, err
		}
	}
	return p, nil
}

// checkBoard checks what one board needs for the use.
func (j *Job) checkBoard(bd *boards.Board, p *Prepared, use Use, cuts bool) error {
	need := func(ok bool, what string) error {
		if ok {
			return nil
		}
		return bd.Errorf("has no %s in %s", what, bd.File)
	}
	var err error
	switch use {
	case UseRun:
		if err = need(bd.Power != nil, "power switch: a power-cut job needs one"); err == nil {
			err = need(bd.CoAP != nil, "coap endpoint")
		}
	case UseUpdate:
		err = need(bd.CoAP != nil, "coap endpoint")
		if err == nil && cuts {
			err = need(bd.Power != nil, "power switch: a cut needs one")
		}
	case UseFlash, UseFlashAt:
		err = need(bd.Probe != nil, "probe")
		if err == nil && use == UseFlash && (bd.Flash == nil || bd.Flash.AppAddr == 0) {
			err = bd.Errorf("flash.app_address is not set in %s: give the address to write to", bd.File)
		}
	}
	if err != nil {
		return err
	}
	if f := bd.Flash; f != nil && f.SlotSize > 0 {
		for _, im := range []struct {
			what string
			spec ImageSpec
			b    []byte
		}{{"baseline", j.Baseline, p.Baseline}, {"update", j.Image, p.Update}} {
			if len(im.b) > int(f.SlotSize) {
				return j.errAt(im.spec.At, "%s image of %d bytes does not fit board %s's %d-byte slot (%s)", im.what, len(im.b), bd.Name, f.SlotSize, bd.File)
			}
		}
	}
	if use == UseRun || (use == UseUpdate && cuts) {
		return j.CheckBoard(bd)
	}
	return nil
}

// slotFit is the largest image a selected board takes, and that board.
type slotFit struct {
	size  int64
	board string
}

// imageLimit is the largest slot among the selected boards when every one
// declares its slot size; zero size otherwise (fwimage.MaxImageSize
// applies).
func imageLimit(inv *boards.Bench, names []string) slotFit {
	var fit slotFit
	for _, n := range names {
		bd, err := inv.Board(n)
		if err != nil || bd.Flash == nil || bd.Flash.SlotSize <= 0 {
			return slotFit{}
		}
		if bd.Flash.SlotSize > fit.size {
			fit = slotFit{size: bd.Flash.SlotSize, board: n}
		}
	}
	return fit
}

// readImage reads an image file, refusing by its size alone one that no
// selected board's slot (or fwimage.MaxImageSize) could take: a file of
// gigabytes is never read into memory.
func readImage(path string, fit slotFit) ([]byte, error) {
	img, err := fwimage.ReadFile(path, fit.size)
	if errors.Is(err, fwimage.ErrTooLarge) && fit.size > 0 {
		return nil, fmt.Errorf("%w: it does not fit board %s's %d-byte slot, the largest of the job's boards", err, fit.board, fit.size)
	}
	return img, err
}

// loadImage reads or builds one of the job's images and, when it is in
// fudbench's signed format (magic "FUDI"), verifies it: header, payload
// digest and signature, so a corrupt or wrongly signed image fails the job
// before anything is powered. An image in another format is passed on as
// it is: the device verifies it.
func (j *Job) loadImage(what string, spec ImageSpec, o PrepareOptions) ([]byte, error) {
	var img []byte
	name := spec.File
	if spec.Build != nil {
		b := spec.Build
		var err error
		if img, err = fwimage.Build(fwimage.Spec{Version: b.Version, Seq: b.Seq, Size: b.Size, Seed: b.Seed}, fwimage.DevKey()); err != nil {
			return nil, j.errAt(spec.At, "%s image: %v", what, err)
		}
		name = "(built)"
	} else {
		var err error
		if img, err = readImage(spec.File, o.fit); err != nil {
			return nil, j.errAt(spec.At, "%s image: %v", what, err)
		}
	}
	if o.SkipImageCheck {
		return img, nil
	}
	if !bytes.HasPrefix(img, []byte(fwimage.Magic)) {
		o.Log.Info("image is not in fudbench's format; the device verifies it", "image", what, "file", name)
		return img, nil
	}
	pub := o.ImageKey
	if pub == nil {
		pub = fwimage.DevKey().Public().(ed25519.PublicKey)
	}
	h, err := fwimage.ParseHeader(img)
	if err != nil {
		return nil, config.Wrapf(j.fileName(), spec.At, err, "%s image %s", what, name)
	}
	if !o.KeyGiven && h.KeyID != fwimage.KeyID(pub) {
		return nil, j.errAt(spec.At, "%s image %s: signed by key id %x, not the development key: give its public key with --image-key", what, name, h.KeyID)
	}
	if _, err := fwimage.Verify(img, pub); err != nil {
		return nil, config.Wrapf(j.fileName(), spec.At, err, "%s image %s", what, name)
	}
	return img, nil
}

// checkBursts refuses a cut placed at a block on a board that sends its
// image in Q-Block1 bursts, unless it comes after a block that ends a
// burst (a during_block cut never: see below): a burst's
// blocks go out without waiting for each other's answers, so the device
// has taken the blocks after the planned one before the bench hears of
// it, and the cut would be judged missed. Bursts end at the last block of
// each set of max_payloads blocks (blocks k·max_payloads−1) and at the
// image's last block; cuts timed another way (at_time, on_gpio,
// on_console, device_work) land anywhere.
func (j *Job) checkBursts(p *Prepared, bd *boards.Board) error {
	if bd.CoAP == nil || bd.CoAP.QBlock == nil {
		return nil
	}
	set := int64(bd.CoAP.QBlock.MaxPayloads)
	if set == 0 {
		set = 10
	}
	last := int64(j.Blocks(len(p.Update))) - 1
	where := strings.Trim(bd.File, "()")
	if at := bd.CoAP.QBlock.At; at.Line > 0 {
		where = fmt.Sprintf("%s:%d", where, at.Line)
	}
	for _, c := range p.Plan {
		if _, ok := c.Cut.(duringBlock); ok {
			// The device writes a burst's blocks one after the other
			// after they have all arrived: how long after its sending
			// block N is written depends on the blocks before it.
			return j.errAt(j.Cuts[c.Entry].At, "%s: board %s sends the image in Q-Block1 bursts (%s), so a cut timed from a block's sending cannot land while that block is written: cut on the device's flash-busy line (on_gpio), at a time (at_time), or after a block that ends a burst (after_block)",
				c.Desc, bd.Name, where)
		}
		n := c.Cut.Block()
		if n < 0 || n == last || (n+1)%set == 0 {
			continue
		}
		return j.errAt(j.Cuts[c.Entry].At, "%s: board %s sends the image in Q-Block1 bursts of %d blocks (%s), so a cut at block %d cannot land: the device takes the rest of the burst first. Plan block cuts where a burst ends (blocks %d, %d, … and the last, %d: from: %d, step: %d), or time the cut with at_time, on_gpio or on_console",
			c.Desc, bd.Name, set, where, n, set-1, 2*set-1, last, set-1, set)
	}
	return nil
}

// checkArmer refuses, before anything is powered, a device_work cut on a
// board whose device cannot lose power at one of its own flash
// operations.
func (j *Job) checkArmer(p *Prepared, b *bench.Board) error {
	if _, ok := b.Witness.(power.CutArmer); ok {
		return nil
	}
	for _, c := range p.Plan {
		if _, ok := c.Cut.(bench.WorkCut); ok {
			return j.errAt(j.Cuts[c.Entry].At, "%s: board %s cannot lose power at one of its own flash operations, which device_work cuts are placed on (the simulated boards can, in `fudbench run` or served by `fudbench sim`); on real hardware cut on the flash-busy line instead (on_gpio)", c.Desc, b.Name)
		}
	}
	return nil
}

func ptrTo[T any](v T) *T { return &v }
