package procstat

import (
	"os"
	"testing"
	"time"
)

func TestReadSelf(t *testing.T) {
	// Burn some CPU so that the count cannot stay at zero.
	for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); {
	}
	u, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.CPU <= 0 || u.RSS < 1<<20 {
		t.Errorf("usage %+v: want some CPU time and at least 1 MiB resident", u)
	}
	if _, err := Read(1 << 30); err == nil {
		t.Error("a process that does not exist was read")
	}
}
