package influx

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"

	"trackgate/internal/testenv"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err       error
		permanent bool
	}{
		{&ihttp.Error{StatusCode: http.StatusBadRequest, Code: "invalid", Message: "partial write: field type conflict"}, true},
		{&ihttp.Error{StatusCode: http.StatusRequestEntityTooLarge}, true},
		{&ihttp.Error{StatusCode: http.StatusUnprocessableEntity}, true},
		{&ihttp.Error{StatusCode: http.StatusNotFound, Message: "database not found"}, false}, // fix the config, keep the data
		{&ihttp.Error{StatusCode: http.StatusUnauthorized}, false},
		{&ihttp.Error{StatusCode: http.StatusTooManyRequests}, false},
		{&ihttp.Error{StatusCode: http.StatusRequestTimeout}, false},
		{&ihttp.Error{StatusCode: http.StatusServiceUnavailable}, false},
		{&ihttp.Error{Err: errors.New("connection refused")}, false},
		{errors.New("dial tcp: connection refused"), false},
	} {
		if got := classify(tc.err).Permanent(); got != tc.permanent {
			t.Errorf("classify(%v).Permanent() = %v, want %v", tc.err, got, tc.permanent)
		}
	}
}

// TestWriteAgainstInfluxDB writes to a real influxd: good lines are stored,
// a field type conflict is a permanent error, an unreachable server is not.
func TestWriteAgainstInfluxDB(t *testing.T) {
	inf := testenv.StartInflux(t)
	c, err := New(Config{URL: inf.URL, Bucket: inf.Database + "/autogen"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, []byte("position,device=a lat=1,lon=2,sats=5i 1700000000000000000\n")); err != nil {
		t.Fatal(err)
	}
	err = c.Write(ctx, []byte(`position,device=b lat=1,lon=2,sats="x" 1700000001000000000`+"\n"))
	var we *WriteError
	if !errors.As(err, &we) || !we.Permanent() || we.Status != http.StatusBadRequest {
		t.Fatalf("field type conflict: err = %v, want a permanent 400", err)
	}
	inf.Kill()
	if err := c.Write(ctx, []byte("position,device=a lat=1,lon=2 1700000002000000000\n")); !errors.As(err, &we) || we.Permanent() {
		t.Fatalf("InfluxDB down: err = %v, want a transient error", err)
	}
	if err := c.Ping(ctx); err == nil || !strings.Contains(err.Error(), "ping") {
		t.Fatalf("Ping with InfluxDB down = %v", err)
	}
}
