package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"trackgate/cloud/geo"
	"trackgate/internal/position"
)

// trackJSON is the JSON object of a Track: the JSON format's "track" and the
// GeoJSON Feature's properties.
type trackJSON struct {
	ID      string      `json:"id"`
	Name    string      `json:"name"`
	Device  string      `json:"device"`
	Started time.Time   `json:"started"`
	Stopped *time.Time  `json:"stopped"` // null while recording
	Summary geo.Summary `json:"summary"`
}

// marshalTrack returns the JSON object of t.
func marshalTrack(f Format, t *Track) ([]byte, error) {
	b, err := marshal(trackJSON{ID: t.ID, Name: t.Name, Device: t.Device, Started: t.Started.UTC(),
		Stopped: utc(t.Stopped), Summary: t.Summary})
	if err != nil {
		return nil, fmt.Errorf("export %s: encode track %q: %w", f, t.ID, err)
	}
	return b, nil
}

// marshal is json.Marshal without escaping <, > and &: the output is a
// download, never embedded in HTML.
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte{'\n'}), nil
}

// jsonEncoder writes {"track":{…},"points":[…]}, each point as the wire
// contract's position object.
type jsonEncoder struct{ sink }

func newJSON(s sink, t *Track) (*jsonEncoder, error) {
	track, err := marshalTrack(JSON, t)
	if err != nil {
		return nil, err
	}
	e := &jsonEncoder{s}
	e.buf = append(e.buf, `{"track":`...)
	e.buf = append(e.buf, track...)
	e.buf = append(e.buf, `,"points":[`...)
	return e, e.write("header")
}

// Point writes p as the next element of "points".
func (e *jsonEncoder) Point(p *position.Position) error {
	if err := e.begin("point"); err != nil {
		return err
	}
	if e.points > 0 {
		e.buf = append(e.buf, ',')
	}
	e.buf = p.AppendJSON(e.buf)
	if err := e.write("point"); err != nil {
		return err
	}
	e.points++
	return nil
}

// Close ends "points" and the object.
func (e *jsonEncoder) Close() error {
	if err := e.begin("Close"); err != nil {
		return err
	}
	e.closed = true
	e.buf = append(e.buf, "]}\n"...)
	return e.write("trailer")
}
