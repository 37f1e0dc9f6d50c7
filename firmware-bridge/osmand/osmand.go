// Package osmand is the firmware-bridge's adapter for the OsmAnd protocol
// (default port 5055): HTTP requests whose query string (or form body)
// carries one position, as the Traccar Client app, the OsmAnd app and many
// trackers send them, e.g.
//
//	GET /?id=123456&timestamp=1700000000&lat=52.52&lon=13.405&speed=12.3&bearing=90&altitude=34&accuracy=5&batt=87
//
// and the JSON body of Traccar Client 9 and later ({"device_id", "location":
// {"timestamp", "coords": {…}, "battery": {…}}}). Any method and path are
// taken. The answer is 200 once the position is published, 400 for a
// request that does not decode or an unknown id in the query form, 404 for
// an unknown id in the JSON form (what the apps expect), 401 for a missing
// or wrong device secret, and 503 when the broker or the cloud does not
// answer (the apps keep the position and send it again).
//
// The id names a registered device (its id, or one of its identifiers). A
// device with a secret takes positions only with it, as the key parameter
// (the app's server URL ending in ?key=SECRET) or the Basic auth password.
// The speed parameter's unit depends on the sender: knots from the Traccar
// Client, m/s from the OsmAnd app; it is set per device (its speed_unit)
// and defaults to --osmand-speed-unit.
package osmand

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"trackgate/firmware-bridge/bridge"
	"trackgate/internal/position"
)

// DefaultAddr is the adapter's default listen address.
const DefaultAddr = ":5055"

// Config configures the adapter.
type Config struct {
	// SpeedUnit is the unit of the speed parameter of devices that do not
	// set their own; default Knots (the Traccar Client).
	SpeedUnit SpeedUnit
	// Zone is the time zone of timestamps of the form yyyy-MM-dd
	// HH:mm:ss; default UTC.
	Zone *time.Location
}

// Protocol is the adapter's entry in the bridge's protocol list.
func Protocol() *bridge.Protocol {
	var unit, zone string
	return &bridge.Protocol{Name: "osmand", Addr: DefaultAddr, Usage: "the OsmAnd protocol (Traccar Client, OsmAnd app; HTTP)",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&unit, "osmand-speed-unit", string(Knots), "`unit` of the OsmAnd speed parameter of devices without their own: knots (Traccar Client), mps (OsmAnd app), kmh or mph")
			fs.StringVar(&zone, "osmand-zone", "UTC", "time `zone` of OsmAnd timestamps written yyyy-MM-dd HH:mm:ss (an IANA name)")
		},
		HTTP: func(env *bridge.Env) (http.Handler, error) {
			u, err := ParseSpeedUnit(unit)
			if err != nil {
				return nil, fmt.Errorf("--osmand-speed-unit: %w", err)
			}
			loc, err := time.LoadLocation(zone)
			if err != nil {
				return nil, fmt.Errorf("--osmand-zone: %w", err)
			}
			return New(Config{SpeedUnit: u, Zone: loc}, env), nil
		}}
}

// Adapter serves OsmAnd requests.
type Adapter struct {
	cfg Config
	env *bridge.Env
}

var _ http.Handler = (*Adapter)(nil)

// New returns the adapter.
func New(cfg Config, env *bridge.Env) *Adapter {
	if cfg.SpeedUnit == "" {
		cfg.SpeedUnit = Knots
	}
	if cfg.Zone == nil {
		cfg.Zone = time.UTC
	}
	return &Adapter{cfg: cfg, env: env}
}

// ServeHTTP takes one request's positions.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxBody+1))
	if err != nil {
		a.fail(w, http.StatusBadRequest, "reading the request: "+err.Error())
		return
	}
	if len(body) > MaxBody {
		a.fail(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", MaxBody))
		return
	}
	reports, err := Decode(r.URL.RawQuery, r.Header.Get("Content-Type"), body, time.Now(), a.cfg.Zone)
	if err != nil {
		a.fail(w, http.StatusBadRequest, err.Error())
		return
	}
	for i := range reports {
		if code, msg := a.report(r, &reports[i]); code != http.StatusOK {
			http.Error(w, msg, code)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// fail counts and answers a request that does not decode.
func (a *Adapter) fail(w http.ResponseWriter, code int, msg string) {
	a.env.Drop(bridge.DropBadRequest)
	http.Error(w, msg, code)
}

// report publishes one report, returning the status to answer.
func (a *Adapter) report(r *http.Request, rep *Report) (int, string) {
	ctx := r.Context()
	d, err := a.env.Resolve(ctx, rep.ID)
	switch {
	case errors.Is(err, bridge.ErrUnknown) && rep.JSON:
		return http.StatusNotFound, "unknown device " + rep.ID
	case errors.Is(err, bridge.ErrUnknown):
		return http.StatusBadRequest, "unknown device " + rep.ID
	case err != nil:
		return http.StatusServiceUnavailable, "the device cannot be checked now: try again"
	}
	secret, has := rep.Key, rep.Key != ""
	if !has {
		_, secret, has = r.BasicAuth()
	}
	if err := a.env.Authorize(d, secret, true); err != nil {
		a.env.Log.Info("position refused: wrong or missing device secret", "ident", rep.ID, "device", d.ID, "secret_given", has)
		return http.StatusUnauthorized, "wrong or missing device secret (the key parameter)"
	}
	if !rep.Valid {
		a.env.Drop(bridge.DropNoFix)
		return http.StatusOK, ""
	}
	unit := a.cfg.SpeedUnit
	if d.SpeedUnit != "" {
		if u, err := ParseSpeedUnit(d.SpeedUnit); err == nil {
			unit = u
		}
	}
	p := rep.WithSpeed(unit)
	if err := a.env.Publish(ctx, d, []position.Position{p}); errors.Is(err, bridge.ErrPublish) {
		return http.StatusServiceUnavailable, "not stored: try again"
	} else if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	return http.StatusOK, ""
}
