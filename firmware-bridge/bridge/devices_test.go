package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestResolverCache: a found device is cached for the TTL, an unknown
// identifier for negativeTTL, concurrent look-ups of one identifier make
// one request, and while the cloud fails a cached device is still used but
// an identifier never seen is ErrUnavailable.
func TestResolverCache(t *testing.T) {
	var lookups atomic.Int64
	var down atomic.Bool
	release := make(chan struct{})
	cloud := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/token":
			w.Write([]byte(`{"access_token":"tok","token_type":"Bearer","expires_in":900}`))
		case down.Load():
			http.Error(w, "down", http.StatusBadGateway)
		case r.URL.Path == "/api/v1/identifiers/359710041234567":
			lookups.Add(1)
			<-release
			w.Write([]byte(`{"identifier":"359710041234567","device":"van","owner":"ann","secret_sha256":"","speed_unit":""}`))
		default:
			lookups.Add(1)
			http.Error(w, `{"title":"Not found"}`, http.StatusNotFound)
		}
	}))
	defer cloud.Close()
	log := slog.New(slog.DiscardHandler)
	tk := newTokens(cloud.URL, "firmware-bridge", "secret", filepath.Join(t.TempDir(), "tokens.json"), log)
	r := newResolver(cloud.URL, time.Minute, tk, log)
	now := time.Now()
	r.now = func() time.Time { return now }
	ctx := context.Background()

	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if d, err := r.resolve(ctx, "359710041234567"); err != nil || d.ID != "van" || d.Owner != "ann" {
				t.Errorf("resolve = %+v, %v", d, err)
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // the callers join the one look-up
	close(release)
	wg.Wait()
	if n := lookups.Load(); n != 1 {
		t.Errorf("%d look-ups for 20 concurrent callers, want 1", n)
	}
	for _, step := range []struct {
		name    string
		advance time.Duration
		down    bool
		ident   string
		err     error
		lookups int64
	}{
		{"cached", 30 * time.Second, false, "359710041234567", nil, 1},
		{"unknown", 0, false, "350000000000001", ErrUnknown, 2},
		{"unknown, cached", 10 * time.Second, false, "350000000000001", ErrUnknown, 2},
		{"unknown, asked again", 6 * time.Second, false, "350000000000001", ErrUnknown, 3},
		{"expired while the cloud is down: the cached device", time.Minute, true, "359710041234567", nil, 3},
		{"never seen while the cloud is down", 0, true, "350000000000002", ErrUnavailable, 3},
	} {
		now = now.Add(step.advance)
		down.Store(step.down)
		d, err := r.resolve(ctx, step.ident)
		if !errors.Is(err, step.err) || (err == nil && d.ID != "van") {
			t.Errorf("%s: resolve = %+v, %v; want %v", step.name, d, err, step.err)
		}
		if n := lookups.Load(); n != step.lookups {
			t.Errorf("%s: %d look-ups, want %d", step.name, n, step.lookups)
		}
	}
}

func TestCheckSecret(t *testing.T) {
	sum := sha256.Sum256([]byte("s3cret"))
	d := &Device{ID: "van", SecretSHA256: hex.EncodeToString(sum[:])}
	for secret, want := range map[string]error{"s3cret": nil, "": ErrSecret, "S3cret": ErrSecret, "s3cret ": ErrSecret} {
		if err := d.CheckSecret(secret); !errors.Is(err, want) {
			t.Errorf("CheckSecret(%q) = %v, want %v", secret, err, want)
		}
	}
	if err := (&Device{ID: "open"}).CheckSecret("anything"); err != nil {
		t.Errorf("a device without a secret: %v", err)
	}
}
