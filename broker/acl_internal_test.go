package broker

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"trackgate/internal/position"
	"trackgate/internal/token"
)

func aclClaims(sub, scope string) *token.Claims {
	return &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ID: "jti-" + sub}, Scope: scope}
}

func TestNewPrincipal(t *testing.T) {
	for _, tc := range []struct {
		name    string
		claims  *token.Claims
		rights  rights // 0: no principal
		devices []string
	}{
		{"device", aclClaims("van-1", ScopeDevice), rightDevice, nil},
		{"device with colon", aclClaims("alice:phone", ScopeDevice), rightDevice, nil},
		{"device scope on a user", aclClaims("usr:ann", ScopeDevice), 0, nil},
		{"device scope on a service", aclClaims("svc:cloud", ScopeDevice), 0, nil},
		{"device scope on a topic-unsafe subject", aclClaims("van/1", ScopeDevice), 0, nil},
		{"device scope on a wildcard subject", aclClaims("+", ScopeDevice), 0, nil},
		{"device scope on #", aclClaims("#", ScopeDevice), 0, nil},
		{"device scope on an empty subject", aclClaims("", ScopeDevice), 0, nil},
		{"device scope on a 65-byte subject", aclClaims(strings.Repeat("x", 65), ScopeDevice), 0, nil},
		{"ingest", aclClaims("svc:cloud", ScopeIngest), rightIngest, nil},
		{"ingest on a device", aclClaims("van-1", ScopeIngest), 0, nil},
		{"ingest on a user", aclClaims("usr:ann", ScopeIngest), 0, nil},
		{"operator", aclClaims("svc:ops", ScopeOperator), rightOperator, nil},
		{"bridge", aclClaims("svc:firmware-bridge", ScopeBridge), rightBridge, nil},
		{"bridge on a device", aclClaims("van-1", ScopeBridge), 0, nil},
		{"bridge on a user", aclClaims("usr:ann", ScopeBridge), 0, nil},
		{"operator on a user", aclClaims("usr:ann", ScopeOperator), 0, nil},
		{"operator on a device", aclClaims("van-1", ScopeOperator), 0, nil},
		{"live keeps the valid devices", &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "usr:ann"}, Scope: ScopeLive,
			Devices: []string{"van-1", "bad/id", "", "+", "van-2"}}, rightLive, []string{"van-1", "van-2"}},
		{"live without devices", aclClaims("usr:ann", ScopeLive), rightLive, nil},
		{"gateway keeps the valid devices", &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "usr:ann"}, Scope: ScopeGateway,
			Devices: []string{"van-1", "bad/id", "", "#", "van-2"}}, rightGateway, []string{"van-1", "van-2"}},
		{"gateway without devices", aclClaims("usr:ann", ScopeGateway), rightGateway, nil},
		{"gateway on a service", &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "svc:cloud"}, Scope: ScopeGateway,
			Devices: []string{"van-1"}}, 0, nil},
		{"gateway on a device", &token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "van-1"}, Scope: ScopeGateway,
			Devices: []string{"van-1"}}, 0, nil},
		{"gateway on a usr-less name", aclClaims("usrann", ScopeGateway), 0, nil},
		{"several scopes, only those the subject may hold", aclClaims("van-1", "openid device ingest operator"), rightDevice, nil},
		{"ingest and operator", aclClaims("svc:cloud", "ingest operator"), rightIngest | rightOperator, nil},
		{"no broker scope", aclClaims("van-1", "openid profile"), 0, nil},
		{"empty scope", aclClaims("van-1", ""), 0, nil},
		{"scope names are exact", aclClaims("van-1", "Device devices"), 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.claims.Owner = "ann"
			p := newPrincipal(tc.claims)
			if tc.rights == 0 {
				if p != nil {
					t.Fatalf("newPrincipal = %+v, want nil", p)
				}
				return
			}
			if p == nil {
				t.Fatalf("newPrincipal = nil, want rights %04b", tc.rights)
			}
			if p.rights != tc.rights || !slices.Equal(p.devices, tc.devices) {
				t.Errorf("rights %04b devices %q, want %04b %q", p.rights, p.devices, tc.rights, tc.devices)
			}
			if p.sub != tc.claims.Subject || p.owner != "ann" || p.jti != tc.claims.ID {
				t.Errorf("principal %+v does not carry sub, owner and jti of %+v", p, tc.claims)
			}
		})
	}
}

var (
	// aclVan1 is device van-1 of user ann.
	aclVan1 = &principal{sub: "van-1", owner: "ann", rights: rightDevice}
	// aclOrphan is a device whose token has no owner claim.
	aclOrphan = &principal{sub: "van-1", rights: rightDevice}
	aclIngest = &principal{sub: "svc:cloud", rights: rightIngest}
	aclOp     = &principal{sub: "svc:ops", rights: rightOperator}
	aclBridge = &principal{sub: "svc:firmware-bridge", rights: rightBridge}
	aclLive   = &principal{sub: "usr:ann", rights: rightLive, devices: []string{"van-1"}}
	// aclGateway is ann's gateway, for her devices van-1 and van-2.
	aclGateway = &principal{sub: "usr:ann", rights: rightGateway, devices: []string{"van-1", "van-2"}}
)

func TestMayPublish(t *testing.T) {
	for _, tc := range []struct {
		p     *principal
		topic string
		want  bool
	}{
		{aclVan1, "devices/van-1/positions", true},
		{aclVan1, "devices/van-1/status", true},
		{aclVan1, "devices/van-1/session", true},
		{aclVan1, "devices/van-1/commands", false},
		{aclVan1, "devices/van-1/other", false},
		{aclVan1, "devices/van-1/positions/x", false},
		{aclVan1, "devices/van-1", false},
		{aclVan1, "devices/VAN-1/positions", false},
		{aclVan1, "devices/van-2/positions", false},
		{aclVan1, "devices/van-10/positions", false},
		{aclVan1, "devices/+/positions", false},
		{aclVan1, "devices/#", false},
		{aclVan1, "#", false},
		{aclVan1, "", false},
		{aclVan1, "/devices/van-1/positions", false},
		{aclVan1, "$SYS/broker", false},
		{aclVan1, "owntracks/van-1/phone", true},
		{aclVan1, "owntracks/VAN-1/Phone", true},
		{aclVan1, "owntracks/van-1/phone/event", true},
		{aclVan1, "owntracks/van-1/phone/waypoint", true},
		{aclVan1, "owntracks/van-1/phone/step", true},
		{aclVan1, "owntracks/ann/van-1", true},
		{aclVan1, "owntracks/ANN/Van-1", true},
		{aclVan1, "owntracks/ann/van-1/event", true},
		{aclVan1, "owntracks/ann/van-2", false},
		{aclVan1, "owntracks/ann/phone", false},
		{aclVan1, "owntracks/bob/van-1", false},
		{aclVan1, "owntracks/van-2/phone", false},
		{aclVan1, "owntracks/van-1", false},
		{aclVan1, "owntracks/van-1/", false},
		{aclVan1, "owntracks/van-1/phone/", false},
		{aclVan1, "owntracks/van-1//event", false},
		{aclVan1, "owntracks//van-1", false},
		{aclVan1, "owntracks/van-1/phone/event/x", false},
		{aclVan1, "owntracks/van-1/+", false},
		{aclVan1, "owntracks/van-1/#", false},
		{aclVan1, "owntracks/+/van-1", false},
		{aclVan1, "owntracks/van-1/phone/+", false},
		{aclVan1, "owntracks/van-1/ph+ne", false},
		{aclVan1, "owntracks/van-1/phone/#", false},
		{aclVan1, "OwnTracks/van-1/phone", false},
		{aclOrphan, "owntracks/van-1/phone", true},
		{aclOrphan, "owntracks/ann/van-1", false},
		{aclOrphan, "owntracks//van-1", false},
		{aclIngest, "devices/van-1/commands", true},
		{aclIngest, "devices/+/commands", false},
		{aclIngest, "devices/van-1/positions", false},
		{aclIngest, "owntracks/svc:cloud/x", false},
		{aclIngest, "#", false},
		{aclBridge, "devices/van-1/positions", true},
		{aclBridge, "devices/van-2/status", true},
		{aclBridge, "devices/van-1/session", false},
		{aclBridge, "devices/van-1/commands", false},
		{aclBridge, "devices/+/positions", false},
		{aclBridge, "owntracks/ann/van-1", false},
		{aclBridge, "$SYS/broker", false},
		{aclOp, "devices/van-1/positions", true},
		{aclOp, "anything/at/all", true},
		{aclOp, "$SYS/broker/clients", false},
		{aclOp, "", false},
		{aclLive, "devices/van-1/positions", false},
		{aclLive, "devices/van-1/commands", false},
		{aclGateway, "devices/van-1/positions", true},
		{aclGateway, "devices/van-1/status", true},
		{aclGateway, "devices/van-1/session", true},
		{aclGateway, "devices/van-2/positions", true},
		{aclGateway, "devices/van-3/positions", false},
		{aclGateway, "devices/VAN-1/positions", false},
		{aclGateway, "devices/van-10/positions", false},
		{aclGateway, "devices/usr:ann/positions", false},
		{aclGateway, "devices/van-1/commands", false},
		{aclGateway, "devices/van-1/other", false},
		{aclGateway, "devices/van-1/positions/x", false},
		{aclGateway, "devices/+/positions", false},
		{aclGateway, "devices/#", false},
		{aclGateway, "#", false},
		{aclGateway, "owntracks/ann/van-1", false},
		{aclGateway, "owntracks/usr:ann/van-1", false},
		{aclGateway, "$SYS/broker", false},
		{aclGateway, "trackgate/revocations", false},
		{aclGateway, "", false},
	} {
		if got := tc.p.mayPublish(tc.topic); got != tc.want {
			t.Errorf("%s (%04b) mayPublish(%q) = %v, want %v", tc.p.sub, tc.p.rights, tc.topic, got, tc.want)
		}
	}
}

func TestMaySubscribe(t *testing.T) {
	for _, tc := range []struct {
		p      *principal
		filter string
		want   bool
	}{
		{aclVan1, "devices/van-1/commands", true},
		{aclVan1, "devices/van-1/positions", false},
		{aclVan1, "devices/van-2/commands", false},
		{aclVan1, "devices/+/commands", false},
		{aclVan1, "devices/van-1/#", false},
		{aclVan1, "devices/van-1/+", false},
		{aclVan1, "#", false},
		{aclVan1, "+/+/+", false},
		{aclVan1, "owntracks/van-1/phone/cmd", true},
		{aclVan1, "owntracks/ann/van-1/cmd", true},
		{aclVan1, "owntracks/van-1/phone", false},
		{aclVan1, "owntracks/van-1/phone/event", false},
		{aclVan1, "owntracks/+/+/cmd", false},
		{aclVan1, "owntracks/van-1/+/cmd", false},
		{aclVan1, "owntracks/+/+", false},
		{aclVan1, "owntracks/#", false},
		{aclVan1, "$share/g/devices/van-1/commands", false},
		{aclIngest, "devices/+/positions", true},
		{aclIngest, "devices/+/status", true},
		{aclIngest, "devices/+/session", true},
		{aclIngest, "devices/van-1/positions", true},
		{aclIngest, "$share/cloud/devices/+/positions", true},
		{aclIngest, "$share/cloud/devices/van-1/status", true},
		{aclIngest, "devices/+/commands", false},
		{aclIngest, "devices/+/+", false},
		{aclIngest, "devices/#", false},
		{aclIngest, "devices/+/positions/#", false},
		{aclIngest, "devices/+/positions/x", false},
		{aclIngest, "devices/#/positions", false},
		{aclIngest, "devices/a+b/positions", false},
		{aclIngest, "devices//positions", false},
		{aclIngest, "#", false},
		{aclIngest, "$share//devices/+/positions", false},
		{aclIngest, "$share/+/devices/+/positions", false},
		{aclIngest, "$share/#/devices/+/positions", false},
		{aclIngest, "$share/cloud", false},
		{aclIngest, "$share/cloud/#", false},
		{aclIngest, "$share/a/$share/b/devices/+/positions", false},
		{aclIngest, "owntracks/+/+", false},
		{aclIngest, "$SYS/#", false},
		{aclLive, "devices/van-1/positions", true},
		{aclLive, "devices/van-1/status", true},
		{aclLive, "devices/van-1/session", false},
		{aclLive, "devices/van-1/commands", false},
		{aclLive, "devices/van-2/positions", false},
		{aclLive, "devices/+/positions", false},
		{aclLive, "#", false},
		{aclGateway, "devices/van-1/positions", false},
		{aclGateway, "devices/van-1/status", false},
		{aclGateway, "devices/van-1/session", false},
		{aclGateway, "devices/van-1/commands", false},
		{aclGateway, "devices/+/positions", false},
		{aclGateway, "owntracks/ann/van-1/cmd", false},
		{aclGateway, "#", false},
		{aclOp, "#", true},
		{aclOp, "$SYS/#", true},
	} {
		if got := tc.p.maySubscribe(tc.filter); got != tc.want {
			t.Errorf("%s (%04b) maySubscribe(%q) = %v, want %v", tc.p.sub, tc.p.rights, tc.filter, got, tc.want)
		}
	}
}

func TestClientIDBound(t *testing.T) {
	for _, tc := range []struct {
		id, sub string
		want    bool
	}{
		{"van-1", "van-1", true},
		{"van-1/", "van-1", true},
		{"van-1/tab-2", "van-1", true},
		{"svc:cloud/ingest", "svc:cloud", true},
		{"usr:ann/4f1c", "usr:ann", true},
		{"van-10", "van-1", false},
		{"van-1x", "van-1", false},
		{"VAN-1", "van-1", false},
		{"van", "van-1", false},
		{"", "van-1", false},
		{"x/van-1", "van-1", false},
		{"svc:cloudy", "svc:cloud", false},
		{"svc:cloud-ingest", "svc:cloud", false},
	} {
		if got := clientIDBound(tc.id, tc.sub); got != tc.want {
			t.Errorf("clientIDBound(%q, %q) = %v, want %v", tc.id, tc.sub, got, tc.want)
		}
	}
}

func TestIngestFilter(t *testing.T) {
	for _, tc := range []struct {
		f    string
		want bool
	}{
		{"devices/+/positions", true},
		{"devices/+/status", true},
		{"devices/+/session", true},
		{"devices/dev-1/positions", true},
		{"$share/cloud/devices/+/positions", true},
		{"$share/g-1/devices/dev-1/session", true},
		{"devices/+/commands", false},
		{"devices/+/#", false},
		{"devices/+", false},
		{"devices/", false},
		{"devices", false},
		{"devices/++/positions", false},
		{"devices/+/positions/", false},
		{"$share/devices/+/positions", false},
		{"$share/cloud/", false},
		{"$share/", false},
		{"$share/c+/devices/+/positions", false},
		{"$queue/devices/+/positions", false},
		{"", false},
	} {
		if got := ingestFilter(tc.f); got != tc.want {
			t.Errorf("ingestFilter(%q) = %v, want %v", tc.f, got, tc.want)
		}
	}
}

func TestOwnTracksTopic(t *testing.T) {
	for _, tc := range []struct {
		p     *principal
		topic string
		level string
		ok    bool
	}{
		{aclVan1, "owntracks/van-1/phone", "", true},
		{aclVan1, "owntracks/van-1/phone/event", "event", true},
		{aclVan1, "owntracks/van-1/phone/cmd", "cmd", true},
		{aclVan1, "owntracks/Van-1/iPhone/Step", "Step", true},
		{aclVan1, "owntracks/ann/van-1", "", true},
		{aclVan1, "owntracks/Ann/VAN-1/waypoint", "waypoint", true},
		{aclVan1, "owntracks/ann/van-2", "", false},
		{aclVan1, "owntracks/bob/van-1", "", false},
		{aclVan1, "owntracks/van-1", "", false},
		{aclVan1, "owntracks/", "", false},
		{aclVan1, "owntracks", "", false},
		{aclVan1, "owntracks/van-1/phone/a/b", "", false},
		{aclVan1, "owntracks/van-1//x", "", false},
		{aclVan1, "owntracks/van-1/phone/", "", false},
		{aclVan1, "owntracks//phone", "", false},
		{aclVan1, "owntracks/van-1/+", "", false},
		{aclVan1, "owntracks/van-1/phone/#", "", false},
		{aclVan1, "owntracks/+/van-1", "", false},
		{aclVan1, "xowntracks/van-1/phone", "", false},
		{aclVan1, "devices/van-1/positions", "", false},
		{aclOrphan, "owntracks/van-1/phone", "", true},
		{aclOrphan, "owntracks/ann/van-1", "", false},
		// A subject and an owner that are the same name: the device's own
		// user part, not someone else's.
		{&principal{sub: "ann", owner: "ann", rights: rightDevice}, "owntracks/ann/ann", "", true},
	} {
		level, ok := tc.p.ownTracks(tc.topic)
		if level != tc.level || ok != tc.ok {
			t.Errorf("%s ownTracks(%q) = %q, %v; want %q, %v", tc.p.sub, tc.topic, level, ok, tc.level, tc.ok)
		}
	}
}

// FuzzACLTopics: whatever the topic, the ACL does not panic, a device only
// publishes its own topics (never a wildcard, never another device's) and
// subscribes only its command topics, and a non-operator never subscribes
// to everything.
func FuzzACLTopics(f *testing.F) {
	for _, s := range []string{
		"devices/van-1/positions", "devices/van-1/status", "devices/van-1/session", "devices/van-1/commands",
		"devices/van-2/positions", "devices/+/positions", "#", "+", "", "/", "//",
		"owntracks/van-1/phone", "owntracks/ann/van-1", "owntracks/ANN/VAN-1/event", "owntracks/van-1/phone/cmd",
		"owntracks/van-1/+", "owntracks/+/van-1", "owntracks/van-1//x", "owntracks/van-1/phone/a/b",
		"$share/cloud/devices/+/positions", "$share//devices/+/status", "$SYS/#", "van-1", "van-1/x", "van-10",
		"devices/van-1/positions\x00", "owntracks/van-1/ph\u00f6ne", "owntracks/ſvc/van-1",
	} {
		f.Add(s)
	}
	devicePublish := func(t string) bool {
		if strings.ContainsAny(t, "+#") {
			return false
		}
		switch t {
		case "devices/van-1/positions", "devices/van-1/status", "devices/van-1/session":
			return true
		}
		parts := strings.Split(t, "/")
		if parts[0] != "owntracks" || len(parts) < 3 || len(parts) > 4 || slices.Contains(parts, "") {
			return false
		}
		return strings.EqualFold(parts[1], "van-1") || (strings.EqualFold(parts[1], "ann") && strings.EqualFold(parts[2], "van-1"))
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range []*principal{aclVan1, aclOrphan, aclIngest, aclLive, aclGateway, aclOp} {
			pub, sub := p.mayPublish(s), p.maySubscribe(s)
			p.ownTracks(s)
			if p.rights&rightOperator != 0 {
				continue
			}
			if sub && (s == "#" || strings.HasPrefix(s, "#") || strings.HasPrefix(s, "$SYS")) {
				t.Fatalf("%s may subscribe %q", p.sub, s)
			}
			if pub && strings.ContainsAny(s, "+#") {
				t.Fatalf("%s may publish to the wildcard topic %q", p.sub, s)
			}
			if p.rights&rightDevice != 0 {
				if pub && !devicePublish(s) {
					t.Fatalf("device %s (owner %q) may publish %q", p.sub, p.owner, s)
				}
				if pub && strings.HasPrefix(s, "owntracks/") && p.owner == "" && !strings.EqualFold(strings.Split(s, "/")[1], p.sub) {
					t.Fatalf("device %s without an owner may publish %q", p.sub, s)
				}
				if sub && s != "devices/van-1/commands" && !(strings.HasPrefix(s, "owntracks/") && strings.HasSuffix(s, "/cmd") && !strings.ContainsAny(s, "+#")) {
					t.Fatalf("device %s may subscribe %q", p.sub, s)
				}
			}
			if p.rights&rightIngest != 0 {
				if pub && (!strings.HasPrefix(s, "devices/") || !strings.HasSuffix(s, "/commands")) {
					t.Fatalf("ingest may publish %q", s)
				}
				if sub && strings.HasSuffix(s, "/commands") {
					t.Fatalf("ingest may subscribe %q", s)
				}
			}
			if p.rights&rightGateway != 0 {
				if pub && !slices.Contains([]string{"devices/van-1/positions", "devices/van-1/status", "devices/van-1/session",
					"devices/van-2/positions", "devices/van-2/status", "devices/van-2/session"}, s) {
					t.Fatalf("gateway may publish %q", s)
				}
				if sub {
					t.Fatalf("gateway may subscribe %q", s)
				}
			}
			if p.rights&rightLive != 0 {
				if pub {
					t.Fatalf("live may publish %q", s)
				}
				if sub && s != "devices/van-1/positions" && s != "devices/van-1/status" {
					t.Fatalf("live may subscribe %q", s)
				}
			}
		}
		ingestFilter(s)
		if clientIDBound(s, "van-1") && s != "van-1" && !strings.HasPrefix(s, "van-1/") {
			t.Fatalf("client id %q bound to van-1", s)
		}
	})
}

var aclNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func TestCheckPayload(t *testing.T) {
	good := `{"time":"2026-11-21T10:00:00.1Z","lat":52.37,"lon":4.89,"alt":12.3,"speed":1.2,"course":270,"hdop":0.9,"sats":9,"fix":"3d","acc":4.5,"batt":87}`
	for _, tc := range []struct {
		name, topic, payload string
		out                  string // the payload forwarded; "=" for the same bytes
		kind, reason         string // of the error; empty for none
		detail               string // a substring of its detail
	}{
		{"position", "devices/van-1/positions", good, "=", "", "", ""},
		{"batch", "devices/van-1/positions", "[" + good + "," + good + "]", "=", "", "", ""},
		{"empty batch", "devices/van-1/positions", "[]", "=", "", "", ""},
		{"not JSON", "devices/van-1/positions", "hello", "", "positions", "syntax", "syntax"},
		{"empty", "devices/van-1/positions", "", "", "positions", "syntax", ""},
		{"lat out of range", "devices/van-1/positions", `{"time":"2026-11-21T10:00:00Z","lat":91,"lon":4.89}`, "", "positions", "range", "lat"},
		{"missing time", "devices/van-1/positions", `{"lat":1,"lon":4.89}`, "", "positions", "missing", "time"},
		{"future", "devices/van-1/positions", `{"time":"2026-11-21T10:06:00Z","lat":1,"lon":4.89}`, "", "positions", "future", "time"},
		{"past", "devices/van-1/positions", `{"time":"1999-12-31T23:59:59Z","lat":1,"lon":4.89}`, "", "positions", "past", "time"},
		{"type", "devices/van-1/positions", `{"time":"2026-11-21T10:00:00Z","lat":"1","lon":4.89}`, "", "positions", "type", "lat"},
		{"too large", "devices/van-1/positions", `{"time":"2026-11-21T10:00:00Z","lat":1,"lon":2,"x":"` + strings.Repeat("x", position.MaxPayload) + `"}`, "", "positions", "too_large", ""},
		{"batch, all bad", "devices/van-1/positions", `[{"lat":1},{"lat":2}]`, "", "positions", "missing", "[0]"},
		{"mixed batch", "devices/van-1/positions",
			`[{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2},{"time":"2026-11-21T09:00:01Z","lat":-91,"lon":2},{"time":"2026-11-21T09:00:02Z","lat":3,"lon":4,"speed":1.5}]`,
			`[{"time":"2026-11-21T09:00:00Z","lat":1,"lon":2},{"time":"2026-11-21T09:00:02Z","lat":3,"lon":4,"speed":1.5}]`,
			"positions", "range", "other positions of the batch were accepted"},
		{"session start", "devices/van-1/session", `{"action":"start","name":"Morning run"}`, "=", "", "", ""},
		{"session stop", "devices/van-1/session", `{"action":"stop"}`, "=", "", "", ""},
		{"session bad action", "devices/van-1/session", `{"action":"pause"}`, "", "session", "invalid", "action"},
		{"session not JSON", "devices/van-1/session", `start`, "", "session", "invalid", "want"},
		{"status", "devices/van-1/status", `{"state":"online","time":"2026-11-21T10:00:00Z"}`, "=", "", "", ""},
		{"status after white space", "devices/van-1/status", " \n{}", "=", "", "", ""},
		{"status array", "devices/van-1/status", `["online"]`, "", "status", "invalid", "JSON object"},
		{"status string", "devices/van-1/status", `"online"`, "", "status", "invalid", "JSON object"},
		{"status not JSON", "devices/van-1/status", `online`, "", "status", "invalid", "JSON object"},
		{"status empty", "devices/van-1/status", ``, "", "status", "invalid", "JSON object"},
		{"status too large", "devices/van-1/status", `{"x":"` + strings.Repeat("x", maxStatusPayload) + `"}`, "", "status", "invalid", "16 KiB"},
		{"commands are not checked", "devices/van-1/commands", `anything`, "=", "", "", ""},
		{"other kinds are not checked", "devices/van-1/other", `anything`, "=", "", "", ""},
		{"not a device topic", "owntracks/van-1/phone", `{"_type":"encrypted"}`, "=", "", "", ""},
		{"a device topic with a bad id", "devices/+/positions", `nonsense`, "=", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, perr := checkPayload(tc.topic, []byte(tc.payload), aclNow)
			switch tc.out {
			case "=":
				if string(out) != tc.payload {
					t.Errorf("forwarded %q, want the payload unchanged", out)
				}
			case "":
				if out != nil {
					t.Errorf("forwarded %q, want nothing", out)
				}
			default:
				if string(out) != tc.out {
					t.Errorf("forwarded %s, want %s", out, tc.out)
				}
			}
			if tc.kind == "" {
				if perr != nil {
					t.Fatalf("error %v, want none", perr)
				}
				return
			}
			if perr == nil {
				t.Fatalf("no error, want %s/%s", tc.kind, tc.reason)
			}
			if perr.kind != tc.kind || perr.reason != tc.reason || !strings.Contains(perr.detail, tc.detail) || perr.detail == "" {
				t.Errorf("error %s/%s %q, want %s/%s containing %q", perr.kind, perr.reason, perr.detail, tc.kind, tc.reason, tc.detail)
			}
			if !strings.HasPrefix(perr.Error(), tc.kind+": ") {
				t.Errorf("Error() = %q", perr.Error())
			}
		})
	}
}

func TestCheckSession(t *testing.T) {
	for _, tc := range []struct {
		payload string
		err     string // a substring; empty for valid
	}{
		{`{"action":"start","name":"Morning run"}`, ""},
		{`{"action":"start"}`, ""},
		{`{"action":"stop"}`, ""},
		{`{"action":"stop","name":"ignored"}`, ""},
		{`{"action":"start","name":"` + strings.Repeat("n", maxSessionName) + `"}`, ""},
		{`{"action":"start","name":"` + strings.Repeat("n", maxSessionName+1) + `"}`, "longer than 200"},
		{`{"action":"start","name":"x","pad":"` + strings.Repeat("p", maxSessionPayload) + `"}`, "at most 4 KiB"},
		{`{"action":"pause"}`, `"start" or "stop"`},
		{`{"action":"START"}`, `"start" or "stop"`},
		{`{"action":""}`, `"start" or "stop"`},
		{`{}`, `"start" or "stop"`},
		{`null`, `"start" or "stop"`},
		{`{"action":"start","name":5}`, "want"},
		{`{"action":1}`, "want"},
		{`[]`, "want"},
		{`start`, "want"},
		{``, "want"},
	} {
		err := checkSession([]byte(tc.payload))
		short := tc.payload
		if len(short) > 60 {
			short = short[:60] + "…"
		}
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("checkSession(%s) = %v, want nil", short, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("checkSession(%s) = %v, want an error containing %q", short, err, tc.err)
		}
	}
}
