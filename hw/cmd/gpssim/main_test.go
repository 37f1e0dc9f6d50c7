package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	nmea "github.com/adrianmo/go-nmea"
	"go.bug.st/serial"

	"trackgate/internal/config"
	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "--help")
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args    []string
		usage   bool // a usage error, else another one
		wantErr string
	}{
		{[]string{"--profile", "garmin"}, true, `profile "garmin": want ublox, sirf or mtk`},
		{[]string{"--rate", "50"}, true, "rate 50: want 0.1 to 20"},
		{[]string{"--baud", "1000"}, true, "baud 1000"},
		{[]string{"--faults", "drop=2"}, true, "--faults: "},
		{[]string{"--log-level", "loud"}, true, "--log-level"},
		{[]string{"--rate", "fast"}, true, "invalid value"},
		{[]string{"--route", "testdata/none.gpx"}, false, "--route: open testdata/none.gpx"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			err := run(context.Background(), tc.args, io.Discard, io.Discard)
			var ue *config.UsageError
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || errors.As(err, &ue) != tc.usage {
				t.Errorf("run = %v (usage error %v), want an error with %q (usage error %v)",
					err, errors.As(err, &ue), tc.wantErr, tc.usage)
			}
		})
	}
}

// TestRun runs the command on a route until its context ends, reads it
// through the link, and checks that it removes the link when it stops.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "var", "gps0")
	route := filepath.Join(dir, "route.gpx")
	gpx := `<gpx><rte><rtept lat="52.37" lon="4.89"/><rtept lat="52.38" lon="4.89"/></rte></gpx>`
	if err := os.WriteFile(route, []byte(gpx), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--link", link, "--rate", "10", "--profile", "sirf", "--route", route,
			"--speed", "5"}, io.Discard, &logs)
	}()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Readlink(link); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatal("no link after 5 s")
		}
	}
	port, err := serial.Open(link, &serial.Mode{BaudRate: 9600})
	if err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	if err := port.SetReadTimeout(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 1024)
	for end := time.Now().Add(5 * time.Second); !bytes.Contains(got, []byte("$GPRMC")) && time.Now().Before(end); {
		n, err := port.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, buf[:n]...)
	}
	line, _, _ := strings.Cut(string(got), "\r\n")
	s, err := nmea.Parse(line)
	if err != nil {
		t.Fatalf("nmea.Parse(%q): %v", line, err)
	}
	if gga, ok := s.(nmea.GGA); !ok || gga.Latitude < 52.37 || gga.Latitude > 52.38 || gga.Longitude != 4.89 {
		t.Errorf("first sentence %+v, want a GGA on the route", s)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after its context ended")
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("link left behind: %v", err)
	}
	if !strings.Contains(logs.String(), "plugged in") || !strings.Contains(logs.String(), "link="+link) {
		t.Errorf("logs do not tell the pty and the link:\n%s", logs.String())
	}
}
