package broker

import (
	"log/slog"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// takeoverHook keeps QoS 1 and 2 messages from being lost when a client
// resumes its persistent session (clean session off) while messages for it
// are being published: the cloud's ingest bridge restarting under load.
//
// Mochi copies the old session's in-flight messages to the new client before
// it puts the new client in its client map; a message routed to the old
// session in between lands in a session nobody will ever resend. This hook
// sees each such message (the old session is marked taken over before the
// copy) and delivers it to the session's new client once that client is
// established. A message that was copied as well arrives twice, which QoS 1
// allows and trackgate's idempotent writes absorb.
type takeoverHook struct {
	mqtt.HookBase
	clients *mqtt.Clients
	log     *slog.Logger

	mu          sync.Mutex
	established map[string]*mqtt.Client     // the established client of each client id
	orphans     map[string][]packets.Packet // messages waiting for their client id's new client
}

var _ mqtt.Hook = (*takeoverHook)(nil)

func newTakeoverHook(clients *mqtt.Clients, log *slog.Logger) *takeoverHook {
	return &takeoverHook{clients: clients, log: log,
		established: map[string]*mqtt.Client{}, orphans: map[string][]packets.Packet{}}
}

// ID names the hook.
func (h *takeoverHook) ID() string { return "session-takeover-guard" }

// Provides says which events the hook handles.
func (h *takeoverHook) Provides(b byte) bool {
	return b == mqtt.OnQosPublish || b == mqtt.OnSessionEstablished || b == mqtt.OnDisconnect
}

// OnSessionEstablished records cl as its id's client and delivers the
// messages orphaned while it took its session over.
func (h *takeoverHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	h.established[cl.ID] = cl
	orphans := h.orphans[cl.ID]
	delete(h.orphans, cl.ID)
	h.mu.Unlock()
	for _, pk := range orphans {
		h.deliver(cl, pk)
	}
}

// OnDisconnect forgets a client whose session ends with its connection.
func (h *takeoverHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if !expire {
		return
	}
	h.mu.Lock()
	if h.established[cl.ID] == cl {
		delete(h.established, cl.ID)
	}
	h.mu.Unlock()
}

// OnQosPublish catches a message stored in a session that was taken over.
func (h *takeoverHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, resends int) {
	if resends > 0 || !cl.IsTakenOver() {
		return
	}
	h.mu.Lock()
	current, ok := h.clients.Get(cl.ID)
	if !ok || current == cl || h.established[cl.ID] != current {
		// The new client is not established yet: hand it over then.
		h.orphans[cl.ID] = append(h.orphans[cl.ID], pk)
		h.mu.Unlock()
		return
	}
	h.mu.Unlock()
	h.deliver(current, pk)
}

// deliver puts pk in cl's session under a packet id of cl's and sends it; if
// cl is gone again, the message waits in its session for the next connection.
func (h *takeoverHook) deliver(cl *mqtt.Client, pk packets.Packet) {
	id, err := cl.NextPacketID()
	if err != nil {
		h.log.Error("message of a taken-over session dropped: no packet id free", "client", cl.ID, "topic", pk.TopicName, "err", err)
		return
	}
	pk.PacketID = uint16(id)
	pk.FixedHeader.Dup = false
	cl.State.Inflight.Set(pk)
	if err := cl.WritePacket(pk); err != nil {
		h.log.Debug("message of a taken-over session kept for the next connection", "client", cl.ID, "err", err)
	}
}
