// Package phonesim simulates a phone that publishes its positions over MQTT
// the way trackgate's wire contract says: a JSON position object on
// devices/{device}/positions at QoS 1, once per interval, moving at a steady
// speed around a circle. make run uses it as its demo device.
package phonesim

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// Route is a circular course driven at a steady speed.
type Route struct {
	Lat, Lon float64 // centre, degrees
	Radius   float64 // metres
	Speed    float64 // metres per second
	Alt      float64 // metres
}

const earthRadius = 6371008.8 // mean Earth radius, metres

// At returns the position on r after elapsed driving, stamped t.
func (r Route) At(elapsed time.Duration, t time.Time) position.Position {
	angle := r.Speed * elapsed.Seconds() / r.Radius // radians travelled, counter-clockwise from east
	north := r.Radius * math.Sin(angle)
	east := r.Radius * math.Cos(angle)
	lat := r.Lat + north/earthRadius*180/math.Pi
	lon := r.Lon + east/(earthRadius*math.Cos(r.Lat*math.Pi/180))*180/math.Pi
	// Heading is the tangent of a counter-clockwise circle: bearing = -angle (from north, clockwise).
	course := math.Mod(360-angle*180/math.Pi, 360)
	if course < 0 {
		course += 360
	}
	round := func(v float64, digits float64) float64 { p := math.Pow(10, digits); return math.Round(v*p) / p }
	return position.Position{
		Time: t.UTC().Truncate(time.Millisecond), Lat: round(lat, 7), Lon: round(lon, 7),
		Alt: r.Alt, Speed: r.Speed, Course: math.Mod(round(course, 1), 360),
		HDOP: 0.9, Sats: 9, Fix: position.Fix3D, Acc: 4.5,
		Set: position.Required | position.FieldAlt | position.FieldSpeed | position.FieldCourse |
			position.FieldHDOP | position.FieldSats | position.FieldFix | position.FieldAcc,
	}
}

// Config configures a simulated phone.
type Config struct {
	Broker   string        // broker URL, e.g. tcp://127.0.0.1:1883
	Device   string        // device id, the topic's {device}
	Username string        // MQTT user name (the device id when tokens are in use)
	Password string        // MQTT password (the device token)
	Interval time.Duration // time between positions, default 1 s
	Route    Route
	Logger   *slog.Logger
}

// Run connects and publishes one position per interval until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if err := topic.ValidDevice(cfg.Device); err != nil {
		return fmt.Errorf("phonesim: %w", err)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts := paho.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.Device).
		SetUsername(cfg.Username).SetPassword(cfg.Password).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second)
	c := paho.NewClient(opts)
	c.Connect()
	defer c.Disconnect(250)

	t := topic.Device(cfg.Device, topic.Positions)
	start := time.Now()
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		now := time.Now()
		p := cfg.Route.At(now.Sub(start), now)
		// Publish does not wait: paho queues it while disconnected and
		// sends it once connected.
		c.Publish(t, 1, false, p.AppendJSON(nil))
		cfg.Logger.Debug("published", "device", cfg.Device, "lat", p.Lat, "lon", p.Lon)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
