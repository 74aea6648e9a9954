package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/bench"
	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/coap"
	"github.com/fudbench/fudbench/fwimage"
	"github.com/fudbench/fudbench/fwproto"
	"github.com/fudbench/fudbench/internal/config"
	"github.com/fudbench/fudbench/jobs"
	"github.com/fudbench/fudbench/results"
)

type updateFlags struct {
	benchFile, profile, rawURL, pskID, pskFile, imageKey, imageVersion string
	blockSize, cutAfter                                                int
	offTime, timeout, connect                                          time.Duration
	jsonOut, skipImageCheck, qblock                                    bool
}

func newUpdateCmd(g *globals) *cobra.Command {
	var f updateFlags
	cmd := &cobra.Command{
		Use:   "update BOARD IMAGE | update --url coap://HOST[:PORT]/PATH FILE",
		Short: "Push an image to a board over CoAP, optionally cutting power after a block",
		Long: `Push an image over CoAP block-wise transfer, one confirmable request per block.

With BOARD, the board's endpoint and profile come from the bench file. A
board powered off, or a power switch that does not answer, is refused at
once; a device that does not answer within --connect-timeout is
unreachable (exit 3). A board left in recovery by an interrupted update is
updated from there. --cut-after-block N cuts its power once block N is
acknowledged, powers it back after --off-time, follows recovery and
finishes the update.

With --url, the file goes to any CoAP server with the block1 profile
(RFC 7959 PUT from block 0); coaps:// needs --psk-identity and --psk-file.

--qblock sends the image with Q-Block1 (RFC 9177) instead: bursts of
non-confirmable requests, the blocks the device lists missing sent again.
With a cut, --cut-after-block must name a block that ends a burst
(9, 19, 29 … or the last).

Exit codes: 0 updated; 1 the device failed the update; 2 a bad image,
bench file, or a DTLS identity the device refuses; 3 the bench failed
(power, unreachable device); 130 interrupted.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error { return runUpdate(c, g, &f, args) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.benchFile, "bench", "", "bench file (default: the built-in simulated bench)")
	fl.StringVar(&f.profile, "profile", "", "resumable or block1 (default: the board's)")
	fl.IntVar(&f.blockSize, "block-size", 1024, "block size: 16, 32, 64, 128, 256, 512 or 1024")
	fl.IntVar(&f.cutAfter, "cut-after-block", -1, "cut power once this block is acknowledged")
	fl.DurationVar(&f.offTime, "off-time", 200*time.Millisecond, "how long the board stays off after a cut")
	fl.DurationVar(&f.timeout, "recovery-timeout", 30*time.Second, "how long to wait for the device after power-on")
	fl.DurationVar(&f.connect, "connect-timeout", 5*time.Second, "how long to wait for the device's first answer")
	fl.StringVar(&f.rawURL, "url", "", "push FILE to any CoAP server (block1 profile)")
	fl.StringVar(&f.pskID, "psk-identity", "", "DTLS PSK identity for coaps:// URLs")
	fl.StringVar(&f.pskFile, "psk-file", "", "file holding the DTLS PSK for coaps:// URLs")
	fl.StringVar(&f.imageKey, "image-key", "", "public key (PEM) that signs the image; default: the development key")
	fl.StringVar(&f.imageVersion, "image-version", "", "the version string the image reports when it runs, for a board whose coap.version reads one (default: the image header's)")
	fl.BoolVar(&f.skipImageCheck, "skip-image-check", false, "push an image that does not verify (to test that a device refuses it)")
	fl.BoolVar(&f.jsonOut, "json", false, "print the result as JSON on stdout")
	fl.BoolVar(&f.qblock, "qblock", false, "send the image with Q-Block1 (RFC 9177) in bursts of 10 blocks (default: the board's)")
	return cmd
}

func runUpdate(c *cobra.Command, g *globals, f *updateFlags, args []string) error {
	szx, err := szxOf(f.blockSize)
	if err != nil {
		return usageErr(err)
	}
	if f.connect <= 0 || f.timeout <= 0 {
		return usageErr(errors.New("--connect-timeout and --recovery-timeout must be more than 0"))
	}
	ctx := c.Context()
	var total uint32 // blocks, once the image is read
	var sink results.Sink = results.Discard
	if !f.jsonOut {
		sink = progressSink(c, &total)
	}
	hub := bench.NewHub(results.NewClock(), sink)
	if f.rawURL != "" {
		return updateURL(c, f, args, szx, hub, &total)
	}
	if len(args) != 2 {
		return usageErr(errors.New("want BOARD IMAGE (or --url URL FILE)"))
	}
	name := args[0]
	inv, err := loadBench(f.benchFile)
	if err != nil {
		return err
	}
	if f.profile != "" && f.profile != boards.ProfileResumable && f.profile != boards.ProfileBlock1 {
		return usageErr(fmt.Errorf("--profile %q: want resumable or block1", f.profile))
	}
	if err := needImageVersion(inv, name, args[1], f.imageVersion); err != nil {
		return err
	}
	job := &jobs.Job{Name: "update", Boards: []string{name}, Image: jobs.ImageSpec{File: args[1], Version: f.imageVersion},
		BlockSize: f.blockSize, Profile: f.profile, OffTime: f.offTime, RecoveryTimeout: f.timeout, Repeat: 1,
		Cuts: []jobs.CutEntry{jobs.OneCut("none", jobs.NoCut)}}
	cut := jobs.NoCut
	if f.cutAfter >= 0 {
		if fi, err := os.Stat(args[1]); err == nil && int64(f.cutAfter) >= int64(job.Blocks(int(fi.Size()))) {
			return usageErr(fmt.Errorf("--cut-after-block %d: the image has only %d blocks of %d bytes", f.cutAfter, job.Blocks(int(fi.Size())), f.blockSize))
		}
		cut = jobs.AfterBlock(int64(f.cutAfter))
		job.Cuts = []jobs.CutEntry{jobs.OneCut("after_block", cut)}
	}
	popt := jobs.PrepareOptions{Use: jobs.UseUpdate, SkipImageCheck: f.skipImageCheck, Log: g.log}
	if f.imageKey != "" {
		pub, err := fwimage.LoadPublicKey(f.imageKey)
		if err != nil {
			return usageErr(fmt.Errorf("--image-key: %w", err))
		}
		popt.ImageKey, popt.KeyGiven = ed25519.PublicKey(pub), true
	}
	if f.qblock {
		bd, err := inv.Board(name)
		if err != nil {
			return classify(err)
		}
		if bd.CoAP != nil && bd.CoAP.QBlock == nil {
			if bd.CoAP.OSCORE != nil {
				return usageErr(fmt.Errorf("--qblock: board %s speaks OSCORE, over which Q-Block1 is not offered", name))
			}
			bd.CoAP.QBlock = &boards.QBlock{}
		}
	}
	prep, err := jobs.Prepare(ctx, job, inv, popt)
	if err != nil {
		return classify(err)
	}
	bd := prep.Boards[0]
	// The console, when wired, times the recovery milestones it shows.
	b, err := bench.Bind(ctx, bd, hub, bench.BindOptions{Console: bd.Console != nil && (f.cutAfter >= 0 || bd.VersionOnConsole()), Probe: bd.Probe != nil,
		Tx: coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3}, Log: g.log})
	if err != nil {
		return classify(err)
	}
	defer b.Close()
	// A board the bench left off (its safe state) or a switch nobody
	// serves is the bench's matter, said at once: pushing blocks to it
	// would only end, a minute later, in blaming the device.
	if b.Power != nil {
		on, known, err := b.PowerState(ctx, 2*time.Second)
		switch {
		case err != nil:
			hint := ""
			if bd.Power.Driver == "sim" {
				hint = " (is `fudbench sim` running?)"
			}
			return infraErr(fmt.Errorf("%w%s", err, hint))
		case known && !on:
			return infraErr(fmt.Errorf("%s is powered off; `fudbench power on %s%s`", name, name, benchArg(f.benchFile)))
		}
	}
	defer safeOnExit(ctx, b, g)
	trig, err := cut.Trigger(b)
	if err != nil {
		return infraErr(err)
	}
	total = fwproto.Blocks(uint32(len(prep.Update)), szx)
	res := b.Run(ctx, bench.Update{Profile: job.ProfileFor(name, b.Profile), Image: prep.Update, Version: prep.UpdateVersion, SZX: szx, Trigger: trig,
		OffTime: f.offTime, RecoveryTimeout: f.timeout, Connect: f.connect})
	missed := cut.Missed(res.Cut)
	if err := printUpdate(c, f, b.Name, len(prep.Update), res, missed); err != nil {
		return err
	}
	switch {
	case res.Err != nil:
		return updateError(ctx, b, res)
	case missed != "":
		return infraErr(fmt.Errorf("the planned cut did not happen: %s", missed))
	}
	return nil
}

func benchArg(file string) string {
	if file == "" {
		return ""
	}
	return " --bench " + file
}

// updateError gives a failed update its exit code: a device that never
// answered, a bench failure (3); a DTLS identity the device refuses (2, at
// the bench file's line); anything else the device's (1).
func updateError(ctx context.Context, b *bench.Board, res *bench.Result) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(res.Err, coap.ErrRefused) {
		if d := b.Endpoint.DTLS; d != nil {
			return usageErr(config.Errorf(d.File, d.IdentityAt, "board %s: the device refused DTLS identity %q (or its key): %v", b.Name, d.Identity, res.Err))
		}
		return usageErr(fmt.Errorf("the device refused the DTLS identity or key: %w", res.Err))
	}
	if res.Unreachable {
		return infraErr(fmt.Errorf("%s is unreachable: %w", b.Name, res.Err))
	}
	if res.Infra {
		return infraErr(res.Err)
	}
	if res.Cut != nil && !res.Answering && b.Probe != nil {
		// Silent since the cut, with its power on: what a brick looks
		// like. Say how to get the board back.
		return &exitError{ExitDeviceFail, fmt.Errorf("%w; %s has not answered since the cut: bricked? `fudbench flash %s IMAGE%s` writes an image over its probe", res.Err, b.Name, b.Name, benchArg(benchFileOf(b)))}
	}
	return &exitError{ExitDeviceFail, res.Err}
}

// benchFileOf is the bench file a bound board came from, "" for the
// built-in bench.
func benchFileOf(b *bench.Board) string {
	if b.Entry == nil || b.Entry.File == builtinName {
		return ""
	}
	return b.Entry.File
}

// updateURL pushes a file to any CoAP server with the block1 profile.
func updateURL(c *cobra.Command, f *updateFlags, args []string, szx uint8, hub *bench.Hub, total *uint32) error {
	if len(args) != 1 {
		return usageErr(errors.New("with --url give only the FILE"))
	}
	ep, path, err := endpointFromURL(f.rawURL, f.pskID, f.pskFile)
	if err != nil {
		return usageErr(err)
	}
	ep.Tx = coap.Transmission{AckTimeout: 500 * time.Millisecond, MaxRetransmit: 3}
	// The live heap is the file and little else, and the per-block garbage
	// is small: collecting at 5× the live heap rather than 2× spares the
	// collections that reading the file and the first blocks would start.
	debug.SetGCPercent(400)
	img, err := fwimage.ReadFile(args[0], 0)
	if err != nil {
		return usageErr(fmt.Errorf("read image: %w", err))
	}
	b := bench.NewBoard(ep.Addr, nil, ep, boards.ProfileBlock1, hub)
	b.Path = path
	if f.qblock {
		b.QBlock = &coap.QBlock{}
	}
	*total = fwproto.Blocks(uint32(len(img)), szx)
	res := b.Run(c.Context(), bench.Update{Image: img, SZX: szx, RecoveryTimeout: f.timeout, Connect: f.connect, NoVerify: true})
	if err := printUpdate(c, f, b.Name, len(img), res, ""); err != nil {
		return err
	}
	if res.Err != nil {
		return updateError(c.Context(), b, res)
	}
	return nil
}

// updateJSON is `fudbench update --json`'s answer.
type updateJSON struct {
	Board        string             `json:"board"`
	OK           bool               `json:"ok"`
	Error        string             `json:"error,omitempty"`
	Blocks       uint32             `json:"blocks"`
	BlockSize    int                `json:"block_size"`
	ImageSize    int                `json:"image_size"`
	BlocksSent   int                `json:"blocks_sent"`
	BlocksResent int                `json:"blocks_resent"`
	TransferMs   float64            `json:"transfer_ms"`
	Cut          *results.CutInfo   `json:"cut,omitempty"`
	CutMissed    string             `json:"cut_missed,omitempty"`
	Resumes      []uint32           `json:"resumes,omitempty"`
	MilestonesMs map[string]float64 `json:"milestones_ms,omitempty"`
	Running      *fwproto.Version   `json:"running,omitempty"`
	Unreachable  bool               `json:"unreachable,omitempty"`
}

func printUpdate(c *cobra.Command, f *updateFlags, name string, size int, res *bench.Result, missed string) error {
	w := c.OutOrStdout()
	if f.jsonOut {
		out := updateJSON{Board: name, OK: res.Err == nil && missed == "", Blocks: res.Blocks, BlockSize: f.blockSize, ImageSize: size,
			BlocksSent: res.BlocksSent, BlocksResent: res.BlocksResent, TransferMs: ms(res.Transfer),
			Cut: res.Cut, CutMissed: missed, Resumes: res.Resumes, Running: res.Final, Unreachable: res.Unreachable}
		if res.Err != nil {
			out.Error = res.Err.Error()
		}
		if len(res.Milestones) > 0 {
			out.MilestonesMs = map[string]float64{}
			for k, v := range res.Milestones {
				out.MilestonesMs[k] = ms(v)
			}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	if res.BlocksSent > 0 {
		fmt.Fprintf(w, "%s: %d blocks of %d bytes, %d sent (%d re-sent) in %v", name, res.Blocks, f.blockSize, res.BlocksSent, res.BlocksResent, res.Transfer.Round(time.Millisecond))
		if res.Transfer > 0 {
			fmt.Fprintf(w, ", %.1f kB/s", float64(size)/res.Transfer.Seconds()/1000)
		}
		fmt.Fprintln(w)
	}
	if res.Cut != nil {
		fmt.Fprintf(w, "cut: %s (latency %v), resumed at %v\n", res.Cut.Trigger, res.Cut.Latency, res.Resumes)
		for _, k := range []string{bench.MilestoneConsole, bench.MilestoneBanner, bench.MilestoneCoAP, bench.MilestoneAppUp, bench.MilestoneResumed, bench.MilestoneVersion} {
			if v, ok := res.Milestones[k]; ok {
				fmt.Fprintf(w, "  %-20s %v after power-on\n", k, v.Round(time.Microsecond))
			}
		}
	}
	if res.Err == nil {
		switch {
		case res.Final != nil && res.Final.Digest != nil:
			fmt.Fprintf(w, "running %s (seq %d)\n", res.Final.Version, res.Final.Seq)
		case res.Final != nil && res.Final.Version != "":
			// A plain CoAP device's version check names the version only.
			fmt.Fprintf(w, "running %s\n", res.Final.Version)
		case res.Final != nil:
			fmt.Fprintln(w, "transfer complete; the device answers (its version is not checked)")
		default:
			fmt.Fprintln(w, "transfer complete")
		}
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func szxOf(blockSize int) (uint8, error) {
	for szx := uint8(0); szx <= fwproto.MaxSZX; szx++ {
		if fwproto.BlockSize(szx) == blockSize {
			return szx, nil
		}
	}
	return 0, fmt.Errorf("block size %d: want a power of two from 16 to 1024", blockSize)
}

// endpointFromURL turns coap://host:port/path into an endpoint and path.
func endpointFromURL(raw, pskID, pskFile string) (bench.Endpoint, string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return bench.Endpoint{}, "", fmt.Errorf("--url: %w", err)
	}
	port := u.Port()
	var ep bench.Endpoint
	switch u.Scheme {
	case "coap":
		if port == "" {
			port = "5683"
		}
	case "coaps":
		if port == "" {
			port = "5684"
		}
		if pskID == "" || pskFile == "" {
			return ep, "", errors.New("coaps:// needs --psk-identity and --psk-file")
		}
		key, err := config.ReadPSK(pskFile)
		if err != nil {
			return ep, "", err
		}
		ep.PSK = &coap.PSK{Identity: pskID, Key: key}
	default:
		return ep, "", fmt.Errorf("--url %q: want coap:// or coaps://", raw)
	}
	if u.Hostname() == "" {
		return ep, "", fmt.Errorf("--url %q has no host", raw)
	}
	ep.Addr = joinHostPort(u.Hostname(), port)
	path := u.Path
	if path == "" {
		path = "/"
	}
	return ep, path, nil
}

func joinHostPort(h, p string) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + p
	}
	return h + ":" + p
}

// progressSink prints block progress: a bar on a terminal, a plain line
// every 10% otherwise (CI logs).
func progressSink(c *cobra.Command, total *uint32) results.Sink {
	tty := isTerminal(os.Stderr)
	last := -1
	w := c.ErrOrStderr()
	return results.SinkFunc(func(e results.Event) {
		switch e.Kind {
		case results.BlockAcked:
			n := *total
			if n == 0 {
				return
			}
			done := int(e.Block) + 1
			pct := done * 100 / int(n)
			if tty {
				// Redrawn when the percentage moves, and at the last block:
				// a terminal write per block would cost more than the block.
				if pct == last && done != int(n) {
					return
				}
				last = pct
				bar := strings.Repeat("#", pct/4) + strings.Repeat(".", 25-pct/4)
				fmt.Fprintf(w, "\r[%s] %3d%% block %d/%d", bar, pct, done, n)
			} else if pct/10 != last {
				last = pct / 10
				fmt.Fprintf(w, "%3d%% block %d/%d\n", pct, done, n)
			}
		case results.CutTrigger:
			fmt.Fprintf(w, "\ncut power: %s (latency %v)\n", e.Text, e.Dur)
			last = -1
		case results.PowerOn:
			fmt.Fprintln(w, "power back on")
		case results.Recovery:
			fmt.Fprintf(w, "  %s +%v\n", e.Text, e.Dur.Round(time.Microsecond))
		case results.UpdateDone:
			if tty {
				fmt.Fprintln(w)
			}
		}
	})
}

// needImageVersion refuses an update of a board whose version check reads
// a version string (a plain CoAP device) with an image that names none:
// neither --image-version nor a header in fudbench's format.
func needImageVersion(inv *boards.Bench, name, file, given string) error {
	bd, err := inv.Board(name)
	if err != nil || given != "" || bd.CoAP == nil || !bd.CoAP.Version.Reads() {
		return nil
	}
	f, err := os.Open(file)
	if err != nil {
		return nil // Prepare says what is wrong with the file
	}
	defer f.Close()
	magic := make([]byte, len(fwimage.Magic))
	if _, err := io.ReadFull(f, magic); err == nil && string(magic) == fwimage.Magic {
		return nil
	}
	return usageErr(fmt.Errorf("--image-version: board %s reads which image runs by %s (%s), and %s does not say its version: give the version string it reports when it runs", name, bd.CoAP.Version, bd.File, file))
}
