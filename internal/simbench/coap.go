package simbench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fudbench/fudbench/boards"
	"github.com/fudbench/fudbench/sim"
)

// Environment variables through which bench files that wire simulated
// boards name the boards' development secrets (public, like the boards'
// DTLS key): set by DevSecrets, so that a bench file written for the
// simulated boards never holds a key and needs no key file.
const (
	EnvDevPSK    = "FUDBENCH_SIM_PSK"
	EnvDevOSCORE = "FUDBENCH_SIM_OSCORE_SECRET"
)

// DevSecrets sets EnvDevPSK and EnvDevOSCORE to the simulated boards'
// development secrets.
func DevSecrets() {
	_ = os.Setenv(EnvDevPSK, string(sim.DevPSK))
	_ = os.Setenv(EnvDevOSCORE, string(sim.DevOSCORE().MasterSecret))
}

// DevSequenceFile is where a bench talking to simulated boards keeps its
// OSCORE sender sequence number under the development context: one file
// per machine, shared by every process, so that no run uses a number
// another used.
func DevSequenceFile() string {
	return filepath.Join(os.TempDir(), "fudbench-sim-oscore.seq")
}

// CoAPEntry is the coap: entry of a bench file for a simulated board: its
// OSCORE endpoint when it has one, else its DTLS endpoint when it caches
// DTLS state or sessions, else its first UDP address. udp, dtls and
// oscore are the board's addresses.
func CoAPEntry(cfg sim.Config, udp, dtls, oscore string) string {
	profile := boards.ProfileResumable
	if cfg.Strategy != sim.InplaceRecovery && cfg.Strategy != "" {
		// Naive in-place and the A/B strategies take a plain Block1 PUT.
		profile = boards.ProfileBlock1
	}
	switch {
	case cfg.OSCORE != nil && oscore != "":
		p := cfg.OSCORE
		// The bench's side of the device's context: the IDs swapped.
		return fmt.Sprintf(`{address: "%s", profile: %s, oscore: {master_secret_env: %s, master_salt: "%x", sender_id: "%x", recipient_id: "%x", replay_window: %d, sequence_file: "%s"}}`,
			oscore, profile, EnvDevOSCORE, p.MasterSalt, p.RecipientID, p.SenderID, max(p.ReplayWindow, 1), DevSequenceFile())
	case cfg.DTLSCache != "" && cfg.DTLSCache != sim.DTLSCacheNone && dtls != "":
		id := cfg.PSKIdentity
		if id == "" {
			id = "fudbench"
		}
		return fmt.Sprintf(`{address: "%s", profile: %s, dtls: {identity: "%s", key_env: %s, cache: %s}}`, dtls, profile, id, EnvDevPSK, cfg.DTLSCache)
	}
	return fmt.Sprintf(`{address: "%s", profile: %s}`, udp, profile)
}
