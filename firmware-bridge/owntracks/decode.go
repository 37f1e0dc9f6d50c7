package owntracks

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"trackgate/internal/owntracks"
	"trackgate/internal/position"
)

// MaxBody is the largest request body taken, in bytes.
const MaxBody = position.MaxPayload

// Decode decodes the body of an OwnTracks HTTP request, one message or an
// array of them, and returns the positions of its locations, validated
// against now. An empty body (the apps send one when a friend is deleted)
// and messages of other types give none. A message that does not decode
// fails the whole request, so that the app shows the error.
func Decode(body []byte, now time.Time) ([]position.Position, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil
	}
	msgs := []json.RawMessage{body}
	if body[0] == '[' {
		msgs = nil
		if err := json.Unmarshal(body, &msgs); err != nil {
			return nil, fmt.Errorf("owntracks: %w", err)
		}
	}
	var out []position.Position
	for i, raw := range msgs {
		m, err := owntracks.Decode(raw, now)
		if err != nil {
			if len(msgs) > 1 {
				return nil, fmt.Errorf("message %d: %w", i, err)
			}
			return nil, err
		}
		if m.Position != nil {
			out = append(out, *m.Position)
		}
	}
	return out, nil
}
