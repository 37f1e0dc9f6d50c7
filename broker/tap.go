package broker

import (
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"trackgate/internal/topic"
)

// tapHook hands Config.Tap the messages accepted on devices' topics.
type tapHook struct {
	mqtt.HookBase
	tap func(topic string, payload []byte, retain bool) error
	log *slog.Logger
}

// ID implements mqtt.Hook.
func (h *tapHook) ID() string { return "tap" }

// Provides implements mqtt.Hook.
func (h *tapHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnWillSent
}

// tapped reports whether messages on t go to the tap.
func tapped(t string) bool {
	_, kind, err := topic.Parse(t)
	return err == nil && (kind == topic.Positions || kind == topic.Status || kind == topic.Session)
}

// OnPublish implements mqtt.Hook: the tap takes the message before the
// publisher's acknowledgement, or the message is refused.
func (h *tapHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if !tapped(pk.TopicName) {
		return pk, nil
	}
	if err := h.tap(pk.TopicName, pk.Payload, pk.FixedHeader.Retain); err != nil {
		if cl.Properties.ProtocolVersion == 5 && pk.FixedHeader.Qos > 0 && !cl.Net.Inline {
			return pk, packets.ErrQuotaExceeded
		}
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

// OnWillSent implements mqtt.Hook: a device's will (its offline status)
// goes to the tap too.
func (h *tapHook) OnWillSent(_ *mqtt.Client, pk packets.Packet) {
	if !tapped(pk.TopicName) {
		return
	}
	if err := h.tap(pk.TopicName, pk.Payload, pk.FixedHeader.Retain); err != nil {
		h.log.Warn("will not queued for the uplink", "topic", pk.TopicName, "err", err)
	}
}
