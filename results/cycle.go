package results

import "time"

// Outcome is how one cycle ended.
type Outcome string

// Outcomes.
const (
	// Updated: the new image runs, with or without a resume.
	Updated Outcome = "updated"
	// RolledBack: the old image runs.
	RolledBack Outcome = "rolled-back"
	// StuckRecovery: the device answers but never finishes.
	StuckRecovery Outcome = "stuck-recovery"
	// Bricked: no answer on console or CoAP within the recovery timeout.
	Bricked Outcome = "bricked"
	// MissedCut: the planned cut did not happen at its planned point (it never
	// fired, or fired outside its planned block): a bench failure, never a
	// survived cut.
	MissedCut Outcome = "missed-cut"
	// InfraError: the bench failed (a port vanished, a driver or probe
	// failed); never blamed on the device.
	InfraError Outcome = "infra-error"
)

// Outcomes lists every outcome in report order. Everything that lists
// outcomes (summary counts, table columns, report colours and legends)
// follows it, so an outcome added here shows up everywhere.
var Outcomes = []Outcome{Updated, RolledBack, StuckRecovery, Bricked, MissedCut, InfraError}

// BenchFailure reports whether o says the bench failed rather than the
// device (an infra error, a missed cut): such a cycle is never accepted,
// is a JUnit <error> rather than a <failure>, and gives the verdict
// infra-error unless a device failed too.
func (o Outcome) BenchFailure() bool { return o == InfraError || o == MissedCut }

// DeviceCut is a device's own record of a power cut, for boards that keep one
// (the simulated board does); the bench compares it with the planned point.
type DeviceCut struct {
	Writing   int64  `json:"writing"`         // block being written when power went; -1 none
	LastAcked int64  `json:"last_acked"`      // last block the device acknowledged; -1 none
	Flash     string `json:"flash,omitempty"` // flash operation under way: "program", "erase", "idle"
}

// CutInfo is the cut a cycle's trigger fired.
type CutInfo struct {
	Trigger string        `json:"trigger"`
	T       time.Duration `json:"t"`       // run clock, switch call returned
	Latency time.Duration `json:"latency"` // triggering event to switch call returned
	// LastAcked is the last block acknowledged before the cut (-1: none);
	// InFlight the block sent and not acknowledged (-1: none).
	LastAcked int64 `json:"last_acked"`
	InFlight  int64 `json:"in_flight"`
	// Device is the device's own record of the cut, when it keeps one.
	Device *DeviceCut `json:"device,omitempty"`
}

// Cycle is the record of one board's cycle: everything a summary, a
// JUnit file or a report needs, derived from the timeline.
type Cycle struct {
	Run   string `json:"run"`
	Board string `json:"board"`
	Cycle int    `json:"cycle"`
	// Plan is the planned cut ("after_block 17", "random during_block 3
	// +2ms", "none"); PlannedBlock its block (-1 when not block-based).
	Plan         string   `json:"plan"`
	PlannedBlock int64    `json:"planned_block"`
	Cut          *CutInfo `json:"cut,omitempty"`
	Outcome      Outcome  `json:"outcome"`
	Reflashed    bool     `json:"reflashed,omitempty"`
	// Accepted is whether the job accepts this outcome for this board.
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"`
	// Missed says why the planned cut did not land; set with outcome MissedCut.
	Missed string `json:"missed,omitempty"`
	// Attempts counts the runs of the cycle: 2 when a missed cut was run again.
	Attempts int `json:"attempts,omitempty"`

	Blocks       int           `json:"blocks"`
	BlockSize    int           `json:"block_size"`
	ImageSize    int           `json:"image_size"`
	BlocksSent   int           `json:"blocks_sent"`
	BlocksResent int           `json:"blocks_resent"`
	Resumes      []uint32      `json:"resumes,omitempty"`
	Transfer     time.Duration `json:"transfer"`
	// RecoveryAnswer is power-on to the device answering; RecoveryVersion
	// power-on to the new version running. Zero when not reached.
	RecoveryAnswer  time.Duration `json:"recovery_answer,omitempty"`
	RecoveryVersion time.Duration `json:"recovery_version,omitempty"`

	// Energy is what the board drew from a measuring supply during the
	// update; nil when its supply does not measure.
	Energy *Energy `json:"energy,omitempty"`

	// ProbeUses counts the writes over the board's probe during the cycle
	// (restoring the image it starts from, reflashing a brick); ProbeTime
	// is their time, erase, write and reset, as the probe took it.
	ProbeUses int           `json:"probe_uses,omitempty"`
	ProbeTime time.Duration `json:"probe_time,omitempty"`
	// Erases counts the sector erases of the device's flash during the
	// whole cycle (restoring, update, recovery, reflash; the probe's
	// included), from the device's own counters: the sum over its sectors
	// of each one's erases. nil when the device does not count them.
	Erases *int `json:"erases,omitempty"`

	// Findings are the cycle's security findings (a reused nonce, an
	// accepted replay): each fails the cycle whatever its outcome.
	Findings []Finding `json:"findings,omitempty"`
	// Secure is what the recovery after the cut cost on a secured link.
	Secure *SecureRecovery `json:"secure,omitempty"`
	// Nonces are the device's nonces first seen in this cycle, kept for
	// the rest of the campaign; not part of the cycle's JSON.
	Nonces []NonceUse `json:"-"`

	Start       time.Duration `json:"start"` // run clock
	End         time.Duration `json:"end"`
	LastConsole []string      `json:"last_console,omitempty"`
}

// Energy is what a board drew during one update, from its supply's
// readings: the sum of volts × amps × the time since the previous reading.
type Energy struct {
	// Joules is the whole update's, from its start to its end (the new
	// image running, or the update given up).
	Joules float64 `json:"joules"`
	// Recovery is the part drawn from the cut to the transfer resuming
	// (or the new image running): what one recovery costs.
	Recovery float64 `json:"recovery_joules,omitempty"`
	// PeakAmps is the highest reading.
	PeakAmps float64 `json:"peak_amps"`
	// Samples counts the readings; Every is the interval asked for.
	Samples int           `json:"samples"`
	Every   time.Duration `json:"every"`
}

// RunInfo identifies a run.
type RunInfo struct {
	ID      string    `json:"id"`
	Job     string    `json:"job"`      // job name
	JobFile string    `json:"job_file"` // path, or "(built-in demo)"
	JobHash string    `json:"job_hash"` // SHA-256 of the job file and images: --resume matches on it
	Started time.Time `json:"started"`
	Boards  []string  `json:"boards"`
	Host    string    `json:"host"`
	Version string    `json:"version"` // fudbench version
	// Planned is the number of cycles the job plans, per board.
	Planned map[string]int `json:"planned"`
}
