package broker

import (
	"slices"
	"strings"
	"time"

	"trackgate/internal/token"
	"trackgate/internal/topic"
)

// Broker token scopes: each grants a set of topics, derived from the token's
// claims alone.
const (
	// ScopeDevice: publish devices/{sub}/positions, …/status and …/session
	// (and the device's OwnTracks topics), subscribe devices/{sub}/commands.
	ScopeDevice = "device"
	// ScopeIngest: subscribe every device's positions, status and session
	// messages, shared or not; publish any device's commands. The cloud's
	// ingest bridge.
	ScopeIngest = "ingest"
	// ScopeLive: subscribe the positions and status of the devices listed in
	// the token's devices claim. A person's live map.
	ScopeLive = "live"
	// ScopeOperator: every topic, $SYS included.
	ScopeOperator = "operator"
	// ScopeBridge: publish any device's positions and status. The
	// firmware-bridge, which authenticates the trackers it speaks for.
	ScopeBridge = "bridge"
	// ScopeGateway: publish the positions, status and session messages of
	// the devices listed in the token's devices claim. A person's enrolled
	// gateway (a usr: subject), forwarding its owner's devices upstream.
	ScopeGateway = "gateway"
)

// Prefixes of non-device subjects: device ids never start with them.
const (
	userPrefix    = "usr:"
	servicePrefix = "svc:"
)

// rights are what a token's scopes allow.
type rights uint8

const (
	rightDevice rights = 1 << iota
	rightIngest
	rightLive
	rightOperator
	rightBridge
	rightGateway
)

// principal is an authenticated client: who it is and what it may do, from
// its token.
type principal struct {
	sub     string
	owner   string   // a device's owner, for OwnTracks topics
	devices []string // live: the devices it may watch; gateway: those it may publish for
	rights  rights
	jti     string
	exp     time.Time
}

// newPrincipal derives the rights of a verified token. It returns nil when
// the token grants nothing on the broker, or claims a scope its subject
// cannot hold (a device scope on a user's or service's subject, say).
func newPrincipal(c *token.Claims) *principal {
	p := &principal{sub: c.Subject, owner: c.Owner, jti: c.ID}
	isDevice := topic.ValidDevice(c.Subject) == nil && !strings.HasPrefix(c.Subject, userPrefix) && !strings.HasPrefix(c.Subject, servicePrefix)
	for _, sc := range c.Scopes() {
		switch sc {
		case ScopeDevice:
			if isDevice {
				p.rights |= rightDevice
			}
		case ScopeIngest:
			if strings.HasPrefix(c.Subject, servicePrefix) {
				p.rights |= rightIngest
			}
		case ScopeLive:
			p.rights |= rightLive
		case ScopeOperator:
			if strings.HasPrefix(c.Subject, servicePrefix) {
				p.rights |= rightOperator
			}
		case ScopeBridge:
			if strings.HasPrefix(c.Subject, servicePrefix) {
				p.rights |= rightBridge
			}
		case ScopeGateway:
			if strings.HasPrefix(c.Subject, userPrefix) {
				p.rights |= rightGateway
			}
		}
	}
	if p.rights == 0 {
		return nil
	}
	if p.rights&(rightLive|rightGateway) != 0 {
		for _, d := range c.Devices {
			if topic.ValidDevice(d) == nil {
				p.devices = append(p.devices, d)
			}
		}
	}
	return p
}

// clientIDBound reports whether a client id belongs to sub: it is sub, or
// sub, a slash and anything (a person's browser tabs, the instances of a
// service). Device ids hold no slash, so no subject's ids can be another's.
func clientIDBound(id, sub string) bool {
	rest, ok := strings.CutPrefix(id, sub)
	return ok && (rest == "" || rest[0] == '/')
}

// mayPublish reports whether p may publish to topic t.
func (p *principal) mayPublish(t string) bool {
	if p.rights&rightOperator != 0 {
		return t != "" && t[0] != '$'
	}
	if p.rights&rightDevice != 0 {
		if dev, kind, err := topic.Parse(t); err == nil && dev == p.sub {
			switch kind {
			case topic.Positions, topic.Status, topic.Session:
				return true
			}
		}
		if _, ok := p.ownTracks(t); ok {
			return true
		}
	}
	if p.rights&rightBridge != 0 {
		if _, kind, err := topic.Parse(t); err == nil && (kind == topic.Positions || kind == topic.Status) {
			return true
		}
	}
	if p.rights&rightGateway != 0 {
		if dev, kind, err := topic.Parse(t); err == nil && slices.Contains(p.devices, dev) {
			switch kind {
			case topic.Positions, topic.Status, topic.Session:
				return true
			}
		}
	}
	if p.rights&rightIngest != 0 {
		if _, kind, err := topic.Parse(t); err == nil && kind == topic.Commands {
			return true
		}
		return t == topic.Revocations
	}
	return false
}

// maySubscribe reports whether p may subscribe to filter f, and receive a
// message published on topic f.
func (p *principal) maySubscribe(f string) bool {
	if p.rights&rightOperator != 0 {
		return true
	}
	if p.rights&rightDevice != 0 {
		if f == topic.Device(p.sub, topic.Commands) {
			return true
		}
		if sub, ok := p.ownTracks(f); ok && sub == "cmd" {
			return true
		}
	}
	if p.rights&rightIngest != 0 && ingestFilter(f) {
		return true
	}
	if p.rights&rightLive != 0 {
		if dev, kind, err := topic.Parse(f); err == nil && (kind == topic.Positions || kind == topic.Status) && slices.Contains(p.devices, dev) {
			return true
		}
	}
	return false
}

// ingestFilter reports whether f is, after an optional $share/{group}/, one
// of devices/{+ or a device}/positions, …/status or …/session.
func ingestFilter(f string) bool {
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		group, rest, ok := strings.Cut(rest, "/")
		if !ok || group == "" || strings.ContainsAny(group, "+#") {
			return false
		}
		f = rest
	}
	rest, ok := strings.CutPrefix(f, "devices/")
	if !ok {
		return false
	}
	dev, kind, ok := strings.Cut(rest, "/")
	if !ok || (dev != "+" && topic.ValidDevice(dev) != nil) {
		return false
	}
	return kind == topic.Positions || kind == topic.Status || kind == topic.Session
}

// ownTracks reports whether t is one of the device's OwnTracks topics,
// owntracks/{user}/{device} or one level below it, and returns that level
// ("" for the location topic itself). The topic is the device's when its
// user part is the device id (the apps' default, %u/%d, with the user name
// set to the device id), or its user part is the device's owner and its
// device part the device id; both compared ignoring case, as the apps and
// the Recorder lower-case names.
func (p *principal) ownTracks(t string) (sub string, ok bool) {
	rest, ok := strings.CutPrefix(t, "owntracks/")
	if !ok {
		return "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") {
		return "", false
	}
	for _, part := range parts {
		if strings.ContainsAny(part, "+#") {
			return "", false
		}
	}
	user, dev := parts[0], parts[1]
	if !strings.EqualFold(user, p.sub) && (p.owner == "" || !strings.EqualFold(user, p.owner) || !strings.EqualFold(dev, p.sub)) {
		return "", false
	}
	if len(parts) == 3 {
		return parts[2], true
	}
	return "", true
}
