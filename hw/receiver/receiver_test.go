package receiver

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.bug.st/serial/enumerator"

	"trackgate/hw/gpssim"
	"trackgate/internal/epoch"
	"trackgate/internal/position"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		in   string
		want Spec
		err  string
	}{
		{in: "serial:/dev/ttyUSB0=van", want: Spec{Kind: KindSerial, Path: "/dev/ttyUSB0", Device: "van"}},
		{in: "serial:/dev/serial/by-id/usb-u-blox_AG_GNSS-if00@115200=van-1", want: Spec{Kind: KindSerial, Path: "/dev/serial/by-id/usb-u-blox_AG_GNSS-if00", Baud: 115200, Device: "van-1"}},
		{in: "tcp://192.168.4.1:10110=boat", want: Spec{Kind: KindTCP, Addr: "192.168.4.1:10110", Device: "boat"}},
		{in: "tcp://mux.local=boat", want: Spec{Kind: KindTCP, Addr: "mux.local:10110", Device: "boat"}},
		{in: "tcp://[::1]:2000=boat", want: Spec{Kind: KindTCP, Addr: "[::1]:2000", Device: "boat"}},
		{in: "usb:1546:01A8=van", want: Spec{Kind: KindUSB, USB: USBID{VID: "1546", PID: "01a8"}, Device: "van"}},
		{in: "usb:067b:2303:A1B2@4800=boot", want: Spec{Kind: KindUSB, USB: USBID{VID: "067b", PID: "2303", Serial: "A1B2"}, Baud: 4800, Device: "boot"}},
		{in: "serial:/dev/ttyUSB0", err: "want SOURCE=DEVICE"},
		{in: "serial:/dev/ttyUSB0=", err: "device"},
		{in: "serial:/dev/ttyUSB0=a/b", err: "device"},
		{in: "serial:/dev/ttyUSB0@fast=van", err: "baud"},
		{in: "serial:@9600=van", err: "no port path"},
		{in: "tcp://:10110=boat", err: "no host"},
		{in: "tcp://h:99999=boat", err: "bad port"},
		{in: "usb:1546=van", err: "VID:PID"},
		{in: "usb:zz46:01a8=van", err: "4 hex digits"},
		{in: "udp://h:1=van", err: "want serial:"},
	}
	for _, tt := range tests {
		got, err := ParseSpec(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseSpec(%q) = %+v, %v; want error with %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if again, err := ParseSpec(got.String()); err != nil || again != got {
			t.Errorf("ParseSpec(%q.String() = %q) = %+v, %v", tt.in, got.String(), again, err)
		}
	}
}

func TestParseSpecs(t *testing.T) {
	specs, err := ParseSpecs(strings.NewReader("# receivers\n\nusb:1546:01a8:0001=van-dash\n  tcp://mux=boat  \n"))
	if err != nil || len(specs) != 2 || specs[0].USB.Serial != "0001" || specs[1].Addr != "mux:10110" {
		t.Fatalf("ParseSpecs = %+v, %v", specs, err)
	}
	if _, err := ParseSpecs(strings.NewReader("usb:1546:01a8=van\nnonsense\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("bad line: err = %v, want one naming line 2", err)
	}
}

func TestFindUSB(t *testing.T) {
	ports := []*enumerator.PortDetails{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "067B", PID: "2303", SerialNumber: "X"},
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "1546", PID: "01A8", SerialNumber: "0001"},
		{Name: "/dev/ttyACM1", IsUSB: true, VID: "1546", PID: "01A8", SerialNumber: "0002"},
	}
	tests := []struct {
		id   USBID
		want string
	}{
		{USBID{VID: "1546", PID: "01a8", Serial: "0002"}, "/dev/ttyACM1"},
		{USBID{VID: "1546", PID: "01a8"}, "/dev/ttyACM0"},
		{USBID{VID: "067b", PID: "2303"}, "/dev/ttyUSB0"},
		{USBID{VID: "1546", PID: "01a8", Serial: "0003"}, ""},
	}
	for _, tt := range tests {
		r := New(Config{Spec: Spec{Kind: KindUSB, USB: tt.id, Device: "d"},
			Ports: func() ([]*enumerator.PortDetails, error) { return ports, nil }}, nil)
		got, err := r.findUSB()
		if got != tt.want || (tt.want == "") != (err != nil) {
			t.Errorf("findUSB(%v) = %q, %v; want %q", tt.id, got, err, tt.want)
		}
	}
}

// recorder is a Handler that keeps what it gets.
type recorder struct {
	mu       sync.Mutex
	fixes    []position.Position
	statuses []Status
	changed  chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) Fix(e *epoch.Epoch) {
	r.mu.Lock()
	r.fixes = append(r.fixes, e.Position)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) Status(s Status) {
	r.mu.Lock()
	r.statuses = append(r.statuses, s)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// waitFor waits until cond holds on the recorder.
func (r *recorder) waitFor(t *testing.T, what string, d time.Duration, cond func(fixes []position.Position, st []Status) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		r.mu.Lock()
		ok := cond(r.fixes, r.statuses)
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("timed out waiting for %s: %d fixes, statuses %+v", what, len(r.fixes), r.statuses)
		}
	}
}

// TestTCPSource serves NMEA over TCP with garbage around it, drops the
// connection, and checks that the reader reconnects and loses nothing that
// was served whole.
func TestTCPSource(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	now := time.Now().UTC().Truncate(time.Second).Add(-time.Minute)
	epochs := func(from, n int) []byte {
		var out []byte
		for i := from; i < from+n; i++ {
			out = append(out, "\xb5\x62\x01\x07garbage"...)
			out = gpssim.AppendEpoch(out, gpssim.UBlox, gpssim.Fix{Time: now.Add(time.Duration(i) * time.Second), Valid: true,
				Lat: 52.37, Lon: 4.89 + float64(i)*1e-4, Alt: 1, Speed: 1, Course: 90, HDOP: 1, PDOP: 1.5, VDOP: 1.1, Sats: 8, SatsInView: 20})
		}
		return out
	}
	served := make(chan int, 2)
	go func() {
		for round := 0; round < 2; round++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write(epochs(round*5, 5))
			served <- round
			if round == 0 {
				c.Close() // the multiplexer restarts
				continue
			}
			defer c.Close()
		}
	}()
	rec := newRecorder()
	r := New(Config{Spec: Spec{Kind: KindTCP, Addr: ln.Addr().String(), Device: "boat"}}, rec)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	rec.waitFor(t, "10 fixes over two connections", 10*time.Second, func(f []position.Position, _ []Status) bool { return len(f) >= 10 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, p := range rec.fixes {
		if want := now.Add(time.Duration(i) * time.Second); !p.Time.Equal(want) {
			t.Errorf("fix %d at %v, want %v", i, p.Time, want)
		}
	}
	st := r.Status()
	if st.State != StateOffline || st.Counters.Reconnects != 1 || st.Counters.Fixes != 10 || st.Counters.GarbageBytes != 10*11 {
		t.Errorf("status after stop: %+v", st)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatal(ctx.Err())
	}
}
