// Package influx is the cloud's InfluxDB store of positions: writes of
// line-protocol batches through the v2 write API (InfluxDB 2.x and 3.x, and
// 1.8+ through its v2 compatibility API), reachability checks, the
// classification of write errors into retryable and permanent, and reading
// and deleting a device's positions over InfluxQL (query.go).
package influx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	influxdb2 "github.com/influxdata/influxdb-client-go/v2"
	"github.com/influxdata/influxdb-client-go/v2/api"
	ihttp "github.com/influxdata/influxdb-client-go/v2/api/http"
)

// Config says where positions are stored.
type Config struct {
	URL    string // base URL, e.g. http://127.0.0.1:8086
	Org    string // organisation (ignored by InfluxDB 1.x)
	Bucket string // bucket; on InfluxDB 1.x "database" or "database/retention-policy"
	Token  string // API token; on 1.x "user:password" or empty when auth is off
	// Timeout bounds one HTTP request; default 30 s.
	Timeout time.Duration
}

// Client writes to and queries one bucket. It is safe for concurrent use.
type Client struct {
	cfg    Config
	client influxdb2.Client
	write  api.WriteAPIBlocking
	hc     *http.Client  // InfluxQL queries, deletes and pings (query.go)
	ver    serverVersion // the server's major version, asked once (query.go)
}

// New returns a Client for cfg. It does no I/O.
func New(cfg Config) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("influx: no URL (--influx-url)")
	}
	if cfg.Bucket == "" {
		return nil, errors.New("influx: no bucket (--influx-bucket)")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	opts := influxdb2.DefaultOptions().
		SetHTTPRequestTimeout(uint(cfg.Timeout / time.Second)).
		SetPrecision(time.Nanosecond).
		SetUseGZip(false)
	c := influxdb2.NewClientWithOptions(cfg.URL, cfg.Token, opts)
	return &Client{cfg: cfg, client: c, write: c.WriteAPIBlocking(cfg.Org, cfg.Bucket), hc: newHTTPClient(cfg.Timeout)}, nil
}

// Write stores a batch of newline-separated line-protocol lines with
// nanosecond timestamps. Its error is a *WriteError.
func (c *Client) Write(ctx context.Context, lines []byte) error {
	if len(lines) == 0 {
		return nil
	}
	if err := c.write.WriteRecord(ctx, string(lines)); err != nil {
		return classify(err)
	}
	return nil
}

// Ping checks that InfluxDB answers.
func (c *Client) Ping(ctx context.Context) error {
	ok, err := c.client.Ping(ctx)
	if err != nil {
		return fmt.Errorf("influx: ping %s: %w", c.cfg.URL, err)
	}
	if !ok {
		return fmt.Errorf("influx: ping %s: not ready", c.cfg.URL)
	}
	return nil
}

// Query runs a Flux query and returns the client's result reader.
func (c *Client) Query(ctx context.Context, flux string) (*api.QueryTableResult, error) {
	res, err := c.client.QueryAPI(c.cfg.Org).Query(ctx, flux)
	if err != nil {
		return nil, fmt.Errorf("influx: query: %w", err)
	}
	return res, nil
}

// Bucket returns the configured bucket, for queries.
func (c *Client) Bucket() string { return c.cfg.Bucket }

// Close releases the client's idle connections.
func (c *Client) Close() {
	c.client.Close()
	c.hc.CloseIdleConnections()
}

// WriteError is a failed write, classified.
type WriteError struct {
	Status    int // HTTP status, 0 when no answer came
	Err       error
	permanent bool
}

// Permanent reports whether the same data will be refused again, so that
// retrying it as it is cannot help.
func (e *WriteError) Permanent() bool { return e.permanent }

func (e *WriteError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("influx write: HTTP %d: %v", e.Status, e.Err)
	}
	return fmt.Sprintf("influx write: %v", e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// classify decides whether a write error is worth retrying: network errors,
// timeouts, 5xx, 408 and 429 are; other 4xx (bad data, schema conflicts,
// points outside retention) are not.
func classify(err error) *WriteError {
	var he *ihttp.Error
	if !errors.As(err, &he) || he.StatusCode == 0 {
		return &WriteError{Err: err}
	}
	permanent := he.StatusCode >= 400 && he.StatusCode < 500 &&
		he.StatusCode != http.StatusRequestTimeout && he.StatusCode != http.StatusTooManyRequests &&
		he.StatusCode != http.StatusUnauthorized && he.StatusCode != http.StatusForbidden && he.StatusCode != http.StatusNotFound
	return &WriteError{Status: he.StatusCode, permanent: permanent, Err: err}
}
