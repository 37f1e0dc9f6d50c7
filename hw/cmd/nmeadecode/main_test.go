package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trackgate/internal/testenv"
)

func TestHelpDocumentsEveryFlag(t *testing.T) {
	testenv.CheckREADMEFlags(t, run, "--help")
}

func TestDecode(t *testing.T) {
	log := "garbage\r\n" +
		"$GPRMC,083559.000,V,,,,,,,211126,,,N*48\r\n" +
		"$GPRMC,083600.000,A,5222.2000,N,00453.4000,E,19.44,90.00,211126,,,A*66\r\n" +
		"$GPGGA,083600.000,5222.2000,N,00453.4000,E,1,12,0.60,4.2,M,46.0,M,,*63\r\n" +
		"$GPRMC,083601.000,A,5222.2000,N,00453.4000,E,19.44,90.00,211126,,,A*67"
	file := filepath.Join(t.TempDir(), "log.nmea")
	if err := os.WriteFile(file, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{file}, []string{
			`{"time":"2026-11-21T08:36:00Z","lat":52.37,"lon":4.89,"alt":4.2,"geoid":46,"speed":10.000800000000002,"course":90,"hdop":0.6,"sats":12,"fix":"3d"}`,
			`{"time":"2026-11-21T08:36:01Z","lat":52.37,"lon":4.89,"speed":10.000800000000002,"course":90,"fix":"2d"}`,
		}},
		{[]string{"--all", file}, []string{
			`{"time":"2026-11-21T08:35:59Z","fix":"none"}`,
			`{"time":"2026-11-21T08:36:00Z","lat":52.37,"lon":4.89,"alt":4.2,"geoid":46,"speed":10.000800000000002,"course":90,"hdop":0.6,"sats":12,"fix":"3d"}`,
			`{"time":"2026-11-21T08:36:01Z","lat":52.37,"lon":4.89,"speed":10.000800000000002,"course":90,"fix":"2d"}`,
		}},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), tt.args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v", tt.args, err)
		}
		if got := strings.Split(strings.TrimSpace(stdout.String()), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%v:\n got %s\nwant %s", tt.args, strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
		}
		if !strings.Contains(stderr.String(), `"GarbageBytes":7`) {
			t.Errorf("%v: counters %s", tt.args, stderr.String())
		}
	}
}
