package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/fudbench/fudbench/fwimage"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Build and inspect signed test images"}
	var (
		spec    fwimage.Spec
		size    string
		keyPath string
		out     string
	)
	build := &cobra.Command{
		Use:   "build --version V --seq N --size SIZE [--key KEY] -o FILE",
		Short: "Build a signed test image with a deterministic payload",
		Long: "Build a signed test image: a 256-byte header (version, anti-rollback sequence, size, SHA-256, Ed25519 signature) and a payload made from --seed.\n" +
			"Without --key the built-in DEVELOPMENT key signs it: that key is public and only for simulated boards and demos.",
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, args []string) error {
			n, err := parseSize(size)
			if err != nil {
				return usageErr(fmt.Errorf("--size: %w", err))
			}
			spec.Size = n
			if !c.Flags().Changed("seed") {
				// Images of different sequence numbers get different
				// payloads: an update to an image whose bytes the board
				// already holds would write nothing new, and a cut in it
				// would prove nothing.
				spec.Seed = int64(spec.Seq)
			}
			key := fwimage.DevKey()
			if keyPath != "" {
				if key, err = fwimage.LoadPrivateKey(keyPath); err != nil {
					return usageErr(err)
				}
			} else {
				g.log.Warn("signing with the built-in development key (public, not for production)")
			}
			img, err := fwimage.Build(spec, key)
			if err != nil {
				return usageErr(err)
			}
			if err := os.WriteFile(out, img, 0o644); err != nil {
				return infraErr(fmt.Errorf("write %s: %w", out, err))
			}
			fmt.Fprintf(c.OutOrStdout(), "%s: version %s seq %d, %d bytes, digest %x\n", out, spec.Version, spec.Seq, len(img), fwimage.Digest(img))
			return nil
		},
	}
	build.Flags().StringVar(&spec.Version, "version", "", "version string (required)")
	build.Flags().Uint32Var(&spec.Seq, "seq", 0, "anti-rollback sequence number")
	build.Flags().StringVar(&size, "size", "64KiB", "total image size including the header (bytes, or with KiB/MiB)")
	build.Flags().Int64Var(&spec.Seed, "seed", 1, "seed of the deterministic payload (default: the --seq number)")
	build.Flags().StringVar(&keyPath, "key", "", "Ed25519 private key, PEM (PKCS#8); default: the development key")
	build.Flags().StringVarP(&out, "output", "o", "", "output file (required)")
	build.MarkFlagRequired("version")
	build.MarkFlagRequired("output")

	var pubPath string
	inspect := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Print an image's header and whether its signature verifies",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			img, err := fwimage.ReadFile(args[0], 0)
			if err != nil {
				return usageErr(fmt.Errorf("read image: %w", err))
			}
			h, err := fwimage.ParseHeader(img)
			if err != nil {
				return usageErr(fmt.Errorf("%s: %w", args[0], err))
			}
			var pub ed25519.PublicKey = fwimage.DevKey().Public().(ed25519.PublicKey)
			keyName := "development key"
			if pubPath != "" {
				if pub, err = fwimage.LoadPublicKey(pubPath); err != nil {
					return usageErr(err)
				}
				keyName = pubPath
			}
			w := c.OutOrStdout()
			fmt.Fprintf(w, "file:          %s (%d bytes)\n", args[0], len(img))
			fmt.Fprintf(w, "version:       %s\n", h.Version)
			fmt.Fprintf(w, "seq:           %d\n", h.Seq)
			fmt.Fprintf(w, "payload size:  %d\n", h.PayloadSize)
			fmt.Fprintf(w, "payload sha256: %x\n", h.PayloadSHA256)
			fmt.Fprintf(w, "key id:        %x\n", h.KeyID)
			fmt.Fprintf(w, "digest:        %x (SHA-256 of the whole file)\n", fwimage.Digest(img))
			if _, err := fwimage.Verify(img, pub); err != nil {
				fmt.Fprintf(w, "signature:     INVALID with %s: %v\n", keyName, err)
				return &exitError{ExitDeviceFail, fmt.Errorf("%s does not verify: %w", args[0], err)}
			}
			fmt.Fprintf(w, "signature:     ok (%s)\n", keyName)
			return nil
		},
	}
	inspect.Flags().StringVar(&pubPath, "key", "", "public (or private) key file to verify with; default: the development key")
	cmd.AddCommand(build, inspect)
	return cmd
}

// parseSize reads "65536", "64KiB", "1MiB", "64k".
func parseSize(s string) (int, error) {
	var n int
	var unit string
	if _, err := fmt.Sscanf(s, "%d%s", &n, &unit); err != nil {
		if _, err2 := fmt.Sscanf(s, "%d", &n); err2 != nil {
			return 0, fmt.Errorf("size %q: %w", s, err)
		}
		unit = ""
	}
	mult := map[string]int{"": 1, "B": 1, "k": 1024, "K": 1024, "KiB": 1024, "KB": 1024, "M": 1 << 20, "MiB": 1 << 20, "MB": 1 << 20}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit %q", s, unit)
	}
	if n <= 0 {
		return 0, errors.New("size must be positive")
	}
	return n * m, nil
}
