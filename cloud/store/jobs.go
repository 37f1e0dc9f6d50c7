package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// JobState is where a job is in its life. The only transitions are
// pending → running → completed | failed | cancelled, and pending →
// cancelled.
type JobState string

// The states of a job.
const (
	JobPending   JobState = "pending"
	JobRunning   JobState = "running"
	JobCompleted JobState = "completed"
	JobFailed    JobState = "failed"
	JobCancelled JobState = "cancelled"
)

// Ended reports whether the state is final.
func (s JobState) Ended() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// ErrJobState is returned when a job is asked for a transition its state
// does not allow.
var ErrJobState = errors.New("not allowed in the job's state")

// Job is a background job of a user: an import of a track file for one of
// their devices.
type Job struct {
	ID       string
	OwnerID  int64
	Kind     string // "import"
	Device   string
	State    JobState
	Name     string // the name of the track it makes
	FileName string // the uploaded file's name, as the client gave it
	Format   string
	Size     int64  // bytes uploaded
	SHA256   string // of the upload, hex
	// Progress is 0–100; Total the number of items (positions) to
	// process, -1 while unknown; Processed and Skipped those done and
	// those dropped and counted.
	Progress                  int
	Total, Processed, Skipped int64
	TrackID                   string // the track made, once completed
	Error                     string // why it failed
	CancelRequested           bool   // someone asked it to stop while it ran
	CreatedAt                 time.Time
	StartedAt, EndedAt        *time.Time
}

const jobColumns = `id, owner_id, kind, device_id, state, name, file_name, format, size_bytes, sha256, progress, total_items,
	processed_items, skipped_items, track_id, error, cancel_requested, created_ns, started_ns, ended_ns FROM jobs`

func scanJob(r row) (*Job, error) {
	var j Job
	var created int64
	var started, ended sql.NullInt64
	err := r.Scan(&j.ID, &j.OwnerID, &j.Kind, &j.Device, &j.State, &j.Name, &j.FileName, &j.Format, &j.Size, &j.SHA256,
		&j.Progress, &j.Total, &j.Processed, &j.Skipped, &j.TrackID, &j.Error, &j.CancelRequested, &created, &started, &ended)
	if err != nil {
		return nil, err
	}
	j.CreatedAt = time.Unix(0, created).UTC()
	j.StartedAt = timeOf(started)
	j.EndedAt = timeOf(ended)
	return &j, nil
}

func timeOf(ns sql.NullInt64) *time.Time {
	if !ns.Valid {
		return nil
	}
	t := time.Unix(0, ns.Int64).UTC()
	return &t
}

// CreateJob stores a new pending job.
func (s *Store) CreateJob(ctx context.Context, j *Job) error {
	j.State = JobPending
	if j.CreatedAt.IsZero() {
		j.CreatedAt = time.Now().UTC()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO jobs (id, owner_id, kind, device_id, state, name, file_name, format, size_bytes, sha256, total_items, created_ns)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		j.ID, j.OwnerID, j.Kind, j.Device, j.State, j.Name, j.FileName, j.Format, j.Size, j.SHA256, j.Total, j.CreatedAt.UnixNano())
	if err != nil {
		return fmt.Errorf("create job: %w", err)
	}
	return nil
}

// Job returns a job by id.
func (s *Store) Job(ctx context.Context, id string) (*Job, error) {
	j, err := scanJob(s.db.QueryRowContext(ctx, `SELECT `+jobColumns+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", id, err)
	}
	return j, nil
}

// JobFilter selects a user's jobs for JobList.
type JobFilter struct {
	OwnerID int64
	States  []JobState // only jobs in these states, when not empty
	Limit   int        // at most this many (1 when less)
	// After continues a listing: only jobs after this one in the order
	// (newest first, then id descending).
	After *JobCursor
}

// JobCursor is a position in a listing of jobs.
type JobCursor struct {
	Created time.Time
	ID      string
}

// JobList returns a user's jobs, newest first.
func (s *Store) JobList(ctx context.Context, f JobFilter) ([]*Job, error) {
	var where strings.Builder
	args := []any{f.OwnerID}
	where.WriteString(`owner_id = ?`)
	if len(f.States) > 0 {
		where.WriteString(` AND state IN (?` + strings.Repeat(`, ?`, len(f.States)-1) + `)`)
		for _, st := range f.States {
			args = append(args, st)
		}
	}
	if f.After != nil {
		ns := f.After.Created.UnixNano()
		where.WriteString(` AND (created_ns < ? OR (created_ns = ? AND id < ?))`)
		args = append(args, ns, ns, f.After.ID)
	}
	args = append(args, max(f.Limit, 1))
	return s.jobs(ctx, `SELECT `+jobColumns+` WHERE `+where.String()+` ORDER BY created_ns DESC, id DESC LIMIT ?`, args...)
}

// OpenJobs returns the jobs not yet ended, oldest first: the work of a
// runner, including what a stopped one left running.
func (s *Store) OpenJobs(ctx context.Context) ([]*Job, error) {
	return s.jobs(ctx, `SELECT `+jobColumns+` WHERE state IN ('pending', 'running') ORDER BY created_ns, id`)
}

func (s *Store) jobs(ctx context.Context, query string, args ...any) ([]*Job, error) {
	out, err := collect(scanJob)(s.db.QueryContext(ctx, query, args...))
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	return out, nil
}

// StartJob moves a pending job to running at instant at. A job already
// running (its runner stopped before it ended) stays running and is
// started again from scratch; its progress is reset.
func (s *Store) StartJob(ctx context.Context, id string, at time.Time) (*Job, error) {
	return s.moveJob(ctx, id, `state = 'running', started_ns = ?, progress = 0, processed_items = 0, skipped_items = 0`,
		[]any{at.UnixNano()}, JobPending, JobRunning)
}

// JobProgress records a running job's progress.
func (s *Store) JobProgress(ctx context.Context, id string, progress int, total, processed, skipped int64) (*Job, error) {
	return s.moveJob(ctx, id, `progress = ?, total_items = ?, processed_items = ?, skipped_items = ?`,
		[]any{progress, total, processed, skipped}, JobRunning)
}

// EndJob moves a running job to its final state (completed, failed or
// cancelled) at instant at, with the track it made or the error that
// ended it. A pending job can only be ended as cancelled.
func (s *Store) EndJob(ctx context.Context, id string, state JobState, at time.Time, trackID, errMsg string) (*Job, error) {
	set, from := `state = ?, ended_ns = ?, track_id = ?, error = ?`, []JobState{JobRunning}
	switch state {
	case JobCompleted:
		set += `, progress = 100`
	case JobCancelled:
		from = append(from, JobPending)
	case JobFailed:
	default:
		return nil, fmt.Errorf("job %q: end as %q: %w", id, state, ErrJobState)
	}
	return s.moveJob(ctx, id, set, []any{state, at.UnixNano(), trackID, errMsg}, from...)
}

// RequestJobCancel asks a job to stop: a pending one is cancelled at
// once, a running one is marked for its runner to stop. A job that has
// ended is ErrJobState.
func (s *Store) RequestJobCancel(ctx context.Context, id string, at time.Time) (*Job, error) {
	j, err := s.moveJob(ctx, id, `state = ?, ended_ns = ?`, []any{JobCancelled, at.UnixNano()}, JobPending)
	if err == nil || !errors.Is(err, ErrJobState) {
		return j, err
	}
	return s.moveJob(ctx, id, `cancel_requested = 1`, nil, JobRunning)
}

// moveJob updates a job in one of the states from with set (args are its
// parameters) and returns it as stored; ErrJobState when the job is in
// another state, ErrNotFound when there is no such job.
func (s *Store) moveJob(ctx context.Context, id, set string, args []any, from ...JobState) (*Job, error) {
	var j *Job
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var err error
		if j, err = scanJob(tx.QueryRowContext(ctx, `SELECT `+jobColumns+` WHERE id = ?`, id)); err != nil {
			return err
		}
		found := false
		for _, st := range from {
			found = found || j.State == st
		}
		if !found {
			return fmt.Errorf("%w (%s)", ErrJobState, j.State)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE jobs SET `+set+` WHERE id = ?`, append(args, id)...); err != nil {
			return err
		}
		j, err = scanJob(tx.QueryRowContext(ctx, `SELECT `+jobColumns+` WHERE id = ?`, id))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("job %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("job %q: %w", id, err)
	}
	return j, nil
}
