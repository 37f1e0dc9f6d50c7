package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
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
