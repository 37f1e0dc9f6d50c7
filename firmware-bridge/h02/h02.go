// Package h02 is the firmware-bridge's adapter for the H02 protocol
// (Sinotrack and many other trackers; default port 5013): text messages
// over TCP,
//
//	*HQ,IMEI,V1,HHMMSS,A,DDMM.MMMM,N,DDDMM.MMMM,E,speed,course,DDMMYY,status#
//
// (time UTC, A a valid fix or V none, speed in knots, status a hex bit
// field; variants add battery, cell and other fields, and NBR, LINK and
// heartbeat messages carry no position), and a binary form beginning with
// `$`. The server replies as the trackers expect.
//
// Each message carries the IMEI, which names a registered device (its id,
// or one of its identifiers). An unknown IMEI, or a device that has a
// secret (H02 cannot carry one), is refused and the connection closed, as
// is one that sends a broken message (no `#` within MaxMessage bytes, bytes
// that start no message). Positions are published once the broker has
// them, before the next message is read; a position without a fix is
// dropped and counted.
package h02

import (
	"context"
	"fmt"
	"time"

	"trackgate/firmware-bridge/bridge"
)

// DefaultAddr is the adapter's default listen address.
const DefaultAddr = ":5013"

// Protocol is the adapter's entry in the bridge's protocol list.
func Protocol() *bridge.Protocol {
	return &bridge.Protocol{Name: "h02", Addr: DefaultAddr, Usage: "the H02 protocol (Sinotrack and compatible trackers; text TCP)",
		Stream: func(env *bridge.Env) (bridge.StreamHandler, error) { return &Adapter{env: env}, nil }}
}

// Adapter serves H02 connections.
type Adapter struct {
	env *bridge.Env
}

var _ bridge.StreamHandler = (*Adapter)(nil)

// ServeConn serves one tracker connection until it ends.
func (a *Adapter) ServeConn(ctx context.Context, c *bridge.Conn) error {
	sc := c.Scanner(ScanMessages, MaxMessage)
	var dev *bridge.Device
	var imei string
	var out []byte
	defer func() {
		if dev != nil {
			a.env.Offline(ctx, dev)
		}
	}()
	for sc.Scan() {
		now := time.Now()
		m, err := Decode(sc.Bytes(), now)
		if err != nil {
			a.env.Drop(bridge.DropBadRequest)
			return &bridge.FrameError{Err: err}
		}
		if dev == nil || m.IMEI != imei {
			d, err := a.env.Resolve(ctx, m.IMEI)
			if err == nil {
				err = a.env.Authorize(d, "", false)
			}
			if err != nil {
				return fmt.Errorf("device %s: %w", m.IMEI, err)
			}
			if dev == nil {
				c.Log = c.Log.With("device", d.ID)
			}
			dev, imei = d, m.IMEI
			if err := a.env.Online(ctx, dev, c, nil); err != nil {
				return err
			}
		}
		if m.Position != nil {
			if err := a.env.PublishFix(ctx, c, dev, m.Position, m.Valid); err != nil {
				return err
			}
		}
		if out = AppendReply(out[:0], m, now); len(out) > 0 {
			if _, err := c.Write(out); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}
