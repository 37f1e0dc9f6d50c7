// Package owntracks is the firmware-bridge's adapter for the OwnTracks apps
// in HTTP mode (default port 5144). The app POSTs each message, the same
// JSON it would publish over MQTT, to the URL it is given (for example
// http://HOST:5144/pub) with HTTP Basic auth and the X-Limit-U and
// X-Limit-D headers; the server answers a JSON array of messages for the
// app, here always [].
//
// The Basic auth password is the device's token (as `trackctl devices add`
// prints it); the user name is the device's id or its owner's name, as in
// the app's MQTT mode. Identity comes from the token alone, never from tid
// or the topic field in the message. Locations become positions; other
// message types are taken and ignored.
package owntracks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"trackgate/firmware-bridge/bridge"
)

// DefaultAddr is the adapter's default listen address.
const DefaultAddr = ":5144"

// Protocol is the adapter's entry in the bridge's protocol list.
func Protocol() *bridge.Protocol {
	return &bridge.Protocol{Name: "owntracks-http", Addr: DefaultAddr, Usage: "the OwnTracks apps' HTTP mode (POST /pub, Basic auth with the device token)",
		HTTP: func(env *bridge.Env) (http.Handler, error) { return &Adapter{env: env}, nil }}
}

// Adapter serves the OwnTracks HTTP requests.
type Adapter struct {
	env *bridge.Env
}

var _ http.Handler = (*Adapter)(nil)

// ServeHTTP takes one message: 200 [] once its position is published, 400
// for a message that does not decode, 401 for wrong credentials, 503 when
// the broker or the cloud does not answer (the app queues the message and
// sends it again).
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST the OwnTracks message", http.StatusMethodNotAllowed)
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || pass == "" {
		a.unauthorized(w, "Basic auth required: the device id (or its owner's name) and the device token")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		a.env.Drop(bridge.DropBadRequest)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the message: "+err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	d, owner, err := a.env.DeviceToken(ctx, pass)
	switch {
	case errors.Is(err, bridge.ErrUnavailable):
		http.Error(w, "the device cannot be checked now: try again", http.StatusServiceUnavailable)
		return
	case err != nil:
		a.env.Log.Info("OwnTracks request refused", "user", user, "err", err)
		a.unauthorized(w, "the password is not a valid device token")
		return
	}
	if !strings.EqualFold(user, d.ID) && (owner == "" || !strings.EqualFold(user, owner)) {
		a.env.Drop(bridge.DropSecret)
		a.unauthorized(w, "the user name must be the device id or its owner's name")
		return
	}
	ps, err := Decode(body, time.Now())
	if err != nil {
		a.env.Drop(bridge.DropBadRequest)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(ps) > 0 {
		if err := a.env.Publish(ctx, d, ps); errors.Is(err, bridge.ErrPublish) || errors.Is(err, context.Canceled) {
			http.Error(w, "not stored: try again", http.StatusServiceUnavailable)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, "[]")
}

func (a *Adapter) unauthorized(w http.ResponseWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="trackgate", charset="UTF-8"`)
	http.Error(w, msg, http.StatusUnauthorized)
}
