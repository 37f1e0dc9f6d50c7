package web

import "testing"

func TestTileSource(t *testing.T) {
	for _, tc := range []struct {
		tmpl, want string
		ok         bool
	}{
		{"", "", true},
		{"https://tile.openstreetmap.org/{z}/{x}/{y}.png", " https://tile.openstreetmap.org", true},
		{"https://{s}.tile.example.org/{z}/{x}/{y}.png", " https://*.tile.example.org", true},
		{"http://127.0.0.1:9000/tiles/{z}/{x}/{y}.png", " http://127.0.0.1:9000", true},
		{"https://tile.example.org/{z}/{x}.png", "", false},
		{"ftp://tile.example.org/{z}/{x}/{y}.png", "", false},
		{"/{z}/{x}/{y}.png", "", false},
		{"https://tile.example.org/{z}/{x}/{y}.png; script-src *", "", false},
	} {
		got, err := tileSource(tc.tmpl)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("tileSource(%q) = %q, %v; want %q, ok %v", tc.tmpl, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseMQTT(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want mqttSettings
		ok   bool
	}{
		{"tcp://127.0.0.1:1883", mqttSettings{Host: "127.0.0.1", Port: 1883}, true},
		{"mqtt://gps.example.org", mqttSettings{Host: "gps.example.org", Port: 1883}, true},
		{"mqtts://gps.example.org", mqttSettings{Host: "gps.example.org", Port: 8883, TLS: true}, true},
		{"ssl://gps.example.org:9883", mqttSettings{Host: "gps.example.org", Port: 9883, TLS: true}, true},
		{"wss://gps.example.org/mqtt", mqttSettings{Host: "gps.example.org", Port: 443, TLS: true, WebSocket: true}, true},
		{"ws://[::1]:8083", mqttSettings{Host: "::1", Port: 8083, WebSocket: true}, true},
		{"http://gps.example.org", mqttSettings{}, false},
		{"tcp://gps.example.org:0", mqttSettings{}, false},
		{"tcp://gps.example.org:http", mqttSettings{}, false},
		{"gps.example.org:1883", mqttSettings{}, false},
	} {
		got, err := parseMQTT(tc.raw)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseMQTT(%q) = %+v, %v; want %+v, ok %v", tc.raw, got, err, tc.want, tc.ok)
		}
	}
}
