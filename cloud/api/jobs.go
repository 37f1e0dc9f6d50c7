package api

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"trackgate/cloud/importer"
	"trackgate/cloud/jobs"
	"trackgate/cloud/problem"
	"trackgate/cloud/store"
)

// Job is a job in the API.
type Job struct {
	ID              string         `json:"id"`
	Kind            string         `json:"kind"`
	Device          string         `json:"device"`
	State           store.JobState `json:"state"`
	Name            string         `json:"name"`
	FileName        string         `json:"file_name"`
	Format          string         `json:"format"`
	Size            int64          `json:"size"`
	SHA256          string         `json:"sha256"`
	Progress        int            `json:"progress"`
	Total           *int64         `json:"total_items"`
	Processed       int64          `json:"processed_items"`
	Skipped         int64          `json:"skipped_items"`
	Track           *string        `json:"track"`
	Error           string         `json:"error,omitempty"`
	CancelRequested bool           `json:"cancel_requested,omitempty"`
	Created         time.Time      `json:"created"`
	Started         *time.Time     `json:"started"`
	Ended           *time.Time     `json:"ended"`
}

func jobOut(j *store.Job) Job {
	out := Job{ID: j.ID, Kind: j.Kind, Device: j.Device, State: j.State, Name: j.Name, FileName: j.FileName,
		Format: j.Format, Size: j.Size, SHA256: j.SHA256, Progress: j.Progress, Processed: j.Processed, Skipped: j.Skipped,
		Error: j.Error, CancelRequested: j.CancelRequested && !j.State.Ended(), Created: j.CreatedAt, Started: j.StartedAt, Ended: j.EndedAt}
	if j.Total >= 0 {
		out.Total = &j.Total
	}
	if j.TrackID != "" {
		out.Track = &j.TrackID
	}
	return out
}

// createImport serves POST /api/v1/imports?device=&name=&format=&filename=
// with the file as the body: a pending import job (202, Location of the
// job).
func (s *Server) createImport(w http.ResponseWriter, r *http.Request) {
	u, _, ok := s.cfg.Auth.APICaller(w, r, ScopeTracksWrite)
	if !ok {
		return
	}
	q, ok := query(w, r, "device", "name", "format", "filename")
	if !ok {
		return
	}
	if q.Get("device") == "" {
		problem.Parameter(w, "device", "required: the device the positions are of")
		return
	}
	d := s.ownDevice(w, r, u, q.Get("device"), "device")
	if d == nil {
		return
	}
	req := jobs.ImportRequest{Device: d, Name: q.Get("name"), FileName: q.Get("filename")}
	if v := q.Get("format"); v != "" {
		f, err := importer.ParseFormat(v)
		if err != nil {
			problem.Parameter(w, "format", err.Error())
			return
		}
		req.Format = f
	}
	if r.ContentLength > s.cfg.Jobs.MaxUpload() {
		problem.Write(w, problem.TooLarge, tooLarge(s.cfg.Jobs.MaxUpload()), nil)
		return
	}
	// An upload that stalls does not hold its spool file for ever.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadTimeout))
	j, err := s.cfg.Jobs.Import(r.Context(), req, r.Body)
	switch {
	case errors.Is(err, jobs.ErrTooLarge):
		problem.Write(w, problem.TooLarge, tooLarge(s.cfg.Jobs.MaxUpload()), nil)
		return
	case errors.Is(err, jobs.ErrFormat):
		problem.Write(w, problem.UnknownFormat, err.Error()+"; name it with the format parameter (gpx, nmea, geojson or csv)", nil)
		return
	case errors.Is(err, jobs.ErrEmpty), errors.Is(err, jobs.ErrUpload):
		problem.Write(w, problem.InvalidRequest, err.Error(), nil)
		return
	case errors.Is(err, jobs.ErrName):
		problem.Parameter(w, "name", err.Error())
		return
	case err != nil:
		s.failed(w, r, "import", err)
		return
	}
	w.Header().Set("Location", "/api/v1/jobs/"+j.ID)
	writeJSON(w, http.StatusAccepted, jobOut(j))
}

// uploadTimeout bounds the reading of an import's upload.
const uploadTimeout = time.Hour

func tooLarge(n int64) string {
	return "the largest import is " + formatBytes(n)
}

// formatBytes writes n bytes in the largest binary unit that divides it.
func formatBytes(n int64) string {
	units := []string{"bytes", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for i < len(units)-1 && n >= 1024 && n%1024 == 0 {
		n /= 1024
		i++
	}
	return strconv.FormatInt(n, 10) + " " + units[i]
}

// listJobs serves GET /api/v1/jobs?state=&limit=&cursor=: the user's jobs,
// newest first; state is a comma-separated list of states.
func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	u, _, ok := s.cfg.Auth.APICaller(w, r, ScopeTracksRead)
	if !ok {
		return
	}
	q, ok := query(w, r, "state", "limit", "cursor")
	if !ok {
		return
	}
	f := store.JobFilter{OwnerID: u.ID}
	if v := q.Get("state"); v != "" {
		for st := range strings.SplitSeq(v, ",") {
			switch js := store.JobState(st); js {
			case store.JobPending, store.JobRunning, store.JobCompleted, store.JobFailed, store.JobCancelled:
				f.States = append(f.States, js)
			default:
				problem.Parameter(w, "state", "want pending, running, completed, failed or cancelled (comma-separated)")
				return
			}
		}
	}
	var after *cursor
	if f.Limit, after, ok = pageParams(w, q); !ok {
		return
	}
	if after != nil {
		f.After = &store.JobCursor{Created: after.At, ID: after.ID}
	}
	want := f.Limit
	f.Limit++
	js, err := s.st.JobList(r.Context(), f)
	if err != nil {
		s.failed(w, r, "job list", err)
		return
	}
	out := struct {
		Jobs       []Job  `json:"jobs"`
		NextCursor string `json:"next_cursor,omitempty"`
	}{Jobs: make([]Job, 0, len(js))}
	if len(js) > want {
		js = js[:want]
		out.NextCursor = nextPage(w, r, q, cursor{js[want-1].CreatedAt, js[want-1].ID})
	}
	for _, j := range js {
		out.Jobs = append(out.Jobs, jobOut(j))
	}
	writeJSON(w, http.StatusOK, out)
}

// onJob serves a route on the caller's job {id}; it takes no query
// parameters.
func (s *Server) onJob(scope string, h func(w http.ResponseWriter, r *http.Request, j *store.Job)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.caller(w, r, scope)
		if !ok {
			return
		}
		id := r.PathValue("id")
		if !jobs.ValidID(id) {
			problem.Parameter(w, "id", "not a job id (16 characters a-z, 2-7)")
			return
		}
		j, err := s.st.Job(r.Context(), id)
		if err == nil && j.OwnerID != u.ID {
			err = store.ErrNotFound
		}
		if errors.Is(err, store.ErrNotFound) {
			problem.Write(w, problem.NotFound, "no job "+id, nil)
			return
		}
		if err != nil {
			s.failed(w, r, "job lookup", err)
			return
		}
		h(w, r, j)
	}
}

func (s *Server) getJob(w http.ResponseWriter, _ *http.Request, j *store.Job) {
	writeJSON(w, http.StatusOK, jobOut(j))
}

// cancelJob serves POST /api/v1/jobs/{id}/cancel: a pending job is
// cancelled at once (200), a running one asked to stop (202); 409 when
// it has ended.
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request, j *store.Job) {
	j, err := s.cfg.Jobs.Cancel(r.Context(), j)
	if errors.Is(err, store.ErrJobState) {
		if cur, lerr := s.st.Job(r.Context(), r.PathValue("id")); lerr == nil {
			problem.Write(w, problem.JobEnded, "the job has "+string(cur.State), map[string]any{"state": cur.State})
			return
		}
	}
	if err != nil {
		s.failed(w, r, "job cancel", err)
		return
	}
	status := http.StatusAccepted
	if j.State.Ended() {
		status = http.StatusOK
	}
	writeJSON(w, status, jobOut(j))
}
