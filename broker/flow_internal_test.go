package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// TestWriteQueueReadable: the flow control reads the length of Mochi's
// per-client write queue from an unexported field; a Mochi version without
// it must fail here, not quietly lose that half of the protection.
func TestWriteQueueReadable(t *testing.T) {
	if outboundQtyOffset == ^uintptr(0) {
		t.Fatal("mqtt.ClientState has no int32 outboundQty: the write-queue check of the flow control is off")
	}
	if n := writesQueued(new(mqtt.Client)); n != 0 {
		t.Fatalf("a new client's write queue holds %d", n)
	}
}
