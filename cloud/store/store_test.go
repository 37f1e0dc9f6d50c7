package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenMigratesOnceAndKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	ctx := context.Background()
	s := open(t, dir)
	if err := s.CreateUser(ctx, &User{Name: "ann", PasswordHash: "h"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir)
	if u, err := s.UserByName(ctx, "ann"); err != nil || u.PasswordHash != "h" {
		t.Fatalf("after reopen: %+v, %v", u, err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "trackgate.db"): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %v", path, fi.Mode().Perm(), err, want)
		}
	}
}

func TestUsersAndTOTPReplayGuard(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	u := &User{Name: "ann", PasswordHash: "h"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(ctx, &User{Name: "ann"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if _, err := s.UserByName(ctx, "bob"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
	if err := s.SetTOTP(ctx, u.ID, "SECRET"); err != nil {
		t.Fatal(err)
	}
	// The same step, concurrently: exactly one wins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.UseTOTPStep(ctx, u.ID, 1000)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("step 1000 accepted %d times", wins)
	}
	for step, want := range map[int64]bool{999: false, 1000: false, 1001: true} {
		if ok, _ := s.UseTOTPStep(ctx, u.ID, step); ok != want {
			t.Errorf("step %d: %v, want %v", step, ok, want)
		}
	}
}

func TestDevicesAndRevocations(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	ann := &User{Name: "ann", PasswordHash: "h"}
	if err := s.CreateUser(ctx, ann); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"van", "boat"} {
		if err := s.CreateDevice(ctx, &Device{ID: id, OwnerID: ann.ID, TokenID: "jti-" + id}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateDevice(ctx, &Device{ID: "van", OwnerID: ann.ID}, nil); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate device: %v", err)
	}
	if err := s.CreateDevice(ctx, &Device{ID: "x", OwnerID: 999}, nil); err == nil {
		t.Fatal("device of an unknown user created")
	}
	ds, err := s.Devices(ctx, ann.ID)
	if err != nil || len(ds) != 2 || ds[0].ID != "boat" || ds[1].Owner != "ann" {
		t.Fatalf("devices %+v, %v", ds, err)
	}
	if err := s.DeleteDevice(ctx, "van", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDevice(ctx, "van", time.Now()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Revoke(ctx, "old", time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	revs, err := s.Revocations(ctx)
	if err != nil || len(revs) != 1 || revs[0].TokenID != "jti-van" {
		t.Fatalf("revocations %+v, %v (expired ones must go)", revs, err)
	}
	if ok, _ := s.Revoked(ctx, "jti-van"); !ok {
		t.Error("jti-van not revoked")
	}
	if ok, _ := s.Revoked(ctx, "jti-boat"); ok {
		t.Error("jti-boat revoked")
	}
}

func TestKeys(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Second)
	for i, id := range []string{"k2", "k1"} {
		if err := s.AddKey(ctx, &SigningKey{ID: id, SignsFrom: now.Add(time.Duration(-i) * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RetireKey(ctx, "k1", now); err != nil {
		t.Fatal(err)
	}
	keys, err := s.Keys(ctx)
	if err != nil || len(keys) != 2 || keys[0].ID != "k1" || keys[0].RetiredAt == nil || keys[1].RetiredAt != nil {
		t.Fatalf("keys %+v, %v", keys, err)
	}
	if err := s.DeleteKey(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if keys, _ := s.Keys(ctx); len(keys) != 1 {
		t.Fatalf("after delete: %+v", keys)
	}
}

// TestJobTransitions: a job moves pending → running → completed | failed |
// cancelled, or pending → cancelled, and no other way.
func TestJobTransitions(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	u := &User{Name: "ann", PasswordHash: "h"}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	n := 0
	newJob := func() string {
		n++
		j := &Job{ID: "job" + string(rune('a'+n)), OwnerID: u.ID, Kind: "import", Device: "van", Total: -1, CreatedAt: at.Add(time.Duration(n) * time.Second)}
		if err := s.CreateJob(ctx, j); err != nil {
			t.Fatal(err)
		}
		return j.ID
	}
	type step func(id string) (*Job, error)
	start := func(id string) (*Job, error) { return s.StartJob(ctx, id, at) }
	end := func(st JobState) step {
		return func(id string) (*Job, error) { return s.EndJob(ctx, id, st, at, "", "") }
	}
	progress := func(id string) (*Job, error) { return s.JobProgress(ctx, id, 50, 10, 5, 1) }
	for _, tc := range []struct {
		name  string
		steps []step
		want  JobState // the state after the last step; "" when the last step is refused
	}{
		{"pending → running", []step{start}, JobRunning},
		{"running → completed", []step{start, progress, end(JobCompleted)}, JobCompleted},
		{"running → failed", []step{start, end(JobFailed)}, JobFailed},
		{"running → cancelled", []step{start, end(JobCancelled)}, JobCancelled},
		{"pending → cancelled", []step{end(JobCancelled)}, JobCancelled},
		{"pending ↛ completed", []step{end(JobCompleted)}, ""},
		{"pending ↛ failed", []step{end(JobFailed)}, ""},
		{"pending has no progress", []step{progress}, ""},
		{"completed ↛ running", []step{start, end(JobCompleted), start}, ""},
		{"cancelled ↛ running", []step{end(JobCancelled), start}, ""},
		{"failed ↛ cancelled", []step{start, end(JobFailed), end(JobCancelled)}, ""},
		{"running ↛ pending", []step{start, end(JobPending)}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newJob()
			var j *Job
			var err error
			for i, st := range tc.steps {
				j, err = st(id)
				if i < len(tc.steps)-1 && err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			if tc.want == "" {
				if !errors.Is(err, ErrJobState) {
					t.Fatalf("want ErrJobState, got %+v, %v", j, err)
				}
				return
			}
			if err != nil || j.State != tc.want {
				t.Fatalf("got %+v, %v; want %s", j, err, tc.want)
			}
			if tc.want.Ended() && (j.EndedAt == nil || !j.EndedAt.Equal(at)) {
				t.Errorf("ended %v", j.EndedAt)
			}
		})
	}

	// A cancel request: pending ends at once, running is marked, ended is
	// refused.
	id := newJob()
	if j, err := s.RequestJobCancel(ctx, id, at); err != nil || j.State != JobCancelled {
		t.Fatalf("cancel pending: %+v %v", j, err)
	}
	id = newJob()
	start(id)
	if j, err := s.RequestJobCancel(ctx, id, at); err != nil || j.State != JobRunning || !j.CancelRequested {
		t.Fatalf("cancel running: %+v %v", j, err)
	}
	end(JobCancelled)(id)
	if _, err := s.RequestJobCancel(ctx, id, at); !errors.Is(err, ErrJobState) {
		t.Fatalf("cancel cancelled: %v", err)
	}
	if _, err := s.StartJob(ctx, "nope", at); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}

	// Listing: newest first, by state, by page; open jobs oldest first.
	all, err := s.JobList(ctx, JobFilter{OwnerID: u.ID, Limit: 100})
	if err != nil || len(all) != n {
		t.Fatalf("list: %d jobs, %v; want %d", len(all), err, n)
	}
	for i := 1; i < len(all); i++ {
		if !all[i].CreatedAt.Before(all[i-1].CreatedAt) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	page, err := s.JobList(ctx, JobFilter{OwnerID: u.ID, Limit: 3, After: &JobCursor{Created: all[2].CreatedAt, ID: all[2].ID}})
	if err != nil || len(page) != 3 || page[0].ID != all[3].ID {
		t.Fatalf("second page: %+v %v", page, err)
	}
	running, err := s.JobList(ctx, JobFilter{OwnerID: u.ID, Limit: 100, States: []JobState{JobRunning}})
	// Running: "pending → running" and "running ↛ pending".
	if err != nil || len(running) != 2 || running[0].State != JobRunning || running[1].State != JobRunning {
		t.Fatalf("running jobs: %d, %v", len(running), err)
	}
	open, err := s.OpenJobs(ctx)
	// Open: those two and the three left pending by refused steps, oldest
	// first.
	if err != nil || len(open) != 5 || open[0].ID != running[1].ID {
		t.Fatalf("open jobs: %d, %v", len(open), err)
	}
	for i := 1; i < len(open); i++ {
		if open[i].State.Ended() || !open[i].CreatedAt.After(open[i-1].CreatedAt) {
			t.Fatalf("open jobs: %d is %s, created %v", i, open[i].State, open[i].CreatedAt)
		}
	}
}

// TestDeviceIdentifiers: a device is found by its id or an identifier; an
// identifier belongs to one device and is never another device's id; the
// identifiers go with their device.
func TestDeviceIdentifiers(t *testing.T) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	ann := &User{Name: "ann", PasswordHash: "h"}
	if err := s.CreateUser(ctx, ann); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"van", "car"} {
		if err := s.CreateDevice(ctx, &Device{ID: id, OwnerID: ann.ID}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetDeviceIdentifiers(ctx, "van", []string{"359710041234567", "48241179", "van"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		id     string
		idents []string
		err    error
	}{
		{"another device's identifier", "car", []string{"48241179"}, ErrExists},
		{"another device's id", "car", []string{"van"}, ErrExists},
		{"its own", "car", []string{"car-imei"}, nil},
	} {
		if err := s.SetDeviceIdentifiers(ctx, tc.id, tc.idents); !errors.Is(err, tc.err) {
			t.Errorf("%s: SetDeviceIdentifiers = %v, want %v", tc.name, err, tc.err)
		}
	}
	if err := s.CreateDevice(ctx, &Device{ID: "48241179", OwnerID: ann.ID}, nil); !errors.Is(err, ErrExists) {
		t.Errorf("a device named after another's identifier: %v, want ErrExists", err)
	}
	for ident, want := range map[string]string{"van": "van", "359710041234567": "van", "48241179": "van", "car": "car", "car-imei": "car", "nope": ""} {
		d, err := s.DeviceByIdentifier(ctx, ident)
		switch {
		case want == "" && !errors.Is(err, ErrNotFound):
			t.Errorf("%s: %v, %v; want ErrNotFound", ident, d, err)
		case want != "" && (err != nil || d.ID != want || d.Owner != "ann"):
			t.Errorf("%s: %+v, %v; want device %s of ann", ident, d, err, want)
		}
	}
	d, err := s.Device(ctx, "van")
	if err != nil || !slices.Equal(d.Identifiers, []string{"359710041234567", "48241179"}) {
		t.Fatalf("van's identifiers = %v, %v", d.Identifiers, err)
	}
	if err := s.SetDeviceSecret(ctx, "van", "abc"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetDeviceSpeedUnit(ctx, "van", "mps"); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.DeviceByIdentifier(ctx, "48241179"); d.SecretHash != "abc" || d.SpeedUnit != "mps" {
		t.Errorf("secret %q unit %q", d.SecretHash, d.SpeedUnit)
	}
	if err := s.SetDeviceSecret(ctx, "gone", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("secret of a missing device: %v", err)
	}
	if err := s.DeleteDevice(ctx, "van", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeviceByIdentifier(ctx, "48241179"); !errors.Is(err, ErrNotFound) {
		t.Errorf("identifier of a deleted device: %v", err)
	}
}
