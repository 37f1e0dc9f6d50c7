package broker

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"trackgate/internal/owntracks"
	"trackgate/internal/position"
	"trackgate/internal/topic"
)

// Payload limits of the topics other than positions (which have
// position.MaxPayload).
const (
	maxSessionPayload = 4 << 10
	maxStatusPayload  = 16 << 10
	maxSessionName    = 200
)

// positionsPool holds the buffers payloads are decoded into.
var positionsPool = sync.Pool{New: func() any { s := make([]position.Position, 0, 16); return &s }}

// payloadError is a payload refused, and why.
type payloadError struct {
	kind   string // positions, session, status or owntracks: the counter's label
	reason string // the counter's second label
	detail string // for the client (MQTT 5 reason string) and the log
}

func (e *payloadError) Error() string { return e.kind + ": " + e.detail }

// checkPayload validates a message on one of the devices/{device}/… topics.
// For positions it returns the payload to forward: the same bytes when every
// position is valid, the valid ones alone when only some are, and an error
// when none is.
func checkPayload(t string, payload []byte, now time.Time) ([]byte, *payloadError) {
	_, kind, err := topic.Parse(t)
	if err != nil {
		return payload, nil
	}
	switch kind {
	case topic.Positions:
		buf := positionsPool.Get().(*[]position.Position)
		defer positionsPool.Put(buf)
		ps, errs := position.Accept(payload, now, (*buf)[:0])
		*buf = ps[:0]
		if len(errs) == 0 {
			return payload, nil
		}
		if len(ps) == 0 {
			return nil, &payloadError{kind: topic.Positions, reason: string(errs[0].Reason), detail: errs[0].Error()}
		}
		out := append(make([]byte, 0, len(payload)), '[')
		for i := range ps {
			if i > 0 {
				out = append(out, ',')
			}
			out = ps[i].AppendJSON(out)
		}
		return append(out, ']'), &payloadError{kind: topic.Positions, reason: string(errs[0].Reason),
			detail: errs[0].Error() + " (the other positions of the batch were accepted)"}
	case topic.Session:
		if err := checkSession(payload); err != nil {
			return nil, &payloadError{kind: topic.Session, reason: "invalid", detail: err.Error()}
		}
	case topic.Status:
		if len(payload) > maxStatusPayload || !json.Valid(payload) || !strings.HasPrefix(strings.TrimLeft(string(payload), " \t\r\n"), "{") {
			return nil, &payloadError{kind: topic.Status, reason: "invalid", detail: "a status is a JSON object of at most 16 KiB"}
		}
	}
	return payload, nil
}

// checkSession validates a recording command: {"action":"start","name":"…"}
// or {"action":"stop"}.
func checkSession(payload []byte) error {
	if len(payload) > maxSessionPayload {
		return errors.New("a session message is at most 4 KiB")
	}
	var m struct {
		Action string  `json:"action"`
		Name   *string `json:"name"`
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		return errors.New(`want {"action":"start","name":"…"} or {"action":"stop"}: ` + err.Error())
	}
	if m.Action != "start" && m.Action != "stop" {
		return errors.New(`action must be "start" or "stop"`)
	}
	if m.Name != nil && len(*m.Name) > maxSessionName {
		return errors.New("name longer than 200 bytes")
	}
	return nil
}

// OnPublish validates what clients publish before it fans out: positions
// with the shared position codec, session and status messages for their
// form; OwnTracks locations are translated to positions of the device that
// authenticated and republished on its positions topic. A refused message
// gets PUBACK 0x99 (payload format invalid) on MQTT 5; on 3.1.1 it is
// acknowledged, dropped and counted. Nothing else of the connection is
// affected.
func (h *authHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if pk.TopicName == topic.Revocations { // the ACL let only services publish it
		if h.refreshRevocations != nil {
			h.refreshRevocations()
		}
		return pk, packets.CodeSuccessIgnore
	}
	now := time.Now()
	if strings.HasPrefix(pk.TopicName, "owntracks/") {
		return h.ownTracks(cl, pk, now)
	}
	out, perr := checkPayload(pk.TopicName, pk.Payload, now)
	if perr == nil {
		return pk, nil
	}
	h.m.payloadRejected.WithLabelValues(perr.kind, perr.reason).Inc()
	if out != nil { // some positions were valid: forward them
		h.logRejected(cl, pk, perr)
		pk.Payload = out
		return pk, nil
	}
	return pk, h.reject(cl, pk, perr)
}

// reject logs a refused message and returns the error OnPublish answers
// with: PUBACK 0x99 with the reason on MQTT 5 at QoS 1 and 2; otherwise
// acknowledged as usual and dropped.
func (h *authHook) reject(cl *mqtt.Client, pk packets.Packet, perr *payloadError) error {
	h.logRejected(cl, pk, perr)
	if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 {
		return packets.Code{Code: packets.ErrPayloadFormatInvalid.Code, Reason: perr.detail}
	}
	return packets.CodeSuccessIgnore
}

func (h *authHook) logRejected(cl *mqtt.Client, pk packets.Packet, perr *payloadError) {
	if h.logLimit.Allow() {
		h.log.Info("mqtt payload rejected", "client", cl.ID, "topic", pk.TopicName, "err", perr.detail)
	}
}

// ownTracks handles a message on a device's OwnTracks topic (the ACL let
// only those through): a location becomes a position on
// devices/{device}/positions, an lwt the device's offline status; other types
// are acknowledged and dropped, an encrypted one refused.
func (h *authHook) ownTracks(cl *mqtt.Client, pk packets.Packet, now time.Time) (packets.Packet, error) {
	v, ok := h.clients.Load(cl)
	if !ok {
		return pk, packets.ErrRejectPacket
	}
	s := v.(*session)
	level, ok := s.ownTracks(pk.TopicName)
	if !ok || s.rights&rightDevice == 0 || level != "" {
		// Events, steps, waypoints, cards, commands: nothing trackgate
		// stores. (An operator's publish here has no device.)
		h.m.ownTracks.WithLabelValues("ignored").Inc()
		return pk, packets.CodeSuccessIgnore
	}
	m, err := owntracks.Decode(pk.Payload, now)
	if err != nil {
		label := "invalid"
		if errors.Is(err, owntracks.ErrEncrypted) {
			label = owntracks.TypeEncrypted
		}
		h.m.ownTracks.WithLabelValues(label).Inc()
		return pk, h.reject(cl, pk, &payloadError{kind: "owntracks", reason: label, detail: err.Error()})
	}
	switch m.Type {
	case owntracks.TypeLocation:
		h.m.ownTracks.WithLabelValues(owntracks.TypeLocation).Inc()
		pk.TopicName = topic.Device(s.sub, topic.Positions)
		pk.Payload = m.Position.AppendJSON(make([]byte, 0, 160))
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
		return pk, nil
	case owntracks.TypeLWT:
		h.m.ownTracks.WithLabelValues(owntracks.TypeLWT).Inc()
		pk.TopicName = topic.Device(s.sub, topic.Status)
		pk.Payload = offlineStatus(now)
		pk.FixedHeader.Retain = true
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
		return pk, nil
	}
	h.m.ownTracks.WithLabelValues("ignored").Inc()
	return pk, packets.CodeSuccessIgnore
}

// offlineStatus is the status a device's will sets when an OwnTracks app
// goes away.
func offlineStatus(now time.Time) []byte {
	b, _ := json.Marshal(struct {
		State  string    `json:"state"`
		Time   time.Time `json:"time"`
		Source string    `json:"source"`
	}{"offline", now.UTC(), "owntracks"})
	return b
}

// OnWill turns an OwnTracks app's will (an lwt on its location topic) into
// the device's retained offline status.
func (h *authHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if !strings.HasPrefix(will.TopicName, "owntracks/") {
		return will, nil
	}
	v, ok := h.clients.Load(cl)
	if !ok {
		return will, nil
	}
	s := v.(*session)
	h.m.ownTracks.WithLabelValues(owntracks.TypeLWT).Inc()
	will.TopicName = topic.Device(s.sub, topic.Status)
	will.Payload = offlineStatus(time.Now())
	will.Retain = true
	return will, nil
}
