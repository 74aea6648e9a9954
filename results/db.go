package results

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Run statuses stored in the runs table. A finished run's status is
// normally its Verdict; RunInterrupted marks one stopped early (Ctrl-C),
// which --resume may continue.
const (
	RunRunning     = "running"
	RunInterrupted = "interrupted"
)

// DefaultBusyTimeout is how long a statement waits for another writer of
// the same database file (another fudbench process) before failing.
const DefaultBusyTimeout = 10 * time.Second

// schemaVersion is the PRAGMA user_version the code expects. Each entry
// of migrations moves the schema from its index to index+1.
const schemaVersion = 6

var migrations = []string{
	// 0 → 1: the first schema. Times are integer nanoseconds (wall times
	// since the Unix epoch, run-clock times since the run started) so
	// they sort and subtract in SQL.
	`
CREATE TABLE runs (
	id          TEXT PRIMARY KEY,
	job         TEXT NOT NULL,
	job_file    TEXT NOT NULL,
	job_hash    TEXT NOT NULL,
	started     INTEGER NOT NULL,
	boards      TEXT NOT NULL,   -- JSON array
	host        TEXT NOT NULL,
	version     TEXT NOT NULL,
	planned     TEXT NOT NULL,   -- JSON object board -> cycles
	finished_at INTEGER,         -- NULL while running
	status      TEXT NOT NULL DEFAULT 'running',
	summary     TEXT             -- JSON Summary, set by FinishRun
) STRICT;
CREATE INDEX runs_job_hash ON runs (job_hash, started);

CREATE TABLE cycles (
	run                 TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	board               TEXT NOT NULL,
	cycle               INTEGER NOT NULL,
	plan                TEXT NOT NULL,
	planned_block       INTEGER NOT NULL,
	cut_trigger         TEXT,    -- the cut columns are NULL when no cut fired
	cut_t               INTEGER,
	cut_latency         INTEGER,
	cut_last_acked      INTEGER,
	cut_in_flight       INTEGER,
	outcome             TEXT NOT NULL,
	reflashed           INTEGER NOT NULL,
	accepted            INTEGER NOT NULL,
	reason              TEXT NOT NULL,
	blocks              INTEGER NOT NULL,
	block_size          INTEGER NOT NULL,
	image_size          INTEGER NOT NULL,
	blocks_sent         INTEGER NOT NULL,
	blocks_resent       INTEGER NOT NULL,
	resumes             TEXT NOT NULL,   -- JSON array
	transfer            INTEGER NOT NULL,
	recovery_answer     INTEGER NOT NULL,
	recovery_version    INTEGER NOT NULL,
	start_t             INTEGER NOT NULL, -- run clock
	end_t               INTEGER NOT NULL,
	last_console        TEXT NOT NULL,   -- JSON array
	UNIQUE (run, board, cycle)
) STRICT;

CREATE TABLE events (
	id    INTEGER PRIMARY KEY,
	run   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	t     INTEGER NOT NULL,
	wall  INTEGER NOT NULL,
	board TEXT NOT NULL,
	cycle INTEGER NOT NULL,
	kind  TEXT NOT NULL,
	block INTEGER NOT NULL,
	dur   INTEGER NOT NULL,
	text  TEXT NOT NULL,
	attrs TEXT               -- JSON object, NULL when none
) STRICT;
CREATE INDEX events_run ON events (run, board, cycle);
`,
	// 1 → 2: missed cuts. Why a planned cut did not land, how often the
	// cycle ran, and the device's own record of the cut (NULL when it
	// keeps none). Rows of older runs read back as no miss, attempts
	// unknown (0) and no device record.
	`
ALTER TABLE cycles ADD COLUMN missed TEXT NOT NULL DEFAULT '';
ALTER TABLE cycles ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cycles ADD COLUMN cut_device_writing INTEGER;
ALTER TABLE cycles ADD COLUMN cut_device_last_acked INTEGER;
ALTER TABLE cycles ADD COLUMN cut_device_flash TEXT;
`,
	// 2 → 3: secured links. A cycle's security findings and what its
	// secured recovery cost (JSON, NULL when none), and every AEAD nonce
	// the devices used, so that a reuse is found across the whole
	// campaign and across --resume.
	`
ALTER TABLE cycles ADD COLUMN findings TEXT;
ALTER TABLE cycles ADD COLUMN secure TEXT;
CREATE TABLE nonces (
	run   TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	board TEXT NOT NULL,
	proto TEXT NOT NULL,
	key   BLOB NOT NULL,   -- fingerprint of the device's key
	nonce BLOB NOT NULL,
	ct    INTEGER NOT NULL, -- hash of the ciphertext
	cycle INTEGER NOT NULL,
	PRIMARY KEY (run, board, proto, key, nonce)
) STRICT, WITHOUT ROWID;
`,
	// 3 → 4: lab mode. Events that arrive over the network carry where
	// they came from (the message and the event's place in it), so an
	// agent or a coordinator that sends or reads a message twice stores
	// its events once. Local runs leave src NULL.
	`
ALTER TABLE events ADD COLUMN src TEXT;
CREATE UNIQUE INDEX events_src ON events (run, src) WHERE src IS NOT NULL;
`,
	// 4 → 5: measuring supplies. What a cycle's update drew (JSON, NULL
	// when the board's supply does not measure).
	`
ALTER TABLE cycles ADD COLUMN energy TEXT;
`,
	// 5 → 6: what restoring and recovering a board cost. The writes over
	// its probe during the cycle (how many, their time in nanoseconds)
	// and the device's sector erases (NULL when it does not count them).
	// Rows of older runs read back as no probe use and erases not counted.
	`
ALTER TABLE cycles ADD COLUMN probe_uses INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cycles ADD COLUMN probe_time INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cycles ADD COLUMN erases INTEGER;
`,
}

// DB is the results database: every run, its cycles and its events, kept
// across runs in one SQLite file (WAL mode, so readers never block the
// writer and a killed writer leaves a consistent file).
//
// DB is safe for concurrent use.
type DB struct {
	path string
	db   *sql.DB
}

// OpenDB opens or creates the database at path, creating its parent
// directory, and brings its schema up to date.
//
// Commits are synchronous=FULL: a transaction that returned survives a
// crash of the process and of the host.
func OpenDB(path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("results: open db: empty path")
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("results: open db %s: path must not contain '?' or '#'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("results: open db %s: %w", path, err)
	}
	dsn := path + fmt.Sprintf("?_busy_timeout=%d&_journal_mode=WAL&_foreign_keys=1&_synchronous=FULL&_txlock=immediate",
		DefaultBusyTimeout.Milliseconds())
	sdb, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("results: open db %s: %w", path, err)
	}
	d := &DB{path: path, db: sdb}
	if err := d.migrate(); err != nil {
		sdb.Close()
		return nil, err
	}
	return d, nil
}

// Path returns the database file's path.
func (d *DB) Path() string { return d.path }

// Close closes the database. Event sinks must be closed first.
func (d *DB) Close() error {
	if err := d.db.Close(); err != nil {
		return fmt.Errorf("results: close db %s: %w", d.path, err)
	}
	return nil
}

func (d *DB) wrap(op string, err error) error {
	return fmt.Errorf("results: %s in %s: %w", op, d.path, err)
}

func (d *DB) migrate() error {
	ctx := context.Background()
	// An immediate transaction holds the write lock, so two processes
	// opening a new file at once do not both create the schema.
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap("migrate", err)
	}
	defer tx.Rollback()
	var v int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return d.wrap("migrate", err)
	}
	if v > schemaVersion {
		return d.wrap("migrate", fmt.Errorf("schema version %d is newer than this fudbench's %d", v, schemaVersion))
	}
	for ; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return d.wrap(fmt.Sprintf("migrate to schema %d", v+1), err)
		}
	}
	// PRAGMA takes no bound parameters; v is an int.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", v)); err != nil {
		return d.wrap("migrate", err)
	}
	if err := tx.Commit(); err != nil {
		return d.wrap("migrate", err)
	}
	return nil
}

// SchemaVersion returns the database's PRAGMA user_version.
func (d *DB) SchemaVersion() (int, error) {
	var v int
	if err := d.db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return 0, d.wrap("schema version", err)
	}
	return v, nil
}

// IntegrityCheck runs PRAGMA integrity_check and fails unless it says ok.
func (d *DB) IntegrityCheck() error {
	rows, err := d.db.Query("PRAGMA integrity_check")
	if err != nil {
		return d.wrap("integrity check", err)
	}
	defer rows.Close()
	var msgs []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return d.wrap("integrity check", err)
		}
		msgs = append(msgs, s)
	}
	if err := rows.Err(); err != nil {
		return d.wrap("integrity check", err)
	}
	if len(msgs) == 1 && msgs[0] == "ok" {
		return nil
	}
	return d.wrap("integrity check", fmt.Errorf("%s", strings.Join(msgs, "; ")))
}

// unixNano stores a zero time as 0, so it reads back as zero.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps, slices and strings reach here; they always marshal.
		panic(err)
	}
	return string(b)
}

// BeginRun records a new run as running. Its ID must be new: to continue
// a run found by LatestUnfinished, keep using its ID without BeginRun.
func (d *DB) BeginRun(r RunInfo) error {
	if r.ID == "" {
		return d.wrap("begin run", errors.New("empty run id"))
	}
	_, err := d.db.Exec(`INSERT INTO runs (id, job, job_file, job_hash, started, boards, host, version, planned, status)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, runRow(r, RunRunning)...)
	if err != nil {
		return d.wrap("begin run "+r.ID, err)
	}
	return nil
}

// runRow is a run's columns for an INSERT, in the order of BeginRun's.
func runRow(r RunInfo, status string) []any {
	boards := r.Boards
	if boards == nil {
		boards = []string{}
	}
	planned := r.Planned
	if planned == nil {
		planned = map[string]int{}
	}
	return []any{r.ID, r.Job, r.JobFile, r.JobHash, unixNano(r.Started), mustJSON(boards), r.Host, r.Version, mustJSON(planned), status}
}

// FinishRun marks a run finished now with status (a Verdict, or
// RunInterrupted) and stores its summary. It may be called again on a
// resumed run.
func (d *DB) FinishRun(id string, status string, s Summary) error {
	b, err := json.Marshal(s)
	if err != nil {
		return d.wrap("finish run "+id, err)
	}
	res, err := d.db.Exec(`UPDATE runs SET finished_at = ?, status = ?, summary = ? WHERE id = ?`,
		time.Now().UnixNano(), status, string(b), id)
	if err != nil {
		return d.wrap("finish run "+id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return d.wrap("finish run "+id, ErrNoRun)
	}
	return nil
}

// ResumeRun marks a run found by LatestUnfinished as running again, so
// that a crash of the resumed run leaves it unfinished too. New cycles
// and events are then recorded under the same ID.
func (d *DB) ResumeRun(id string) error {
	res, err := d.db.Exec(`UPDATE runs SET finished_at = NULL, status = ? WHERE id = ?`, RunRunning, id)
	if err != nil {
		return d.wrap("resume run "+id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return d.wrap("resume run "+id, ErrNoRun)
	}
	return nil
}

// ErrNoRun is returned for a run ID the database does not hold.
var ErrNoRun = errors.New("no such run")

// RunRecord is a run as stored: its identity and how it ended.
type RunRecord struct {
	RunInfo
	Finished time.Time // zero while running (or killed)
	Status   string
}

const runColumns = `id, job, job_file, job_hash, started, boards, host, version, planned, finished_at, status`

func scanRun(sc interface{ Scan(...any) error }) (RunRecord, error) {
	var (
		r               RunRecord
		started         int64
		finished        sql.NullInt64
		boards, planned string
	)
	if err := sc.Scan(&r.ID, &r.Job, &r.JobFile, &r.JobHash, &started, &boards, &r.Host, &r.Version, &planned, &finished, &r.Status); err != nil {
		return r, err
	}
	r.Started = fromUnixNano(started)
	if finished.Valid {
		r.Finished = time.Unix(0, finished.Int64)
	}
	if err := json.Unmarshal([]byte(boards), &r.Boards); err != nil {
		return r, fmt.Errorf("run %s boards: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(planned), &r.Planned); err != nil {
		return r, fmt.Errorf("run %s planned: %w", r.ID, err)
	}
	return r, nil
}

// Runs returns every run, oldest first.
func (d *DB) Runs() ([]RunRecord, error) {
	rows, err := d.db.Query(`SELECT ` + runColumns + ` FROM runs ORDER BY started, rowid`)
	if err != nil {
		return nil, d.wrap("list runs", err)
	}
	defer rows.Close()
	var out []RunRecord
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, d.wrap("list runs", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("list runs", err)
	}
	return out, nil
}

// Run returns one run, or an error wrapping ErrNoRun.
func (d *DB) Run(id string) (RunRecord, error) {
	r, err := scanRun(d.db.QueryRow(`SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, d.wrap("run "+id, ErrNoRun)
	}
	if err != nil {
		return r, d.wrap("run "+id, err)
	}
	return r, nil
}

// Summary returns the summary FinishRun stored for a run; ok is false
// while the run has none.
func (d *DB) Summary(id string) (s Summary, ok bool, err error) {
	var b sql.NullString
	err = d.db.QueryRow(`SELECT summary FROM runs WHERE id = ?`, id).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return s, false, d.wrap("summary of "+id, ErrNoRun)
	}
	if err != nil {
		return s, false, d.wrap("summary of "+id, err)
	}
	if !b.Valid {
		return s, false, nil
	}
	if err := json.Unmarshal([]byte(b.String), &s); err != nil {
		return s, false, d.wrap("summary of "+id, err)
	}
	return s, true, nil
}

// LatestUnfinished returns the newest run with jobHash that never
// finished (killed) or was interrupted, with the cycles it recorded, for
// --resume. It returns nil, nil, nil when there is none.
func (d *DB) LatestUnfinished(jobHash string) (*RunInfo, []Cycle, error) {
	r, err := scanRun(d.db.QueryRow(`SELECT `+runColumns+` FROM runs
		WHERE job_hash = ? AND (finished_at IS NULL OR status = ?)
		ORDER BY started DESC, rowid DESC LIMIT 1`, jobHash, RunInterrupted))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, d.wrap("find unfinished run", err)
	}
	cs, err := d.Cycles(r.ID)
	if err != nil {
		return nil, nil, err
	}
	info := r.RunInfo
	return &info, cs, nil
}

// RecordCycle stores a finished cycle in one transaction and returns once
// it is durable. Recording the same (run, board, cycle) again replaces
// it. The run must exist.
func (d *DB) RecordCycle(c Cycle) error {
	op := fmt.Sprintf("record cycle %s/%s/%d", c.Run, c.Board, c.Cycle)
	var (
		trig, devFlash             sql.NullString
		cutT, lat, acked, inFlight sql.NullInt64
		devWriting, devAcked       sql.NullInt64
	)
	if c.Cut != nil {
		trig = sql.NullString{String: c.Cut.Trigger, Valid: true}
		cutT = sql.NullInt64{Int64: int64(c.Cut.T), Valid: true}
		lat = sql.NullInt64{Int64: int64(c.Cut.Latency), Valid: true}
		acked = sql.NullInt64{Int64: c.Cut.LastAcked, Valid: true}
		inFlight = sql.NullInt64{Int64: c.Cut.InFlight, Valid: true}
		if d := c.Cut.Device; d != nil {
			devWriting = sql.NullInt64{Int64: d.Writing, Valid: true}
			devAcked = sql.NullInt64{Int64: d.LastAcked, Valid: true}
			devFlash = sql.NullString{String: d.Flash, Valid: true}
		}
	}
	resumes := c.Resumes
	if resumes == nil {
		resumes = []uint32{}
	}
	console := c.LastConsole
	if console == nil {
		console = []string{}
	}
	var findings, secure sql.NullString
	if len(c.Findings) > 0 {
		findings = sql.NullString{String: mustJSON(c.Findings), Valid: true}
	}
	if c.Secure != nil {
		secure = sql.NullString{String: mustJSON(c.Secure), Valid: true}
	}
	var energy sql.NullString
	if c.Energy != nil {
		energy = sql.NullString{String: mustJSON(c.Energy), Valid: true}
	}
	var erases sql.NullInt64
	if c.Erases != nil {
		erases = sql.NullInt64{Int64: int64(*c.Erases), Valid: true}
	}
	tx, err := d.db.Begin()
	if err != nil {
		return d.wrap(op, err)
	}
	defer tx.Rollback()
	_, err = tx.Exec(`INSERT INTO cycles (run, board, cycle, plan, planned_block,
			cut_trigger, cut_t, cut_latency, cut_last_acked, cut_in_flight,
			outcome, reflashed, accepted, reason, blocks, block_size, image_size,
			blocks_sent, blocks_resent, resumes, transfer, recovery_answer, recovery_version,
			start_t, end_t, last_console,
			missed, attempts, cut_device_writing, cut_device_last_acked, cut_device_flash,
			findings, secure, energy, probe_uses, probe_time, erases)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (run, board, cycle) DO UPDATE SET
			plan = excluded.plan, planned_block = excluded.planned_block,
			cut_trigger = excluded.cut_trigger, cut_t = excluded.cut_t, cut_latency = excluded.cut_latency,
			cut_last_acked = excluded.cut_last_acked, cut_in_flight = excluded.cut_in_flight,
			outcome = excluded.outcome, reflashed = excluded.reflashed, accepted = excluded.accepted,
			reason = excluded.reason, blocks = excluded.blocks, block_size = excluded.block_size,
			image_size = excluded.image_size, blocks_sent = excluded.blocks_sent,
			blocks_resent = excluded.blocks_resent, resumes = excluded.resumes,
			transfer = excluded.transfer, recovery_answer = excluded.recovery_answer,
			recovery_version = excluded.recovery_version, start_t = excluded.start_t, end_t = excluded.end_t,
			last_console = excluded.last_console,
			missed = excluded.missed, attempts = excluded.attempts,
			cut_device_writing = excluded.cut_device_writing, cut_device_last_acked = excluded.cut_device_last_acked,
			cut_device_flash = excluded.cut_device_flash,
			findings = excluded.findings, secure = excluded.secure, energy = excluded.energy,
			probe_uses = excluded.probe_uses, probe_time = excluded.probe_time, erases = excluded.erases`,
		c.Run, c.Board, c.Cycle, c.Plan, c.PlannedBlock,
		trig, cutT, lat, acked, inFlight,
		string(c.Outcome), c.Reflashed, c.Accepted, c.Reason, c.Blocks, c.BlockSize, c.ImageSize,
		c.BlocksSent, c.BlocksResent, mustJSON(resumes), int64(c.Transfer), int64(c.RecoveryAnswer), int64(c.RecoveryVersion),
		int64(c.Start), int64(c.End), mustJSON(console),
		c.Missed, c.Attempts, devWriting, devAcked, devFlash,
		findings, secure, energy, c.ProbeUses, int64(c.ProbeTime), erases)
	if err != nil {
		return d.wrap(op, err)
	}
	for _, n := range c.Nonces {
		// The first use of a nonce is the one kept: a later one under the
		// same key is the finding, not a replacement.
		if _, err := tx.Exec(`INSERT INTO nonces (run, board, proto, key, nonce, ct, cycle)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
			c.Run, cmp.Or(n.Board, c.Board), n.Proto, n.Key, n.Nonce, int64(n.CT), n.Cycle); err != nil {
			return d.wrap(op, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return d.wrap(op, err)
	}
	return nil
}

// Cycles returns a run's recorded cycles ordered by board and cycle.
func (d *DB) Cycles(runID string) ([]Cycle, error) {
	return d.cycles(runID, "ORDER BY board, cycle", -1)
}

// CyclesSince returns a run's cycles in the order they were first
// recorded, skipping the first skip: what a follower has not seen yet.
func (d *DB) CyclesSince(runID string, skip int) ([]Cycle, error) {
	return d.cycles(runID, "ORDER BY rowid", max(skip, 0))
}

func (d *DB) cycles(runID, order string, skip int) ([]Cycle, error) {
	tail := order
	if skip >= 0 {
		tail += fmt.Sprintf(" LIMIT -1 OFFSET %d", skip)
	}
	rows, err := d.db.Query(`SELECT run, board, cycle, plan, planned_block,
			cut_trigger, cut_t, cut_latency, cut_last_acked, cut_in_flight,
			outcome, reflashed, accepted, reason, blocks, block_size, image_size,
			blocks_sent, blocks_resent, resumes, transfer, recovery_answer, recovery_version,
			start_t, end_t, last_console,
			missed, attempts, cut_device_writing, cut_device_last_acked, cut_device_flash,
			findings, secure, energy, probe_uses, probe_time, erases
		FROM cycles WHERE run = ? `+tail, runID)
	if err != nil {
		return nil, d.wrap("read cycles of "+runID, err)
	}
	defer rows.Close()
	var out []Cycle
	for rows.Next() {
		var (
			c                                              Cycle
			trig, devFlash                                 sql.NullString
			cutT, lat, acked, inFlight                     sql.NullInt64
			devWriting, devAcked                           sql.NullInt64
			findings, secure, energy                       sql.NullString
			outcome, resumes, console                      string
			transfer, recAnswer, recVersion, start, finish int64
			probeTime                                      int64
			erases                                         sql.NullInt64
		)
		if err := rows.Scan(&c.Run, &c.Board, &c.Cycle, &c.Plan, &c.PlannedBlock,
			&trig, &cutT, &lat, &acked, &inFlight,
			&outcome, &c.Reflashed, &c.Accepted, &c.Reason, &c.Blocks, &c.BlockSize, &c.ImageSize,
			&c.BlocksSent, &c.BlocksResent, &resumes, &transfer, &recAnswer, &recVersion,
			&start, &finish, &console,
			&c.Missed, &c.Attempts, &devWriting, &devAcked, &devFlash,
			&findings, &secure, &energy, &c.ProbeUses, &probeTime, &erases); err != nil {
			return nil, d.wrap("read cycles of "+runID, err)
		}
		if trig.Valid {
			c.Cut = &CutInfo{Trigger: trig.String, T: time.Duration(cutT.Int64), Latency: time.Duration(lat.Int64),
				LastAcked: acked.Int64, InFlight: inFlight.Int64}
			if devWriting.Valid {
				c.Cut.Device = &DeviceCut{Writing: devWriting.Int64, LastAcked: devAcked.Int64, Flash: devFlash.String}
			}
		}
		c.Outcome = Outcome(outcome)
		c.Transfer, c.RecoveryAnswer, c.RecoveryVersion = time.Duration(transfer), time.Duration(recAnswer), time.Duration(recVersion)
		c.Start, c.End = time.Duration(start), time.Duration(finish)
		c.ProbeTime = time.Duration(probeTime)
		if erases.Valid {
			n := int(erases.Int64)
			c.Erases = &n
		}
		if err := json.Unmarshal([]byte(resumes), &c.Resumes); err != nil {
			return nil, d.wrap("read cycles of "+runID, err)
		}
		if len(c.Resumes) == 0 {
			c.Resumes = nil
		}
		if err := json.Unmarshal([]byte(console), &c.LastConsole); err != nil {
			return nil, d.wrap("read cycles of "+runID, err)
		}
		if len(c.LastConsole) == 0 {
			c.LastConsole = nil
		}
		if findings.Valid {
			if err := json.Unmarshal([]byte(findings.String), &c.Findings); err != nil {
				return nil, d.wrap("read cycles of "+runID, err)
			}
		}
		if secure.Valid {
			c.Secure = new(SecureRecovery)
			if err := json.Unmarshal([]byte(secure.String), c.Secure); err != nil {
				return nil, d.wrap("read cycles of "+runID, err)
			}
		}
		if energy.Valid {
			c.Energy = new(Energy)
			if err := json.Unmarshal([]byte(energy.String), c.Energy); err != nil {
				return nil, d.wrap("read cycles of "+runID, err)
			}
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("read cycles of "+runID, err)
	}
	return out, nil
}

// Nonces returns every device nonce a run has recorded, in the order of
// the cycles that first used them.
func (d *DB) Nonces(runID string) ([]NonceUse, error) {
	rows, err := d.db.Query(`SELECT board, proto, key, nonce, ct, cycle FROM nonces
		WHERE run = ? ORDER BY board, cycle`, runID)
	if err != nil {
		return nil, d.wrap("read nonces of "+runID, err)
	}
	defer rows.Close()
	var out []NonceUse
	for rows.Next() {
		var n NonceUse
		var ct int64
		if err := rows.Scan(&n.Board, &n.Proto, &n.Key, &n.Nonce, &ct, &n.Cycle); err != nil {
			return nil, d.wrap("read nonces of "+runID, err)
		}
		n.CT = uint64(ct)
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("read nonces of "+runID, err)
	}
	return out, nil
}

// ReadEvents returns a run's stored events in the order they were stored.
func (d *DB) ReadEvents(runID string) ([]Event, error) {
	rows, err := d.db.Query(`SELECT t, wall, board, cycle, kind, block, dur, text, attrs
		FROM events WHERE run = ? ORDER BY id`, runID)
	if err != nil {
		return nil, d.wrap("read events of "+runID, err)
	}
	defer rows.Close()
	var out []Event
	for rows.Next() {
		var (
			e           Event
			t, wall, du int64
			kind        string
			attrs       sql.NullString
		)
		if err := rows.Scan(&t, &wall, &e.Board, &e.Cycle, &kind, &e.Block, &du, &e.Text, &attrs); err != nil {
			return nil, d.wrap("read events of "+runID, err)
		}
		e.T, e.Wall, e.Dur, e.Kind = time.Duration(t), fromUnixNano(wall), time.Duration(du), Kind(kind)
		if attrs.Valid {
			if err := json.Unmarshal([]byte(attrs.String), &e.Attrs); err != nil {
				return nil, d.wrap("read events of "+runID, err)
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, d.wrap("read events of "+runID, err)
	}
	return out, nil
}

// CountEvents returns how many events a run has stored.
func (d *DB) CountEvents(runID string) (int, error) {
	var n int
	if err := d.db.QueryRow(`SELECT count(*) FROM events WHERE run = ?`, runID).Scan(&n); err != nil {
		return 0, d.wrap("count events of "+runID, err)
	}
	return n, nil
}
