package results

import (
	"database/sql"
	"errors"
	"fmt"
)

// The methods of this file serve a store fed over the network (lab mode's
// coordinator): a run is recorded before any board runs it, then filled
// in by whichever agent takes it, and every write may arrive twice.

// PutRun records r with status, or updates a run already recorded: its
// boards, planned cycles, host and version are replaced, its start time
// and job identity kept. A finished run is left finished.
func (d *DB) PutRun(r RunInfo, status string) error {
	if r.ID == "" {
		return d.wrap("put run", errors.New("empty run id"))
	}
	_, err := d.db.Exec(`INSERT INTO runs (id, job, job_file, job_hash, started, boards, host, version, planned, status)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET boards = excluded.boards, host = excluded.host,
			version = excluded.version, planned = excluded.planned, status = excluded.status
		WHERE runs.finished_at IS NULL`, runRow(r, status)...)
	if err != nil {
		return d.wrap("put run "+r.ID, err)
	}
	return nil
}

// StoreEvents stores events of a run that arrived together, once: src
// names where they came from (a message ID), and an event already stored
// under the same src and place is skipped. It returns how many were new.
func (d *DB) StoreEvents(run, src string, evs []Event) (int, error) {
	op := fmt.Sprintf("store %d events of %s from %s", len(evs), run, src)
	if src == "" {
		return 0, d.wrap(op, errors.New("empty source"))
	}
	tx, err := d.db.Begin()
	if err != nil {
		return 0, d.wrap(op, err)
	}
	defer tx.Rollback()
	st, err := tx.Prepare(`INSERT INTO events (run, t, wall, board, cycle, kind, block, dur, text, attrs, src)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return 0, d.wrap(op, err)
	}
	defer st.Close()
	n := 0
	for i, e := range evs {
		var attrs sql.NullString
		if len(e.Attrs) > 0 {
			attrs = sql.NullString{String: mustJSON(e.Attrs), Valid: true}
		}
		res, err := st.Exec(run, int64(e.T), unixNano(e.Wall), e.Board, e.Cycle, string(e.Kind),
			e.Block, int64(e.Dur), e.Text, attrs, fmt.Sprintf("%s#%d", src, i))
		if err != nil {
			return 0, d.wrap(op, err)
		}
		if k, err := res.RowsAffected(); err == nil {
			n += int(k)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, d.wrap(op, err)
	}
	return n, nil
}
