// Package jobs runs the cloud's background jobs: imports of track files
// (GPX, NMEA logs, GeoJSON, CSV) for a user's device.
//
// An upload is streamed to a spool file in the data directory, hashed and
// measured, and becomes a pending job. A runner takes jobs one at a time:
// it reads the file once to validate it and count its positions (a
// malformed file fails with the line of its first problem, and nothing is
// written), then again to write the positions to InfluxDB in batches,
// reporting progress as it goes. The span of the positions then becomes a
// stopped track. Imports are idempotent: a position is stored by device and
// fix time, so importing a file again overwrites its points with the same
// values, and the track of an identical span is found rather than made
// twice.
//
// A job moves pending → running → completed | failed | cancelled, or
// pending → cancelled, and no other way. Cancelling a running import
// removes the positions it wrote when the span held none before it began;
// otherwise they are kept (they cannot be told from those already there)
// and no track is made. A runner stopped mid-job (shutdown, crash) takes the
// job up again from the start at its next start.
package jobs

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"trackgate/cloud/geo"
	"trackgate/cloud/importer"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
	"trackgate/internal/position"
)

// Store is what jobs keep in the SQL store.
type Store interface {
	Device(ctx context.Context, id string) (*store.Device, error)
	CreateJob(ctx context.Context, j *store.Job) error
	Job(ctx context.Context, id string) (*store.Job, error)
	OpenJobs(ctx context.Context) ([]*store.Job, error)
	StartJob(ctx context.Context, id string, at time.Time) (*store.Job, error)
	JobProgress(ctx context.Context, id string, progress int, total, processed, skipped int64) (*store.Job, error)
	EndJob(ctx context.Context, id string, state store.JobState, at time.Time, trackID, errMsg string) (*store.Job, error)
	RequestJobCancel(ctx context.Context, id string, at time.Time) (*store.Job, error)
}

// Points is where imported positions go (InfluxDB).
type Points interface {
	Write(ctx context.Context, lines []byte) error
	Points(ctx context.Context, device string, from, to time.Time, fn func(*position.Position) error) error
	DeletePoints(ctx context.Context, device string, from, to time.Time) error
}

// Tracks files an import's span as a track.
type Tracks interface {
	Imported(ctx context.Context, d *store.Device, name string, first, last time.Time, acc *geo.Accumulator) (*store.Track, bool, error)
}

// Config configures the service.
type Config struct {
	Store  Store
	Points Points
	Tracks Tracks
	// Dir holds the spooled uploads (created 0700).
	Dir string
	// MaxUpload is the largest upload, in bytes (default 1 GiB).
	MaxUpload int64
	// BatchSize is the positions per InfluxDB write (default 5000);
	// Writers the concurrent writes (default 2).
	BatchSize, Writers int
	// ProgressEvery is how often a running job's progress is stored and
	// a cancel request looked for (default 250 ms).
	ProgressEvery time.Duration
	// RetryFor bounds how long a write InfluxDB refuses for a passing
	// reason is retried before the job fails (default 2 min).
	RetryFor time.Duration
	Logger   *slog.Logger
	Now      func() time.Time // default time.Now
}

// Service creates and runs jobs. Create it with New.
type Service struct {
	cfg  Config
	st   Store
	log  *slog.Logger
	wake chan struct{}

	mu      sync.Mutex
	running map[string]context.CancelCauseFunc // the job this instance runs
}

// Errors of Import.
var (
	// ErrTooLarge: the upload is larger than MaxUpload.
	ErrTooLarge = errors.New("the file is larger than the largest import")
	// ErrEmpty: the upload has no bytes.
	ErrEmpty = errors.New("the file is empty")
	// ErrUpload: the upload could not be read to its end.
	ErrUpload = errors.New("the upload was cut short")
	// ErrFormat: the file's format could not be told from its first bytes.
	ErrFormat = errors.New("unknown file format")
	// ErrName: the track name asked for is not a track name.
	ErrName = errors.New("invalid track name")
)

// errCancelled is the cause of a job's context when someone cancels it.
var errCancelled = errors.New("cancelled")

// New returns a service; it creates the spool directory.
func New(cfg Config) (*Service, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = 1 << 30
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 5000
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 2
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = 250 * time.Millisecond
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = 2 * time.Minute
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	// Uploads cut short by a stop never became jobs.
	parts, err := filepath.Glob(filepath.Join(cfg.Dir, "*.upload.part"))
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	for _, p := range parts {
		os.Remove(p)
	}
	return &Service{cfg: cfg, st: cfg.Store, log: cfg.Logger, wake: make(chan struct{}, 1),
		running: map[string]context.CancelCauseFunc{}}, nil
}

// ImportRequest describes an upload.
type ImportRequest struct {
	Device   *store.Device
	Name     string          // name of the track; default: the file's name without its extension
	FileName string          // the file's name, as the client gave it (may be empty)
	Format   importer.Format // empty: detected from the content
}

// Import spools body (at most MaxUpload bytes) and makes it a pending job
// of the device's owner. A format that cannot be detected is ErrFormat; a
// body that is too large, empty or cut short is ErrTooLarge, ErrEmpty or
// ErrUpload, a bad name ErrName.
func (s *Service) Import(ctx context.Context, req ImportRequest, body io.Reader) (*store.Job, error) {
	name := req.Name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(req.FileName), filepath.Ext(req.FileName))
		if name == "." || name == "/" {
			name = ""
		}
		name = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return -1
			}
			return r
		}, name)
		if len(name) > tracks.MaxNameLen {
			name = name[:tracks.MaxNameLen]
		}
	}
	if err := tracks.CheckName(name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrName, err)
	}
	j := &store.Job{ID: tracks.NewID(), OwnerID: req.Device.OwnerID, Kind: "import", Device: req.Device.ID, Name: name,
		FileName: req.FileName, Total: -1, CreatedAt: s.cfg.Now().UTC()}
	size, sum, head, err := s.spool(j.ID, body)
	if err != nil {
		return nil, err
	}
	j.Size, j.SHA256 = size, sum
	format := req.Format
	if format == "" {
		if format, err = importer.Detect(head); err != nil {
			os.Remove(s.spoolPath(j.ID))
			return nil, fmt.Errorf("%w: %v", ErrFormat, err)
		}
	}
	j.Format = string(format)
	if err := s.st.CreateJob(ctx, j); err != nil {
		os.Remove(s.spoolPath(j.ID))
		return nil, err
	}
	s.log.Info("import queued", "job", j.ID, "device", j.Device, "format", j.Format, "bytes", j.Size)
	s.Wake()
	return j, nil
}

// spool copies body to the job's spool file, returning its size, SHA-256
// and first bytes.
func (s *Service) spool(id string, body io.Reader) (size int64, sum string, head []byte, err error) {
	path := s.spoolPath(id)
	f, err := os.OpenFile(path+".part", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, "", nil, fmt.Errorf("spool upload: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(path + ".part")
		}
	}()
	h := sha256.New()
	hw := &headWriter{max: 4096}
	n, err := io.Copy(io.MultiWriter(f, h, hw), io.LimitReader(body, s.cfg.MaxUpload+1))
	if err != nil {
		return 0, "", nil, fmt.Errorf("%w: %v", ErrUpload, err)
	}
	if n > s.cfg.MaxUpload {
		return 0, "", nil, fmt.Errorf("%w (%d bytes)", ErrTooLarge, s.cfg.MaxUpload)
	}
	if n == 0 {
		return 0, "", nil, ErrEmpty
	}
	if err = f.Sync(); err != nil {
		return 0, "", nil, fmt.Errorf("spool upload: %w", err)
	}
	if err = f.Close(); err != nil {
		return 0, "", nil, fmt.Errorf("spool upload: %w", err)
	}
	if err = os.Rename(path+".part", path); err != nil {
		return 0, "", nil, fmt.Errorf("spool upload: %w", err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), hw.b, nil
}

// headWriter keeps the first max bytes written to it.
type headWriter struct {
	b   []byte
	max int
}

func (w *headWriter) Write(p []byte) (int, error) {
	if n := min(len(p), w.max-len(w.b)); n > 0 {
		w.b = append(w.b, p[:n]...)
	}
	return len(p), nil
}

func (s *Service) spoolPath(id string) string { return filepath.Join(s.cfg.Dir, id+".upload") }

// MaxUpload is the largest upload the service takes, in bytes.
func (s *Service) MaxUpload() int64 { return s.cfg.MaxUpload }

// Cancel asks job j to stop: a pending one ends cancelled at once, a
// running one as soon as its runner sees the request. A job that has ended
// is store.ErrJobState.
func (s *Service) Cancel(ctx context.Context, j *store.Job) (*store.Job, error) {
	j, err := s.st.RequestJobCancel(ctx, j.ID, s.cfg.Now())
	if err != nil {
		return nil, err
	}
	if j.State == store.JobCancelled {
		os.Remove(s.spoolPath(j.ID))
		s.log.Info("import cancelled", "job", j.ID)
	}
	s.mu.Lock()
	if cancel := s.running[j.ID]; cancel != nil {
		cancel(errCancelled)
	}
	s.mu.Unlock()
	return j, nil
}

// Wake tells the runner that a job may be waiting.
func (s *Service) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run runs jobs, one at a time, until ctx is done: those left open by an
// earlier run first, then each new one. A job interrupted by ctx stays
// running, to be taken up again at the next start.
func (s *Service) Run(ctx context.Context) error {
	s.Wake()
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-poll.C:
		}
		js, err := s.st.OpenJobs(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Error("jobs: listing open jobs", "err", err)
			}
			continue
		}
		for _, j := range js {
			if ctx.Err() != nil {
				return nil
			}
			s.run(ctx, j)
		}
	}
}

// run runs job j to its end (or until ctx is done).
func (s *Service) run(ctx context.Context, j *store.Job) {
	if _, err := os.Stat(s.spoolPath(j.ID)); errors.Is(err, os.ErrNotExist) {
		return // another instance's upload, or one removed by a cancel
	}
	started, err := s.st.StartJob(ctx, j.ID, s.cfg.Now())
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, store.ErrJobState) {
			s.log.Error("jobs: starting a job", "job", j.ID, "err", err)
		}
		return
	}
	j = started
	jctx, cancel := context.WithCancelCause(ctx)
	s.mu.Lock()
	s.running[j.ID] = cancel
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.running, j.ID)
		s.mu.Unlock()
		cancel(nil)
	}()
	if j.CancelRequested {
		cancel(errCancelled)
	}
	s.log.Info("import started", "job", j.ID, "device", j.Device, "format", j.Format)
	trackID, err := s.runImport(jctx, j)
	if ctx.Err() != nil {
		s.log.Info("import interrupted; it starts again at the next start", "job", j.ID)
		return
	}
	state, msg := store.JobCompleted, ""
	switch {
	case errors.Is(context.Cause(jctx), errCancelled):
		state = store.JobCancelled
	case err != nil:
		state, msg = store.JobFailed, err.Error()
	}
	end, eerr := s.st.EndJob(context.WithoutCancel(ctx), j.ID, state, s.cfg.Now(), trackID, msg)
	if eerr != nil {
		s.log.Error("jobs: ending a job", "job", j.ID, "state", state, "err", eerr)
		return
	}
	os.Remove(s.spoolPath(j.ID))
	s.log.Info("import ended", "job", j.ID, "state", end.State, "positions", end.Processed, "skipped", end.Skipped,
		"track", end.TrackID, "error", end.Error, "took", end.EndedAt.Sub(*end.StartedAt))
}

// ValidID reports whether id has the form of a job id (that of a track
// id, which is how job ids are made).
func ValidID(id string) bool { return tracks.ValidID(id) }

// span is the first and last fix time of an import's positions, and
// their summary while they come in time order.
type span struct {
	first, last time.Time
	acc         geo.Accumulator
	unordered   bool
}

func (sp *span) add(ps []position.Position) {
	for i := range ps {
		sp.unordered = sp.unordered || !sp.acc.Add(&ps[i])
		t := ps[i].Time
		if sp.first.IsZero() || t.Before(sp.first) {
			sp.first = t
		}
		if t.After(sp.last) {
			sp.last = t
		}
	}
}

// runImport reads job j's file, writes its positions and files their span
// as a track, returning the track's id.
func (s *Service) runImport(ctx context.Context, j *store.Job) (string, error) {
	d, err := s.st.Device(ctx, j.Device)
	if err != nil || d.OwnerID != j.OwnerID {
		return "", fmt.Errorf("device %s is no longer registered to you", j.Device)
	}
	f, err := os.Open(s.spoolPath(j.ID))
	if err != nil {
		return "", fmt.Errorf("open the upload: %w", err)
	}
	defer f.Close()
	format := importer.Format(j.Format)
	opts := importer.Options{BatchSize: s.cfg.BatchSize, Now: s.cfg.Now()}

	// Pass 1: validate and count; nothing is written from a bad file.
	var sp span
	stats, err := importer.Read(ctx, bufio.NewReaderSize(f, 256<<10), format, opts, func(ps []position.Position) error {
		sp.add(ps)
		return nil
	})
	if err != nil {
		return "", err
	}
	if stats.Points == 0 {
		return "", fmt.Errorf("the file holds no positions (%d records skipped)", stats.Skipped)
	}
	total := int64(stats.Points)
	if _, err := s.st.JobProgress(ctx, j.ID, 0, total, 0, 0); err != nil {
		return "", err
	}
	// The span held no points before: a failed or cancelled import leaves
	// it as it was.
	held, err := s.holdsPoints(ctx, d.ID, sp)
	if err != nil {
		return "", err
	}

	// Pass 2: write.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("read the upload again: %w", err)
	}
	var done, skipped atomic.Int64
	werr := s.write(ctx, j, d.ID, f, format, opts, total, &done, &skipped)
	if werr == nil && done.Load() != total {
		werr = fmt.Errorf("the file changed while it was imported (%d positions, then %d)", total, done.Load())
	}
	if werr != nil {
		if !held && (ctx.Err() == nil || errors.Is(context.Cause(ctx), errCancelled)) {
			if err := s.cfg.Points.DeletePoints(context.WithoutCancel(ctx), d.ID, sp.first, sp.last); err != nil {
				s.log.Error("jobs: removing the positions of an unfinished import", "job", j.ID, "err", err)
			}
		}
		return "", werr
	}
	// The summary of the file is the track's when the span held nothing
	// else; otherwise it is computed from InfluxDB.
	var acc *geo.Accumulator
	if !held && !sp.unordered {
		acc = &sp.acc
	}
	t, created, err := s.cfg.Tracks.Imported(ctx, d, j.Name, sp.first, sp.last, acc)
	if err != nil {
		return "", fmt.Errorf("make the track: %w", err)
	}
	if !created {
		s.log.Info("import matched an existing track", "job", j.ID, "track", t.ID)
	}
	return t.ID, nil
}

// errHeld stops the look for points in a span at the first one.
var errHeld = errors.New("held")

func (s *Service) holdsPoints(ctx context.Context, device string, sp span) (bool, error) {
	err := s.cfg.Points.Points(ctx, device, sp.first, sp.last, func(*position.Position) error { return errHeld })
	if errors.Is(err, errHeld) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("look for positions already stored: %w", err)
	}
	return false, nil
}

// write is the second pass: the file's positions written in batches by
// concurrent writers, progress stored as it goes.
func (s *Service) write(ctx context.Context, j *store.Job, device string, r io.Reader, format importer.Format,
	opts importer.Options, total int64, done, skipped *atomic.Int64) error {
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []byte, s.cfg.Writers)
	free := make(chan []byte, s.cfg.Writers+2)
	for range s.cfg.Writers {
		g.Go(func() error {
			for lines := range batches {
				if err := gctx.Err(); err != nil {
					return err
				}
				n := int64(countLines(lines))
				if err := s.writeBatch(gctx, lines); err != nil {
					return err
				}
				done.Add(n)
				select {
				case free <- lines[:0]:
				default:
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(batches)
		stats, err := importer.Read(gctx, bufio.NewReaderSize(r, 256<<10), format, opts, func(ps []position.Position) error {
			var buf []byte
			select {
			case buf = <-free:
			default:
			}
			for i := range ps {
				buf = ps[i].AppendLineProtocol(buf, device)
			}
			select {
			case batches <- buf:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
		skipped.Store(int64(stats.Skipped))
		return err
	})
	stop := make(chan struct{})
	var progress sync.WaitGroup
	progress.Go(func() {
		t := time.NewTicker(s.cfg.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := done.Load()
			pj, err := s.st.JobProgress(ctx, j.ID, int(n*100/total), total, n, skipped.Load())
			if err == nil && pj.CancelRequested {
				s.mu.Lock()
				if cancel := s.running[j.ID]; cancel != nil {
					cancel(errCancelled)
				}
				s.mu.Unlock()
			}
		}
	})
	err := g.Wait()
	close(stop)
	progress.Wait()
	if err == nil {
		n := done.Load()
		_, err = s.st.JobProgress(ctx, j.ID, int(min(n*100/total, 99)), total, n, skipped.Load())
	}
	return err
}

func countLines(b []byte) int {
	n := 0
	for _, c := range b {
		if c == '\n' {
			n++
		}
	}
	return n
}

// writeBatch writes lines, retrying passing failures for up to RetryFor.
// A write under way is not cut short when ctx ends (InfluxDB might still
// apply it after the positions of a cancelled import were removed): ctx is
// looked at between tries.
func (s *Service) writeBatch(ctx context.Context, lines []byte) error {
	deadline := s.cfg.Now().Add(s.cfg.RetryFor)
	delay := 100 * time.Millisecond
	for {
		err := s.cfg.Points.Write(context.WithoutCancel(ctx), lines)
		if err == nil {
			return nil
		}
		var pe interface{ Permanent() bool }
		if ctx.Err() != nil || (errors.As(err, &pe) && pe.Permanent()) || s.cfg.Now().After(deadline) {
			return fmt.Errorf("store the positions: %w", err)
		}
		s.log.Warn("jobs: InfluxDB write failed; retrying", "retry_in", delay, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("store the positions: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}
