package config

import (
	"bytes"
	"flag"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		wantURL string
		wantDur time.Duration
		wantErr string
	}{
		{name: "defaults", wantURL: "http://127.0.0.1:8086", wantDur: time.Second},
		{name: "environment", env: map[string]string{"TRACKGATE_INFLUX_URL": "http://db:8086", "TRACKGATE_BATCH_WAIT": "5ms"},
			wantURL: "http://db:8086", wantDur: 5 * time.Millisecond},
		{name: "flag wins over environment", args: []string{"--influx-url", "http://flag"},
			env: map[string]string{"TRACKGATE_INFLUX_URL": "http://env"}, wantURL: "http://flag", wantDur: time.Second},
		{name: "bad environment value names the variable", env: map[string]string{"TRACKGATE_BATCH_WAIT": "soon"},
			wantErr: `TRACKGATE_BATCH_WAIT="soon"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("x", flag.ContinueOnError)
			url := fs.String("influx-url", "http://127.0.0.1:8086", "InfluxDB URL")
			wait := fs.Duration("batch-wait", time.Second, "longest wait")
			err := Parse(fs, "x", tc.args, func(k string) string { return tc.env[k] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || *url != tc.wantURL || *wait != tc.wantDur {
				t.Fatalf("got %q %v %v, want %q %v", *url, *wait, err, tc.wantURL, tc.wantDur)
			}
		})
	}
}

func TestUsageListsEnvironment(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("mqtt-ws", ":8083", "MQTT over WebSocket `address`")
	var b bytes.Buffer
	Usage(&b, fs, "gateway [flags]")
	for _, want := range []string{"Usage: gateway [flags]", "--mqtt-ws address", "[TRACKGATE_MQTT_WS]", `(default ":8083")`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}
