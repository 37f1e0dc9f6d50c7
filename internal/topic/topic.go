// Package topic builds and parses the MQTT topics of trackgate's wire
// contract: devices/{device}/positions, …/session, …/status and …/commands.
package topic

import (
	"errors"
	"fmt"
	"strings"
)

// Kinds of device topic.
const (
	Positions = "positions" // device → cloud: position objects or arrays
	Session   = "session"   // device → cloud: start or stop a recording
	Status    = "status"    // device → all: retained online/offline/no-fix
	Commands  = "commands"  // cloud → device
)

// SharedPositions is the shared subscription the cloud's ingest bridges use,
// so that several instances split the positions between them.
const SharedPositions = "$share/cloud/devices/+/positions"

// Revocations is the topic on which a service (the cloud) tells a broker
// that tokens were revoked: the broker fetches the issuer's revocation list
// at once. The message is consumed by the broker, never delivered.
const Revocations = "trackgate/revocations"

// MaxDeviceLen is the longest device id, in bytes.
const MaxDeviceLen = 64

// ErrNotDevice is returned by Parse for a topic outside devices/{device}/{kind}.
var ErrNotDevice = errors.New("not a devices/{device}/{kind} topic")

// Device returns the topic of kind for device.
func Device(device, kind string) string {
	return "devices/" + device + "/" + kind
}

// Parse splits a topic of the form devices/{device}/{kind} and checks the
// device id.
func Parse(t string) (device, kind string, err error) {
	rest, ok := strings.CutPrefix(t, "devices/")
	if !ok {
		return "", "", fmt.Errorf("topic %q: %w", t, ErrNotDevice)
	}
	device, kind, ok = strings.Cut(rest, "/")
	if !ok || strings.Contains(kind, "/") {
		return "", "", fmt.Errorf("topic %q: %w", t, ErrNotDevice)
	}
	if err := ValidDevice(device); err != nil {
		return "", "", fmt.Errorf("topic %q: %w", t, err)
	}
	return device, kind, nil
}

// ValidDevice checks a device id: 1 to MaxDeviceLen bytes of ASCII letters,
// digits and . _ - : (so an IMEI, a serial number or user-device all fit, and
// no id can be an MQTT wildcard, a topic level separator or a line-protocol
// escape).
func ValidDevice(id string) error {
	if id == "" {
		return errors.New("empty device id")
	}
	if len(id) > MaxDeviceLen {
		return fmt.Errorf("device id of %d bytes, more than %d", len(id), MaxDeviceLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' || c == ':') {
			return fmt.Errorf("device id %q: character %q not allowed (letters, digits and . _ - : only)", id, c)
		}
	}
	return nil
}
