// Package gt06 is the firmware-bridge's adapter for the GT06 protocol
// (Concox and compatible trackers; default port 5023): binary frames over
// TCP, each
//
//	start 0x7878 | length (1 byte) | protocol | content | serial (2) | CRC-ITU (2) | stop 0x0D0A
//
// or, for long frames, start 0x7979 with a two-byte length. A tracker logs
// in with its IMEI (protocol 0x01), then sends heartbeats (0x13: status and
// battery) and locations (0x12, 0x22: date and time in the device's time
// zone, satellites, latitude and longitude in 1/1,800,000 degree, speed in
// km/h, course and fix flags, cell). The server answers the login, the
// heartbeats and the alarms with the frame's protocol and serial number,
// and the time request with the time.
//
// The IMEI names a registered device (its id, or one of its identifiers);
// an unknown IMEI, or a device that has a secret (GT06 cannot carry one),
// is refused and the connection closed, as is a connection that sends
// anything before its login, or a frame that is broken (wrong CRC, a length
// that lies, over MaxFrame bytes). Locations are published once the broker
// has them, before the next frame is read; a location without a fix is
// dropped and counted. The date and time of a location are read in the
// zone the device declared at login, or else in --gt06-zone.
package gt06

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"trackgate/firmware-bridge/bridge"
)

// DefaultAddr is the adapter's default listen address.
const DefaultAddr = ":5023"

// protoLogin is the protocol number of the login packet.
const protoLogin = 0x01

// Config configures the adapter.
type Config struct {
	// Zone is the time zone of the date and time fields of devices that do
	// not declare one at login; default UTC (the trackers' default).
	Zone *time.Location
}

// Protocol is the adapter's entry in the bridge's protocol list.
func Protocol() *bridge.Protocol {
	var zone string
	return &bridge.Protocol{Name: "gt06", Addr: DefaultAddr, Usage: "the GT06 protocol (Concox and compatible trackers; binary TCP)",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&zone, "gt06-zone", "UTC", "time `zone` of GT06 devices that do not declare theirs at login (an IANA name such as Asia/Shanghai)")
		},
		Stream: func(env *bridge.Env) (bridge.StreamHandler, error) {
			loc, err := time.LoadLocation(zone)
			if err != nil {
				return nil, fmt.Errorf("--gt06-zone: %w", err)
			}
			return New(Config{Zone: loc}, env), nil
		}}
}

// Adapter serves GT06 connections.
type Adapter struct {
	cfg Config
	env *bridge.Env
}

var _ bridge.StreamHandler = (*Adapter)(nil)

// New returns the adapter.
func New(cfg Config, env *bridge.Env) *Adapter {
	if cfg.Zone == nil {
		cfg.Zone = time.UTC
	}
	return &Adapter{cfg: cfg, env: env}
}

// errNoLogin is a frame other than a login on a connection not logged in.
var errNoLogin = errors.New("a frame before the login")

// ServeConn serves one tracker connection until it ends.
func (a *Adapter) ServeConn(ctx context.Context, c *bridge.Conn) error {
	sc := c.Scanner(ScanFrames, MaxFrame)
	var dev *bridge.Device
	loc := a.cfg.Zone
	var out []byte
	batt := -1.0
	defer func() {
		if dev != nil {
			a.env.Offline(ctx, dev)
		}
	}()
	for sc.Scan() {
		p, err := Decode(sc.Bytes(), loc)
		if err != nil {
			a.env.Drop(bridge.DropBadRequest)
			return &bridge.FrameError{Err: err}
		}
		if p.Protocol == protoLogin {
			d, err := a.env.Resolve(ctx, p.IMEI)
			if err == nil {
				err = a.env.Authorize(d, "", false)
			}
			if err != nil {
				return fmt.Errorf("login of %s: %w", p.IMEI, err)
			}
			dev = d
			if p.Zone != nil {
				loc = p.Zone
			}
			c.Log = c.Log.With("device", d.ID)
			if err := a.env.Online(ctx, dev, c, nil); err != nil {
				return err
			}
		} else if dev == nil {
			a.env.Drop(bridge.DropBadRequest)
			return &bridge.FrameError{Err: errNoLogin}
		}
		if p.Position != nil {
			if err := a.env.PublishFix(ctx, c, dev, p.Position, p.Valid); err != nil {
				return err
			}
		}
		if p.HasBatt && p.Batt != batt {
			batt = p.Batt
			b := batt
			if err := a.env.Online(ctx, dev, c, &b); err != nil {
				return err
			}
		}
		if NeedsResponse(p.Protocol) {
			out = AppendResponse(out[:0], p, time.Now())
			if _, err := c.Write(out); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}
