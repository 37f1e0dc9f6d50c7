package influx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"trackgate/internal/position"
)

// Reading and deleting a device's stored positions. Queries are InfluxQL over
// GET /query, which InfluxDB 1.x speaks natively, 2.4+ through its automatic
// (virtual) DBRP mapping of a bucket to db=<bucket>, and 3.x too. The answer
// is streamed (chunked=true) and parsed as it arrives by chunkReader, so that
// a track of any length is read in constant memory.

const (
	// queryChunkSize is the number of rows InfluxDB puts in one chunk of a
	// streamed answer.
	queryChunkSize = 10000

	// minNanoTime and maxNanoTime are the earliest and latest timestamps
	// InfluxDB stores (models.MinNanoTime and models.MaxNanoTime).
	minNanoTime = math.MinInt64 + 2
	maxNanoTime = math.MaxInt64 - 1

	// errorBodyLimit bounds what is read of an error answer.
	errorBodyLimit = 64 << 10
)

var (
	minTime = time.Unix(0, minNanoTime)
	maxTime = time.Unix(0, maxNanoTime)
)

// ErrMalformed is wrapped by the error of an answer that is not the JSON
// InfluxDB sends for an InfluxQL query.
var ErrMalformed = errors.New("malformed InfluxDB answer")

// errNoDevice is returned for an empty device id.
var errNoDevice = errors.New("influx: empty device id")

// ServerError is an error InfluxDB answered: an HTTP error status, or an
// error inside an answer of status 200 (InfluxQL reports "database not found"
// and most statement errors that way).
type ServerError struct {
	Status int    // HTTP status of the answer
	Msg    string // InfluxDB's message
}

func (e *ServerError) Error() string {
	if e.Status == http.StatusOK || e.Status == 0 {
		return "InfluxDB: " + e.Msg
	}
	return fmt.Sprintf("InfluxDB: HTTP %d %s: %s", e.Status, http.StatusText(e.Status), e.Msg)
}

// NotFound reports whether the database, retention policy or bucket does not
// exist (a configuration error rather than a missing device: a device without
// positions is an empty answer).
func (e *ServerError) NotFound() bool {
	return e.Status == http.StatusNotFound || strings.Contains(e.Msg, "not found")
}

// newHTTPClient returns the client of queries, deletes and pings. It has no
// whole-request timeout, since streaming a long track may take longer than
// any fixed bound: a request is bounded by its context, by timeout for
// dialling and for the answer's header.
func newHTTPClient(timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = timeout
	// As for writes (SetUseGZip(false)): compressing a 100,000-point answer
	// costs influxd more time (0.45 s instead of 0.36 s on loopback) than it
	// saves on a fast network.
	t.DisableCompression = true
	return &http.Client{Transport: t}
}

// Points calls fn with each stored position of device whose time t has
// from ≤ t ≤ to, in time order, streaming the InfluxQL answer in chunks
// (GET /query with chunked=true, chunk_size 10000, epoch=ns), so memory stays
// constant whatever the count. fn's *position.Position is reused between calls
// (fn must copy what it keeps); an error from fn stops the query and is
// returned as it is. Fields absent in a row are absent in the Position's Set.
// ctx cancellation stops it promptly (the HTTP body is closed).
func (c *Client) Points(ctx context.Context, device string, from, to time.Time, fn func(*position.Position) error) error {
	_, err := c.points(ctx, device, from, to, fn)
	return err
}

// points is Points, also returning the number of chunks read.
func (c *Client) points(ctx context.Context, device string, from, to time.Time, fn func(*position.Position) error) (int, error) {
	if device == "" {
		return 0, errNoDevice
	}
	if fn == nil {
		return 0, errors.New("influx: Points without a function")
	}
	lo, hi, ok := nanoRange(from, to)
	if !ok {
		return 0, nil
	}
	q := "SELECT *::field FROM " + influxQLIdent(position.Measurement) +
		" WHERE " + influxQLIdent("device") + " = " + influxQLString(device) +
		" AND time >= " + strconv.FormatInt(lo, 10) + " AND time <= " + strconv.FormatInt(hi, 10) +
		" ORDER BY time ASC"
	var fnErr error
	chunks, err := c.query(ctx, http.MethodGet, q, true, func(p *position.Position) error {
		fnErr = fn(p)
		return fnErr
	})
	if err != nil {
		if fnErr != nil && err == fnErr {
			return chunks, fnErr
		}
		return chunks, fmt.Errorf("influx: points of device %q: %w", device, err)
	}
	return chunks, nil
}

// Last returns the newest stored position of device, or nil (and no error)
// when it has none.
func (c *Client) Last(ctx context.Context, device string) (*position.Position, error) {
	if device == "" {
		return nil, errNoDevice
	}
	q := "SELECT *::field FROM " + influxQLIdent(position.Measurement) +
		" WHERE " + influxQLIdent("device") + " = " + influxQLString(device) +
		" ORDER BY time DESC LIMIT 1"
	var last *position.Position
	_, err := c.query(ctx, http.MethodGet, q, false, func(p *position.Position) error {
		if last == nil {
			cp := *p
			last = &cp
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("influx: last position of device %q: %w", device, err)
	}
	return last, nil
}

// DeletePoints deletes the stored positions of device with from ≤ time ≤ to.
//
// On InfluxDB 1.x it runs InfluxQL DELETE FROM position WHERE device='…' AND
// time >= … AND time <= …, which deletes from every retention policy of the
// database, not only the configured one. On 2.x and 3.x it uses the v2 delete
// API (POST /api/v2/delete, predicate _measurement="position" AND
// device="…"): its stop bound is inclusive (the storage engine deletes
// [start, stop]), so stop is to itself. InfluxDB 3 Core and Enterprise have
// no such API; the error says so.
func (c *Client) DeletePoints(ctx context.Context, device string, from, to time.Time) error {
	if device == "" {
		return errNoDevice
	}
	lo, hi, ok := nanoRange(from, to)
	if !ok {
		return nil
	}
	major, err := c.serverMajor(ctx)
	if err != nil {
		return fmt.Errorf("influx: delete points of device %q: %w", device, err)
	}
	if major == 1 {
		q := "DELETE FROM " + influxQLIdent(position.Measurement) +
			" WHERE " + influxQLIdent("device") + " = " + influxQLString(device) +
			" AND time >= " + strconv.FormatInt(lo, 10) + " AND time <= " + strconv.FormatInt(hi, 10)
		_, err = c.query(ctx, http.MethodPost, q, false, func(*position.Position) error { return nil })
	} else {
		err = c.deleteV2(ctx, major, device, lo, hi)
	}
	if err != nil {
		return fmt.Errorf("influx: delete points of device %q: %w", device, err)
	}
	return nil
}

// deleteV2 deletes through the v2 delete API.
func (c *Client) deleteV2(ctx context.Context, major int, device string, lo, hi int64) error {
	body, err := json.Marshal(struct {
		Start     string `json:"start"`
		Stop      string `json:"stop"`
		Predicate string `json:"predicate"`
	}{
		Start:     time.Unix(0, lo).UTC().Format(time.RFC3339Nano),
		Stop:      time.Unix(0, hi).UTC().Format(time.RFC3339Nano),
		Predicate: `_measurement=` + predicateString(position.Measurement) + ` AND device=` + predicateString(device),
	})
	if err != nil {
		return err
	}
	u := strings.TrimSuffix(c.cfg.URL, "/") + "/api/v2/delete?" +
		url.Values{"org": {c.cfg.Org}, "bucket": {c.cfg.Bucket}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	c.authorize(req, major)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, io.LimitReader(resp.Body, errorBodyLimit))
		return nil
	}
	serr := readServerError(resp)
	if major >= 3 && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
		return fmt.Errorf("InfluxDB %d.x answered HTTP %d to POST /api/v2/delete: this server cannot delete points by time range: %w",
			major, resp.StatusCode, serr)
	}
	return serr
}

// query runs one InfluxQL statement and calls fn with each row of its answer,
// as a position. It returns the number of chunks read; fn's error as it is.
func (c *Client) query(ctx context.Context, method, q string, chunked bool, fn func(*position.Position) error) (int, error) {
	major := 0
	if c.cfg.Token != "" {
		// Only the credentials depend on the version.
		var err error
		if major, err = c.serverMajor(ctx); err != nil {
			return 0, err
		}
	}
	db, rp, _ := strings.Cut(c.cfg.Bucket, "/")
	params := url.Values{"db": {db}, "epoch": {"ns"}}
	if rp != "" && method == http.MethodGet {
		params.Set("rp", rp)
	}
	if chunked {
		params.Set("chunked", "true")
		params.Set("chunk_size", strconv.Itoa(queryChunkSize))
	}
	u := strings.TrimSuffix(c.cfg.URL, "/") + "/query"
	var body io.Reader
	if method == http.MethodGet {
		params.Set("q", q)
	} else {
		body = strings.NewReader(url.Values{"q": {q}}.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u+"?"+params.Encode(), body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	c.authorize(req, major)
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) { // without the URL, which holds the whole query
			err = ue.Err
		}
		return 0, fmt.Errorf("%s /query: %w", method, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, readServerError(resp)
	}
	d := newChunkReader(resp.Body)
	d.ctx = ctx
	err = d.run(fn)
	if err != nil && ctx.Err() != nil {
		return d.chunks, ctx.Err()
	}
	return d.chunks, err
}

// authorize adds the credentials to req: on 1.x a "user:password" token as
// HTTP Basic, otherwise the token as "Authorization: Token …". major 0 (not
// known) is only used without a token.
func (c *Client) authorize(req *http.Request, major int) {
	tok := c.cfg.Token
	if tok == "" {
		return
	}
	if major == 1 {
		if u, p, ok := strings.Cut(tok, ":"); ok {
			req.SetBasicAuth(u, p)
			return
		}
	}
	req.Header.Set("Authorization", "Token "+tok)
}

// readServerError turns an HTTP error answer into a *ServerError with
// InfluxDB's message: {"error":…} from 1.x, {"code":…,"message":…} from 2.x,
// else the X-Influxdb-Error header or the text of the body.
func readServerError(resp *http.Response) *ServerError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	var j struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	msg := ""
	if json.Unmarshal(body, &j) == nil {
		msg = j.Error
		if msg == "" {
			msg = j.Message
		}
	}
	if msg == "" {
		msg = resp.Header.Get("X-Influxdb-Error")
	}
	if msg == "" {
		msg = strings.TrimSpace(string(body))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
	}
	if msg == "" {
		msg = "(no message)"
	}
	return &ServerError{Status: resp.StatusCode, Msg: msg}
}

// nanoRange returns the bounds of from ≤ t ≤ to in nanoseconds, clamped to
// what InfluxDB stores; ok is false when no stored time can be in the range.
func nanoRange(from, to time.Time) (lo, hi int64, ok bool) {
	if to.Before(from) || from.After(maxTime) || to.Before(minTime) {
		return 0, 0, false
	}
	lo, hi = minNanoTime, maxNanoTime
	if from.After(minTime) {
		lo = from.UnixNano()
	}
	if to.Before(maxTime) {
		hi = to.UnixNano()
	}
	return lo, hi, true
}

// influxQLString quotes s as an InfluxQL string literal.
func influxQLString(s string) string {
	return quote(s, '\'')
}

// influxQLIdent quotes s as an InfluxQL identifier.
func influxQLIdent(s string) string {
	return quote(s, '"')
}

// predicateString quotes s as a string of the v2 delete predicate, which is
// read by the InfluxQL scanner as a double-quoted identifier.
func predicateString(s string) string {
	return quote(s, '"')
}

// quote puts s between q, escaping q, backslash and newline as the InfluxQL
// scanner reads them (it refuses a raw newline in a string).
func quote(s string, q byte) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte(q)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case q, '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(q)
	return b.String()
}

// serverVersion caches the server's major version.
type serverVersion struct {
	mu    sync.Mutex
	major int // 0 until known
}

// serverMajor returns the major version of the InfluxDB server (1, 2 or 3),
// asking the server the first time; a failure is not cached.
func (c *Client) serverMajor(ctx context.Context) (int, error) {
	c.ver.mu.Lock()
	defer c.ver.mu.Unlock()
	if c.ver.major != 0 {
		return c.ver.major, nil
	}
	major, err := c.detectVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("InfluxDB version: %w", err)
	}
	c.ver.major = major
	return major, nil
}

// detectVersion reads the X-Influxdb-Version header of GET /ping ("1.8.10",
// "v2.7.4", "3.0.1"). influxd built from source says "unknown"; then GET
// /api/v2/setup, which 2.x answers and 1.x does not know, tells them apart.
func (c *Client) detectVersion(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	base := strings.TrimSuffix(c.cfg.URL, "/")
	status, hdr, err := c.probe(ctx, base+"/ping")
	if err != nil {
		return 0, err
	}
	v := hdr.Get("X-Influxdb-Version")
	if major, ok := parseMajor(v); ok {
		return major, nil
	}
	if status/100 != 2 {
		return 0, fmt.Errorf("GET /ping: HTTP %d, X-Influxdb-Version %q", status, v)
	}
	status, _, err = c.probe(ctx, base+"/api/v2/setup")
	switch {
	case err != nil:
		return 0, err
	case status == http.StatusNotFound:
		return 1, nil
	case status/100 == 2 || status == http.StatusUnauthorized || status == http.StatusForbidden:
		return 2, nil
	}
	return 0, fmt.Errorf("X-Influxdb-Version %q, and GET /api/v2/setup answered HTTP %d", v, status)
}

// probe sends GET u and returns the status and header of the answer.
func (c *Client) probe(ctx context.Context, u string) (int, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	if c.cfg.Token != "" && !strings.Contains(c.cfg.Token, ":") {
		req.Header.Set("Authorization", "Token "+c.cfg.Token) // a 3.x /ping may want it
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, errorBodyLimit))
	resp.Body.Close()
	return resp.StatusCode, resp.Header, nil
}

// parseMajor reads the major version from an X-Influxdb-Version value.
func parseMajor(v string) (int, bool) {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(strings.TrimPrefix(v, "v"), "V")
	n := 0
	for n < len(v) && n < 4 && v[n] >= '0' && v[n] <= '9' {
		n++
	}
	if n == 0 || (n < len(v) && v[n] != '.' && v[n] != '-' && v[n] != '+') {
		return 0, false
	}
	major, _ := strconv.Atoi(v[:n])
	switch {
	case major == 1 || major == 2:
		return major, true
	case major >= 3:
		return 3, true
	}
	return 0, false
}

// The chunk parser.
//
// chunkReader parses the JSON answer of an InfluxQL query as it streams in: a
// sequence of objects {"results":[{"statement_id":0,"series":[{"name":…,
// "columns":[…],"values":[[…],…],"partial":true}],"partial":true}]}, one per
// chunk, or {"error":…}, or results with an "error" member. It is a
// hand-written scanner over a fixed buffer: a row is decoded into one reused
// Position without allocating, numbers exactly (timestamps in nanoseconds
// exceed 2^53), columns by name. Anything else than well-formed JSON of that
// shape is an ErrMalformed error; unknown members are skipped.

const (
	chunkBufSize = 64 << 10
	maxString    = 1 << 20 // longest string accepted
	maxNumber    = 256     // longest number accepted
	maxDepth     = 64      // deepest nesting of a skipped value
)

// column is what a column of a series holds: colIgnore, colTime, colFix,
// colSats, or from colFloat on, the Position float field col-colFloat.
type column uint8

const (
	colIgnore column = iota // not a Position field, such as the device tag
	colTime
	colFix
	colSats
	colFloat
)

// name is the column's name, for errors.
func (c column) name() string {
	switch c {
	case colIgnore:
		return "?"
	case colTime:
		return "time"
	case colFix:
		return "fix"
	case colSats:
		return "sats"
	}
	return position.FloatField(c - colFloat).Name()
}

// columnOf returns the column named name.
func columnOf(name []byte) column {
	switch string(name) {
	case "time":
		return colTime
	case "fix":
		return colFix
	case "sats":
		return colSats
	}
	if f, ok := position.FloatFieldNamed(name); ok {
		return colFloat + column(f)
	}
	return colIgnore
}

type chunkReader struct {
	r        io.Reader
	ctx      context.Context // when done, stops at the next read, even if data is waiting
	buf      []byte
	pos, end int   // buf[pos:end] is read but not yet parsed
	base     int64 // offset in the answer of buf[0]
	rerr     error // the reader's error, once it returned one (io.EOF at the end)
	scratch  []byte
	key      []byte
	n        number // the last number read
	cols     []column
	p        position.Position
	chunks   int // objects (chunks) read
	rows     int // rows read
}

func newChunkReader(r io.Reader) *chunkReader {
	return &chunkReader{r: r, buf: make([]byte, chunkBufSize)}
}

// run parses the whole answer, calling fn with each row. It returns fn's
// error as it is.
func (d *chunkReader) run(fn func(*position.Position) error) error {
	for {
		if !d.skipSpace() {
			if d.rerr != io.EOF {
				return d.eof()
			}
			if d.chunks == 0 {
				return d.fail("empty answer")
			}
			return nil
		}
		if d.buf[d.pos] != '{' {
			return d.fail(fmt.Sprintf("want an object, found %s", quoteByte(d.buf[d.pos])))
		}
		d.chunks++
		if err := d.envelope("results", 1, func() error { return d.result(fn) }); err != nil {
			return err
		}
	}
}

// result parses one element of "results".
func (d *chunkReader) result(fn func(*position.Position) error) error {
	return d.envelope("series", 2, func() error { return d.series(fn) })
}

// envelope parses an object at nesting depth whose member list (at most
// once) is an array of elements parsed by elem, whose "error" member is
// InfluxDB's error, and whose other members are skipped.
func (d *chunkReader) envelope(list string, depth int, elem func() error) error {
	seen := false
	return d.object(func(key []byte) error {
		switch string(key) {
		case list:
			if seen {
				return d.fail(list + " twice")
			}
			seen = true
			return d.array(elem)
		case "error":
			return d.errorMember()
		}
		return d.skip(depth)
	})
}

// errorMember parses the value of an "error" member: a string is InfluxDB's
// error, null none.
func (d *chunkReader) errorMember() error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c == 'n' {
		return d.literal("null")
	}
	if c != '"' {
		return d.fail("error is not a string")
	}
	msg, err := d.str()
	if err != nil {
		return err
	}
	return &ServerError{Status: http.StatusOK, Msg: string(msg)}
}

// series parses one element of "series".
func (d *chunkReader) series(fn func(*position.Position) error) error {
	d.cols = d.cols[:0]
	haveCols, haveValues := false, false
	return d.object(func(key []byte) error {
		switch string(key) {
		case "columns":
			if haveCols {
				return d.fail("columns twice")
			}
			haveCols = true
			d.cols = d.cols[:0]
			return d.array(func() error {
				c, err := d.peek()
				if err != nil {
					return err
				}
				if c != '"' {
					return d.fail("column name is not a string")
				}
				name, err := d.str()
				if err != nil {
					return err
				}
				d.cols = append(d.cols, columnOf(name))
				return nil
			})
		case "values":
			if !haveCols {
				return d.fail("values before columns")
			}
			if haveValues {
				return d.fail("values twice")
			}
			haveValues = true
			return d.values(fn)
		}
		return d.skip(3)
	})
}

// values parses the rows of a series, calling fn with each.
func (d *chunkReader) values(fn func(*position.Position) error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c == ']' {
		d.pos++
		return nil
	}
	for {
		if err := d.row(); err != nil {
			return err
		}
		d.rows++
		if err := fn(&d.p); err != nil {
			return err
		}
		if d.rows%256 == 0 && d.ctx != nil && d.ctx.Err() != nil {
			return d.ctx.Err() // without waiting for the end of the buffer
		}
		c, err := d.peek()
		if err != nil {
			return err
		}
		d.pos++
		switch c {
		case ',':
		case ']':
			return nil
		default:
			d.pos--
			return d.fail(fmt.Sprintf("want , or ] after a row, found %s", quoteByte(c)))
		}
	}
}

// row parses one row into d.p.
func (d *chunkReader) row() error {
	d.p = position.Position{}
	if err := d.expect('['); err != nil {
		return err
	}
	for i := 0; ; i++ {
		if i >= len(d.cols) {
			return d.fail(fmt.Sprintf("row has more values than the %d columns", len(d.cols)))
		}
		if err := d.cell(d.cols[i]); err != nil {
			return err
		}
		c, err := d.peek()
		if err != nil {
			return err
		}
		if c == ']' {
			d.pos++
			if i+1 != len(d.cols) {
				return d.fail(fmt.Sprintf("row has %d values for %d columns", i+1, len(d.cols)))
			}
			break
		}
		if c != ',' {
			return d.fail(fmt.Sprintf("want , or ] in a row, found %s", quoteByte(c)))
		}
		d.pos++
	}
	if !d.p.Has(position.FieldTime) {
		return d.fail("row without time")
	}
	return nil
}

// cell parses one value of a row into its column's field of d.p.
func (d *chunkReader) cell(col column) error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	if col == colIgnore {
		return d.skip(5)
	}
	if c == 'n' {
		if err := d.literal("null"); err != nil {
			return err
		}
		if col == colTime {
			return d.fail("null time")
		}
		return nil // absent
	}
	switch col {
	case colTime:
		if c == '"' { // RFC 3339, from a server that ignored epoch=ns
			s, err := d.str()
			if err != nil {
				return err
			}
			t, err := time.Parse(time.RFC3339Nano, string(s))
			if err != nil {
				return d.fail(fmt.Sprintf("time %q is not RFC 3339", s))
			}
			d.p.Time = t.UTC()
		} else {
			if err := d.number(c, col); err != nil {
				return err
			}
			ns, ok := d.n.int64()
			if !ok {
				return d.fail(fmt.Sprintf("time %s is not an integer of nanoseconds", d.n.text))
			}
			d.p.Time = time.Unix(0, ns).UTC()
		}
		d.p.Set |= position.FieldTime
	case colFix:
		if c != '"' {
			return d.fail("fix is not a string")
		}
		s, err := d.str()
		if err != nil {
			return err
		}
		d.p.Fix = position.InternFix(s)
		d.p.Set |= position.FieldFix
	case colSats:
		if err := d.number(c, col); err != nil {
			return err
		}
		sats, ok := d.n.int64()
		if !ok { // 12.0 or 1.2e1 will do
			f, fok := d.n.float64()
			if !fok || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
				return d.fail(fmt.Sprintf("sats %s is not an integer", d.n.text))
			}
			sats = int64(f)
		}
		d.p.Sats = int(sats)
		d.p.Set |= position.FieldSats
	default:
		if err := d.number(c, col); err != nil {
			return err
		}
		v, ok := d.n.float64()
		if !ok {
			return d.fail(fmt.Sprintf("%s %s is out of range", col.name(), d.n.text))
		}
		position.FloatField(col-colFloat).Set(&d.p, v)
	}
	return nil
}

// number reads the number of column col, whose first byte c was peeked.
func (d *chunkReader) number(c byte, col column) error {
	if c != '-' && (c < '0' || c > '9') {
		return d.fail(col.name() + " is not a number")
	}
	return d.num()
}

// object parses an object, calling member with each key; member must parse
// the member's value. The key is valid only until the value is read.
func (d *chunkReader) object(member func(key []byte) error) error {
	return d.sequence('{', '}', "an object", func() error {
		if c, err := d.peek(); err != nil {
			return err
		} else if c != '"' {
			return d.fail(fmt.Sprintf("want a key, found %s", quoteByte(c)))
		}
		k, err := d.str()
		if err != nil {
			return err
		}
		d.key = append(d.key[:0], k...)
		if err := d.expect(':'); err != nil {
			return err
		}
		return member(d.key)
	})
}

// array parses an array, calling elem to parse each element.
func (d *chunkReader) array(elem func() error) error {
	return d.sequence('[', ']', "an array", elem)
}

// sequence parses open, then items separated by commas, each parsed by
// item, then end; what names the construct in errors.
func (d *chunkReader) sequence(open, end byte, what string, item func() error) error {
	if err := d.expect(open); err != nil {
		return err
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c == end {
		d.pos++
		return nil
	}
	for {
		if err := item(); err != nil {
			return err
		}
		c, err := d.peek()
		if err != nil {
			return err
		}
		d.pos++
		switch c {
		case ',':
		case end:
			return nil
		default:
			d.pos--
			return d.fail(fmt.Sprintf("want , or %c in %s, found %s", end, what, quoteByte(c)))
		}
	}
}

// skip parses and discards any value.
func (d *chunkReader) skip(depth int) error {
	if depth > maxDepth {
		return d.fail("nested too deeply")
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch {
	case c == '{':
		return d.object(func([]byte) error { return d.skip(depth + 1) })
	case c == '[':
		return d.array(func() error { return d.skip(depth + 1) })
	case c == '"':
		_, err := d.str()
		return err
	case c == '-' || c >= '0' && c <= '9':
		return d.num()
	case c == 't':
		return d.literal("true")
	case c == 'f':
		return d.literal("false")
	case c == 'n':
		return d.literal("null")
	}
	return d.fail(fmt.Sprintf("want a value, found %s", quoteByte(c)))
}

// fill makes sure buf[pos:end] is not empty, reading more; false at the end
// of the answer or on a read error (in rerr).
func (d *chunkReader) fill() bool {
	if d.pos < d.end {
		return true
	}
	if d.rerr != nil {
		return false
	}
	if d.ctx != nil && d.ctx.Err() != nil {
		d.rerr = d.ctx.Err()
		return false
	}
	d.base += int64(d.end)
	d.pos, d.end = 0, 0
	for range 100 {
		n, err := d.r.Read(d.buf)
		d.end = n
		if err != nil {
			d.rerr = err
		}
		if n > 0 {
			return true
		}
		if err != nil {
			return false
		}
	}
	d.rerr = io.ErrNoProgress
	return false
}

// skipSpace skips white space; false at the end of the answer or on a read error.
func (d *chunkReader) skipSpace() bool {
	for {
		for d.pos < d.end {
			switch d.buf[d.pos] {
			case ' ', '\n', '\r', '\t':
				d.pos++
			default:
				return true
			}
		}
		if !d.fill() {
			return false
		}
	}
}

// peek skips white space and returns the next byte without consuming it.
func (d *chunkReader) peek() (byte, error) {
	if !d.skipSpace() {
		return 0, d.eof()
	}
	return d.buf[d.pos], nil
}

// expect consumes c, after white space.
func (d *chunkReader) expect(c byte) error {
	b, err := d.peek()
	if err != nil {
		return err
	}
	if b != c {
		return d.fail(fmt.Sprintf("want %s, found %s", quoteByte(c), quoteByte(b)))
	}
	d.pos++
	return nil
}

// literal consumes word (true, false, null), whose first byte was peeked.
func (d *chunkReader) literal(word string) error {
	if d.end-d.pos >= len(word) {
		if string(d.buf[d.pos:d.pos+len(word)]) != word {
			return d.fail("want " + word)
		}
		d.pos += len(word)
		return nil
	}
	at := d.base + int64(d.pos)
	for i := 0; i < len(word); i++ {
		if !d.fill() {
			return d.eof()
		}
		if d.buf[d.pos] != word[i] {
			return d.failAt(at, "want "+word)
		}
		d.pos++
	}
	return nil
}

// str consumes a string, whose opening quote was peeked, and returns its
// unescaped contents, valid until the next read.
func (d *chunkReader) str() ([]byte, error) {
	d.pos++ // the opening quote
	for i := d.pos; i < d.end; i++ {
		c := d.buf[i]
		if c == '"' {
			s := d.buf[d.pos:i]
			d.pos = i + 1
			return s, nil
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	// Escapes, or the string goes on beyond the buffer.
	d.scratch = d.scratch[:0]
	high := rune(-1) // a pending high surrogate
	for {
		if !d.fill() {
			return nil, d.eof()
		}
		c := d.buf[d.pos]
		if c == '"' {
			d.pos++
			if high >= 0 {
				d.scratch = utf8.AppendRune(d.scratch, utf8.RuneError)
			}
			return d.scratch, nil
		}
		if c < 0x20 {
			return nil, d.fail("control character in a string")
		}
		if len(d.scratch) > maxString {
			return nil, d.fail("string too long")
		}
		d.pos++
		if c != '\\' {
			if high >= 0 {
				d.scratch = utf8.AppendRune(d.scratch, utf8.RuneError)
				high = -1
			}
			d.scratch = append(d.scratch, c)
			continue
		}
		if !d.fill() {
			return nil, d.eof()
		}
		e := d.buf[d.pos]
		d.pos++
		if e != 'u' && high >= 0 {
			d.scratch = utf8.AppendRune(d.scratch, utf8.RuneError)
			high = -1
		}
		switch e {
		case '"', '\\', '/':
			d.scratch = append(d.scratch, e)
		case 'b':
			d.scratch = append(d.scratch, '\b')
		case 'f':
			d.scratch = append(d.scratch, '\f')
		case 'n':
			d.scratch = append(d.scratch, '\n')
		case 'r':
			d.scratch = append(d.scratch, '\r')
		case 't':
			d.scratch = append(d.scratch, '\t')
		case 'u':
			var r rune
			for range 4 {
				if !d.fill() {
					return nil, d.eof()
				}
				h := d.buf[d.pos]
				switch {
				case h >= '0' && h <= '9':
					r = r<<4 | rune(h-'0')
				case h >= 'a' && h <= 'f':
					r = r<<4 | rune(h-'a'+10)
				case h >= 'A' && h <= 'F':
					r = r<<4 | rune(h-'A'+10)
				default:
					return nil, d.fail("bad \\u escape in a string")
				}
				d.pos++
			}
			switch {
			case high >= 0 && r >= 0xDC00 && r < 0xE000:
				d.scratch = utf8.AppendRune(d.scratch, utf16.DecodeRune(high, r))
				high = -1
				continue
			case high >= 0:
				d.scratch = utf8.AppendRune(d.scratch, utf8.RuneError)
				high = -1
			}
			if r >= 0xD800 && r < 0xDC00 {
				high = r
				continue
			}
			d.scratch = utf8.AppendRune(d.scratch, r) // a lone low surrogate becomes U+FFFD
		default:
			d.pos--
			return nil, d.fail(fmt.Sprintf("bad escape \\%s in a string", quoteByte(e)))
		}
	}
}

// num consumes a number, whose first byte was peeked, into d.n. Its text is
// valid until the next read.
func (d *chunkReader) num() error {
	at := d.base + int64(d.pos)
	b := d.buf[d.pos:d.end]
	end, ok := parseNumber(&d.n, b)
	run := end // the number is every byte that may be part of one
	for run < len(b) && isNumByte(b[run]) {
		run++
	}
	if run < len(b) { // it ends within the buffer
		d.pos += run
		b = b[:run]
	} else { // it may go on beyond the buffer
		d.scratch = append(d.scratch[:0], b...)
		d.pos = d.end
		for d.fill() && isNumByte(d.buf[d.pos]) {
			if len(d.scratch) > maxNumber {
				break
			}
			d.scratch = append(d.scratch, d.buf[d.pos])
			d.pos++
		}
		if d.rerr != nil && d.rerr != io.EOF {
			return d.eof()
		}
		b = d.scratch
		end, ok = parseNumber(&d.n, b)
	}
	d.n.text = b
	if len(b) > maxNumber {
		return d.failAt(at, "number too long")
	}
	if !ok || end != len(b) {
		return d.failAt(at, fmt.Sprintf("bad number %q", b))
	}
	return nil
}

func isNumByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// number is a JSON number: its text and, when it has at most 19 significant
// digits, mant and exp such that its value is ±mant × 10^exp.
type number struct {
	text   []byte
	mant   uint64
	exp    int
	neg    bool
	simple bool // mant holds every digit
	isInt  bool // no fraction, no exponent
}

// pow10 are the powers of ten a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float64 returns n's value, correctly rounded; false when out of range.
func (n *number) float64() (float64, bool) {
	if n.simple && n.mant < 1<<53 && n.exp >= -22 && n.exp <= 22 {
		// Both operands are exact, so the one rounding is the right one
		// (Clinger's fast path, which strconv takes too).
		f := float64(n.mant)
		if n.exp < 0 {
			f /= pow10[-n.exp]
		} else {
			f *= pow10[n.exp]
		}
		if n.neg {
			f = -f
		}
		return f, true
	}
	f, err := strconv.ParseFloat(string(n.text), 64)
	return f, err == nil
}

// int64 returns n's value if it is an integer without fraction or exponent
// that an int64 holds.
func (n *number) int64() (int64, bool) {
	switch {
	case !n.isInt || !n.simple:
		return 0, false
	case !n.neg && n.mant <= math.MaxInt64:
		return int64(n.mant), true
	case n.neg && n.mant <= 1<<63:
		return int64(-n.mant), true // -1<<63 wraps to itself
	}
	return 0, false
}

// parseNumber reads the JSON number at the start of b into n (but its text)
// and returns where it ends; false if b does not start with one.
func parseNumber(n *number, b []byte) (int, bool) {
	*n = number{simple: true, isInt: true}
	i := 0
	if i < len(b) && b[i] == '-' {
		n.neg = true
		i++
	}
	if i == len(b) {
		return i, false
	}
	digits := 0 // significant digits in n.mant
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				break
			}
			if digits == 19 {
				n.simple = false // ParseFloat reads the text
				continue
			}
			n.mant = n.mant*10 + uint64(c-'0')
			digits++
		}
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		n.isInt = false
		s := i
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				break
			}
			switch {
			case digits == 0 && c == '0':
				n.exp--
			case digits == 19:
				n.simple = false
			default:
				n.mant = n.mant*10 + uint64(c-'0')
				digits++
				n.exp--
			}
		}
		if i == s {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		n.isInt = false
		neg := false
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			neg = b[i] == '-'
			i++
		}
		s, e := i, 0
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if e < 100000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == s {
			return i, false
		}
		if neg {
			e = -e
		}
		n.exp += e
	}
	return i, true
}

// fail returns an ErrMalformed error at the current offset.
func (d *chunkReader) fail(what string) error {
	return d.failAt(d.base+int64(d.pos), what)
}

// failAt returns an ErrMalformed error at offset at.
func (d *chunkReader) failAt(at int64, what string) error {
	return fmt.Errorf("%w at byte %d: %s", ErrMalformed, at, what)
}

// eof returns the error of running out of input: the reader's error, or a
// truncated answer.
func (d *chunkReader) eof() error {
	if d.rerr != nil && d.rerr != io.EOF {
		return fmt.Errorf("read answer: %w", d.rerr)
	}
	return d.fail("unexpected end of answer")
}

// quoteByte shows c in an error message.
func quoteByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
