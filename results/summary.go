package results

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Verdict is a run's (or a board's) overall result.
type Verdict string

// Verdicts. A device failure outranks a bench failure (an infra error or
// a missed cut): when both happened the verdict is VerdictFail, since the
// device did fail where the bench worked.
const (
	// VerdictPass: every cycle's outcome was accepted, every planned cut
	// landed, no infra error.
	VerdictPass Verdict = "pass"
	// VerdictFail: some cycle ended in an outcome the job does not accept.
	VerdictFail Verdict = "fail"
	// VerdictInfraError: the bench failed in some cycle (an infra error or
	// a missed cut), no device failure.
	VerdictInfraError Verdict = "infra-error"
)

// DurationStats are order statistics of a duration over N cycles, in
// milliseconds. Percentiles are nearest-rank: the p-th percentile of n
// sorted values is the value at rank ceil(p/100·n), so it is always one of
// the values seen. All zero when N is 0.
type DurationStats struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// TransferStats describe the update transfers of cycles that sent blocks.
type TransferStats struct {
	DurationStats
	// ThroughputBps is the median over those cycles of bytes sent
	// (blocks sent × block size, re-sent blocks included, the short last
	// block counted whole) per second of transfer time.
	ThroughputBps float64 `json:"throughput_bps"`
}

// EnergyStats are order statistics of an energy over N cycles, in
// millijoules (nearest-rank percentiles, as DurationStats).
type EnergyStats struct {
	N      int     `json:"n"`
	MeanMJ float64 `json:"mean_mj"`
	P50MJ  float64 `json:"p50_mj"`
	P95MJ  float64 `json:"p95_mj"`
	MaxMJ  float64 `json:"max_mj"`
}

// BoardEnergy is what a board's updates drew from its measuring supply.
type BoardEnergy struct {
	// Update is a whole update without a cut that ended with the new
	// image running; UpdateCut the same with a cut and its recovery.
	Update    EnergyStats `json:"update"`
	UpdateCut EnergyStats `json:"update_cut"`
	// Recovery is the part of a cycle with a cut from the cut to the
	// transfer resuming or the new image running, over the cycles that
	// recovered (a device that never came back has no recovery to cost,
	// and a brownout it ran through has none either).
	Recovery EnergyStats `json:"recovery"`
	// PeakAmps is the highest reading of the run.
	PeakAmps float64 `json:"peak_amps"`
}

func energyStats(js []float64) EnergyStats {
	if len(js) == 0 {
		return EnergyStats{}
	}
	slices.Sort(js)
	n := len(js)
	sum := 0.0
	for _, j := range js {
		sum += j
	}
	return EnergyStats{N: n, MeanMJ: 1e3 * sum / float64(n), P50MJ: 1e3 * js[nearestRank(50, n)],
		P95MJ: 1e3 * js[nearestRank(95, n)], MaxMJ: 1e3 * js[n-1]}
}

// boardEnergy sums up the energy of a board's cycles; nil when none was
// measured.
func boardEnergy(cs []Cycle) *BoardEnergy {
	var upd, updCut, rec []float64
	e := &BoardEnergy{}
	for _, c := range cs {
		if c.Energy == nil {
			continue
		}
		e.PeakAmps = max(e.PeakAmps, c.Energy.PeakAmps)
		switch {
		case c.Cut == nil && c.Outcome == Updated:
			upd = append(upd, c.Energy.Joules)
		case c.Cut != nil && c.Outcome == Updated:
			updCut = append(updCut, c.Energy.Joules)
		}
		if c.Cut != nil && c.Energy.Recovery > 0 && (c.Outcome == Updated || c.Outcome == RolledBack) {
			rec = append(rec, c.Energy.Recovery)
		}
	}
	if len(upd)+len(updCut)+len(rec) == 0 && e.PeakAmps == 0 {
		return nil
	}
	e.Update, e.UpdateCut, e.Recovery = energyStats(upd), energyStats(updCut), energyStats(rec)
	return e
}

// ResentStats describe blocks sent again after a cut, over the N cycles
// whose cut fired.
type ResentStats struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	Max  int     `json:"max"`
}

// Failure is a cycle whose outcome the job does not accept, or a bench
// failure (infra error, missed cut).
type Failure struct {
	Board     string  `json:"board"`
	Cycle     int     `json:"cycle"`
	Plan      string  `json:"plan"`
	Outcome   Outcome `json:"outcome"`
	Reflashed bool    `json:"reflashed,omitempty"`
	Reason    string  `json:"reason,omitempty"`
	// Missed says why the planned cut did not land (outcome missed-cut).
	Missed string `json:"missed,omitempty"`
	// Findings are the cycle's security findings.
	Findings []Finding `json:"findings,omitempty"`
}

// CutPoint is where one cycle's power was cut and how the cycle ended.
// Fired is false when no cut fired (plan "none", or the trigger never
// matched); the cut fields are then -1 and zero. Landed is true when a
// cut fired at its planned point: fired, and the outcome is not
// missed-cut.
type CutPoint struct {
	Board        string  `json:"board"`
	Cycle        int     `json:"cycle"`
	Plan         string  `json:"plan"`
	PlannedBlock int64   `json:"planned_block"`
	Fired        bool    `json:"fired"`
	Trigger      string  `json:"trigger,omitempty"`
	TMs          float64 `json:"t_ms,omitempty"` // run clock
	LatencyMs    float64 `json:"latency_ms,omitempty"`
	LastAcked    int64   `json:"last_acked"`
	InFlight     int64   `json:"in_flight"`
	Outcome      Outcome `json:"outcome"`
	Accepted     bool    `json:"accepted"`
	Landed       bool    `json:"landed"`
	// Missed says why the planned cut did not land (outcome missed-cut).
	Missed string `json:"missed,omitempty"`
	// Device is the device's own record of the cut, when it keeps one.
	Device *DeviceCut `json:"device,omitempty"`
	// Attempts counts the runs of the cycle: 2 when a missed cut was run
	// again; 0 when the executor did not say.
	Attempts int `json:"attempts,omitempty"`
}

// BoardSummary is one board's share of a run.
type BoardSummary struct {
	Board   string `json:"board"`
	Cycles  int    `json:"cycles"`
	Planned int    `json:"planned"`
	// Outcomes holds every outcome, zeros included.
	Outcomes map[Outcome]int `json:"outcomes"`
	// Failures counts failed cycles (outcome not accepted), bench
	// failures included.
	Failures    int `json:"failures"`
	InfraErrors int `json:"infra_errors"`
	// MissedCuts counts cycles whose planned cut did not land.
	MissedCuts int `json:"missed_cuts"`
	// Findings counts security findings by kind (nonce-reuse,
	// replay-accepted), zeros included.
	Findings        map[string]int `json:"security_findings"`
	RecoveryAnswer  DurationStats  `json:"recovery_answer"`
	RecoveryVersion DurationStats  `json:"recovery_version"`
	TriggerLatency  DurationStats  `json:"trigger_latency"`
	// Energy is what the board's updates drew, when its supply measures.
	Energy *BoardEnergy `json:"energy,omitempty"`
	// Flash is what restoring and recovering the board cost: its probe
	// uses and the device's sector erases.
	Flash   BoardFlash `json:"flash"`
	Verdict Verdict    `json:"verdict"`
}

// BoardFlash is what a board's cycles cost its probe and its flash:
// totals over the run and means per recorded cycle.
type BoardFlash struct {
	// ProbeUses counts the writes over the probe (the image a cycle starts
	// from restored, a brick reflashed); ProbeMs is their time.
	ProbeUses         int     `json:"probe_uses"`
	ProbeMs           float64 `json:"probe_ms"`
	ProbeUsesPerCycle float64 `json:"probe_uses_per_cycle"`
	ProbeMsPerCycle   float64 `json:"probe_ms_per_cycle"`
	// Erases counts the device's sector erases over the ErasesCycles
	// cycles whose device counted them (0 when it does not count them);
	// ErasesPerCycle is their mean.
	Erases         int     `json:"erases"`
	ErasesCycles   int     `json:"erases_cycles"`
	ErasesPerCycle float64 `json:"erases_per_cycle"`
}

// boardFlash sums up a board's probe uses and flash erases.
func boardFlash(cs []Cycle) BoardFlash {
	var f BoardFlash
	var probe time.Duration
	for _, c := range cs {
		f.ProbeUses += c.ProbeUses
		probe += c.ProbeTime
		if c.Erases != nil {
			f.Erases += *c.Erases
			f.ErasesCycles++
		}
	}
	f.ProbeMs = ms(probe)
	if n := len(cs); n > 0 {
		f.ProbeUsesPerCycle = float64(f.ProbeUses) / float64(n)
		f.ProbeMsPerCycle = f.ProbeMs / float64(n)
	}
	if f.ErasesCycles > 0 {
		f.ErasesPerCycle = float64(f.Erases) / float64(f.ErasesCycles)
	}
	return f
}

// Summary is a run's result: what OUT/summary.json holds. Durations are
// in milliseconds (fields named _ms).
type Summary struct {
	Job      string         `json:"job"`
	JobFile  string         `json:"job_file"`
	JobHash  string         `json:"job_hash"`
	RunID    string         `json:"run_id"`
	Started  time.Time      `json:"started"`
	Host     string         `json:"host,omitempty"`
	Version  string         `json:"version,omitempty"`
	Boards   []string       `json:"boards"`
	Cycles   int            `json:"cycles"`
	Planned  int            `json:"planned"`
	PerBoard []BoardSummary `json:"per_board"`
	// Outcomes holds every outcome, zeros included.
	Outcomes map[Outcome]int `json:"outcomes"`
	// Failures lists the failed cycles (outcome not accepted), bench
	// failures (infra errors, missed cuts) included.
	Failures    []Failure `json:"failures"`
	InfraErrors int       `json:"infra_errors"`
	// MissedCuts counts cycles whose planned cut did not land.
	MissedCuts int `json:"missed_cuts"`
	// Findings counts security findings by kind (nonce-reuse,
	// replay-accepted), zeros included: any finding fails the run.
	Findings map[string]int `json:"security_findings"`
	// RecoveryVersion is power-on to the new version running, over the
	// cycles that reached it; RecoveryAnswer power-on to the device
	// answering.
	RecoveryVersion DurationStats `json:"recovery_version"`
	RecoveryAnswer  DurationStats `json:"recovery_answer"`
	Transfer        TransferStats `json:"transfer"`
	ResentPerCut    ResentStats   `json:"resent_per_cut"`
	// TriggerLatency is triggering event to switch call returned, over
	// the cycles whose cut fired.
	TriggerLatency DurationStats `json:"trigger_latency"`
	Cuts           []CutPoint    `json:"cuts"`
	Verdict        Verdict       `json:"verdict"`
}

// Summarize derives a run's summary from its cycles. Boards are listed in
// run.Boards order, then any other board the cycles name, sorted; cycles
// within a board by number.
func Summarize(run RunInfo, cycles []Cycle) Summary {
	s := Summary{
		Job: run.Job, JobFile: run.JobFile, JobHash: run.JobHash, RunID: run.ID,
		Started: run.Started, Host: run.Host, Version: run.Version,
		Boards:   boardOrder(run.Boards, cycles),
		Cycles:   len(cycles),
		Outcomes: zeroOutcomes(),
		Failures: []Failure{},
		Findings: zeroFindings(),
		Cuts:     []CutPoint{},
		PerBoard: []BoardSummary{},
	}
	rank := make(map[string]int, len(s.Boards))
	for i, b := range s.Boards {
		rank[b] = i
	}
	cs := slices.Clone(cycles)
	slices.SortStableFunc(cs, func(a, b Cycle) int {
		return cmp.Or(cmp.Compare(rank[a.Board], rank[b.Board]), cmp.Compare(a.Cycle, b.Cycle))
	})

	var answer, version, latency, transfer []time.Duration
	var throughput []float64
	resentSum, deviceFailures := 0, 0
	for _, c := range cs {
		s.Outcomes[c.Outcome]++
		deviceFailures += countFailure(c, &s.InfraErrors, &s.MissedCuts)
		if failed(c) {
			s.Failures = append(s.Failures, Failure{Board: c.Board, Cycle: c.Cycle, Plan: c.Plan,
				Outcome: c.Outcome, Reflashed: c.Reflashed, Reason: c.Reason, Missed: c.Missed, Findings: c.Findings})
		}
		for _, f := range c.Findings {
			s.Findings[f.Kind]++
		}
		if c.RecoveryAnswer > 0 {
			answer = append(answer, c.RecoveryAnswer)
		}
		if c.RecoveryVersion > 0 {
			version = append(version, c.RecoveryVersion)
		}
		if c.Transfer > 0 {
			transfer = append(transfer, c.Transfer)
			bytes := float64(c.BlocksSent) * float64(c.BlockSize)
			if bytes == 0 {
				bytes = float64(c.ImageSize)
			}
			throughput = append(throughput, bytes/c.Transfer.Seconds())
		}
		if c.Cut != nil {
			latency = append(latency, c.Cut.Latency)
			s.ResentPerCut.N++
			resentSum += c.BlocksResent
			s.ResentPerCut.Max = max(s.ResentPerCut.Max, c.BlocksResent)
		}
		s.Cuts = append(s.Cuts, c.CutPoint())
	}
	if s.ResentPerCut.N > 0 {
		s.ResentPerCut.Mean = float64(resentSum) / float64(s.ResentPerCut.N)
	}
	s.RecoveryAnswer = durationStats(answer)
	s.RecoveryVersion = durationStats(version)
	s.TriggerLatency = durationStats(latency)
	s.Transfer = TransferStats{DurationStats: durationStats(transfer)}
	if len(throughput) > 0 {
		slices.Sort(throughput)
		s.Transfer.ThroughputBps = throughput[nearestRank(50, len(throughput))]
	}
	s.Verdict = verdict(deviceFailures, s.InfraErrors+s.MissedCuts)

	for _, b := range s.Boards {
		s.Planned += run.Planned[b]
		s.PerBoard = append(s.PerBoard, boardSummary(b, run.Planned[b], cs))
	}
	return s
}

func boardSummary(board string, planned int, cs []Cycle) BoardSummary {
	bs := BoardSummary{Board: board, Planned: planned, Outcomes: zeroOutcomes(), Findings: zeroFindings()}
	var answer, version, latency []time.Duration
	var mine []Cycle
	deviceFailures := 0
	for _, c := range cs {
		if c.Board != board {
			continue
		}
		mine = append(mine, c)
		bs.Cycles++
		bs.Outcomes[c.Outcome]++
		deviceFailures += countFailure(c, &bs.InfraErrors, &bs.MissedCuts)
		if failed(c) {
			bs.Failures++
		}
		for _, f := range c.Findings {
			bs.Findings[f.Kind]++
		}
		if c.RecoveryAnswer > 0 {
			answer = append(answer, c.RecoveryAnswer)
		}
		if c.RecoveryVersion > 0 {
			version = append(version, c.RecoveryVersion)
		}
		if c.Cut != nil {
			latency = append(latency, c.Cut.Latency)
		}
	}
	bs.RecoveryAnswer = durationStats(answer)
	bs.RecoveryVersion = durationStats(version)
	bs.TriggerLatency = durationStats(latency)
	bs.Energy = boardEnergy(mine)
	bs.Flash = boardFlash(mine)
	bs.Verdict = verdict(deviceFailures, bs.InfraErrors+bs.MissedCuts)
	return bs
}

// CutPoint returns where c's power was cut, beside where it was planned,
// and how c ended: its entry in summary.json's cuts.
func (c Cycle) CutPoint() CutPoint {
	cp := CutPoint{Board: c.Board, Cycle: c.Cycle, Plan: c.Plan, PlannedBlock: c.PlannedBlock,
		LastAcked: -1, InFlight: -1, Outcome: c.Outcome, Accepted: !failed(c),
		Missed: c.Missed, Attempts: c.Attempts}
	if c.Cut != nil {
		cp.Fired, cp.Trigger = true, c.Cut.Trigger
		cp.TMs, cp.LatencyMs = ms(c.Cut.T), ms(c.Cut.Latency)
		cp.LastAcked, cp.InFlight = c.Cut.LastAcked, c.Cut.InFlight
		cp.Landed = c.Outcome != MissedCut
		if c.Cut.Device != nil {
			d := *c.Cut.Device // the summary must not alias the caller's cycle
			cp.Device = &d
		}
	}
	return cp
}

// countFailure adds c to the infra error or missed cut count when the
// bench failed, and returns 1 when the device failed instead (an outcome
// the job does not accept).
func countFailure(c Cycle, infra, missed *int) int {
	switch {
	case len(c.Findings) > 0:
		// The device broke its own protection, wherever the bench stood.
		return 1
	case c.Outcome == InfraError:
		*infra++
	case c.Outcome == MissedCut:
		*missed++
	case !c.Accepted:
		return 1
	}
	return 0
}

// failed reports whether c counts as a failure: an outcome the job does
// not accept, or a bench failure (never acceptable, whatever the job
// says: a missed cut tested nothing).
func failed(c Cycle) bool {
	return !c.Accepted || c.Outcome.BenchFailure() || len(c.Findings) > 0
}

// zeroFindings counts no finding of each kind.
func zeroFindings() map[string]int {
	return map[string]int{FindingNonceReuse: 0, FindingReplayAccepted: 0}
}

func verdict(deviceFailures, benchFailures int) Verdict {
	switch {
	case deviceFailures > 0:
		return VerdictFail
	case benchFailures > 0:
		return VerdictInfraError
	}
	return VerdictPass
}

func zeroOutcomes() map[Outcome]int {
	m := make(map[Outcome]int, len(Outcomes))
	for _, o := range Outcomes {
		m[o] = 0
	}
	return m
}

func boardOrder(listed []string, cycles []Cycle) []string {
	out := []string{}
	seen := map[string]bool{}
	for _, b := range listed {
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	var extra []string
	for _, c := range cycles {
		if !seen[c.Board] {
			seen[c.Board] = true
			extra = append(extra, c.Board)
		}
	}
	slices.Sort(extra)
	return append(out, extra...)
}

// nearestRank returns the index in a sorted slice of n values of the p-th
// percentile by the nearest-rank method.
func nearestRank(p float64, n int) int {
	r := int(math.Ceil(p / 100 * float64(n)))
	return min(max(r, 1), n) - 1
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of ds by the
// nearest-rank method; 0 when ds is empty. ds is not modified.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[nearestRank(p, len(s))]
}

func durationStats(ds []time.Duration) DurationStats {
	if len(ds) == 0 {
		return DurationStats{}
	}
	slices.Sort(ds)
	n := len(ds)
	return DurationStats{
		N:     n,
		P50Ms: ms(ds[nearestRank(50, n)]),
		P95Ms: ms(ds[nearestRank(95, n)]),
		P99Ms: ms(ds[nearestRank(99, n)]),
		MaxMs: ms(ds[n-1]),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// WriteSummaryJSON writes s as indented JSON to path, atomically: a reader
// sees the old file or the new one, never a part.
func WriteSummaryJSON(path string, s Summary) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("results: summary %s: %w", path, err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic writes data to a temporary file beside path, syncs it
// and renames it over path.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("results: write %s: %w", path, err)
	}
	return nil
}
