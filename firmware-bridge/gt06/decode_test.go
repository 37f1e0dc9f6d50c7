package gt06

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"trackgate/internal/position"
)

// now is later than every capture, for Validate.
var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// gpsFields are the fields Decode fills from GPS information.
const gpsFields = position.FieldTime | position.FieldLat | position.FieldLon | position.FieldSpeed |
	position.FieldCourse | position.FieldSats | position.FieldFix

// The zones the login captures declare.
var (
	east8 = time.FixedZone("UTC+08:00", 8*60*60)
	west4 = time.FixedZone("UTC-04:00", -4*60*60)
)

// gps returns the position of GPS information with these values, at a time in UTC.
func gps(t time.Time, lat, lon, speed, course float64, sats int, valid bool) *position.Position {
	fix := position.FixNone
	if valid {
		fix = position.Fix2D
	}
	return &position.Position{Time: t, Lat: lat, Lon: lon, Speed: speed, Course: course, Sats: sats, Fix: fix, Set: gpsFields}
}

// withBatt returns p with its battery level set.
func withBatt(p *position.Position, batt float64) *position.Position {
	p.Batt = batt
	p.Set |= position.FieldBatt
	return p
}

// utc returns the time in UTC.
func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// The battery levels of voltage levels 4 and 6.
const (
	level4 = 66.66666666666667
	level6 = 100
)

// decodeCase is one frame and what Decode makes of it.
type decodeCase struct {
	name  string
	hex   string         // the frame, or the name of a testdata file holding it
	loc   *time.Location // the device's time zone, nil for UTC
	want  Packet
	err   error  // the sentinel the error wraps
	field string // the field the error names, "" when Decode succeeds
}

// decodeCases are real captures, and mutations of them for the errors. Each
// names its source.
var decodeCases = []decodeCase{
	// GT06 protocol manual, login packet example (§5.1.3).
	{name: "login", hex: "78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A",
		want: Packet{Protocol: 0x01, Serial: 1, IMEI: "123456789012345"}},
	// A device's login, from the server log in traccar issue #3236.
	{name: "login of a device", hex: "78780d010358735070530281007718630d0a",
		want: Packet{Protocol: 0x01, Serial: 0x77, IMEI: "358735070530281"}},
	// Concox GPS Tracker Communication Protocol V3.1 (JM-VL02 … HVT001), §1.1 example: model 0x7000, zone 0x3201 (GMT+8, Chinese).
	{name: "login with time zone GMT+8", hex: "78 78 11 01 07 52 53 36 78 90 02 42 70 00 32 01 00 05 12 79 0D 0A",
		want: Packet{Protocol: 0x01, Serial: 5, IMEI: "752533678900242", Zone: east8}},
	// traccar Gt06ProtocolDecoderTest: zone 0x190A (GMT-4, English).
	{name: "login with time zone GMT-4", hex: "787811010864717003664467100f190a0002c6d20d0a",
		want: Packet{Protocol: 0x01, Serial: 2, IMEI: "864717003664467", Zone: west4}},
	// traccar Gt06ProtocolDecoderTest: zone 0x0000 (GMT+0).
	{name: "login with time zone GMT", hex: "787811010863586038760942a0010000010aa4000d0a",
		want: Packet{Protocol: 0x01, Serial: 0x010A, IMEI: "863586038760942", Zone: time.UTC}},

	// Concox protocol V3.1 §2.1 example: voltage level 4 (medium).
	{name: "heartbeat with battery", hex: "78 78 0A 13 40 04 04 00 01 00 0F DC EE 0D 0A",
		want: Packet{Protocol: 0x13, Serial: 0x0F, Batt: level4, HasBatt: true}},
	// A device's heartbeat, from the server log in traccar issue #3236: voltage level 6 (full).
	{name: "heartbeat of a device", hex: "78780a13050604000200780b410d0a",
		want: Packet{Protocol: 0x13, Serial: 0x78, Batt: level6, HasBatt: true}},
	// traccar Gt06ProtocolDecoderTest: a model whose status packet is longer and has 0x80 where the voltage level is.
	{name: "heartbeat without a voltage level", hex: "7878151330802b00000642014f0008720000802b5ee4d4c90d0a",
		want: Packet{Protocol: 0x13, Serial: 0x5EE4}},
	// Concox protocol V3.1 §2.1 EG02/EG03 heartbeat example: external voltage, no battery level.
	{name: "heartbeat 0x23", hex: "78 78 0B 23 05 0F 92 04 00 02 00 08 8A 37 0D 0A",
		want: Packet{Protocol: 0x23, Serial: 8}},

	// GT06 protocol manual, GPS+LBS packet example.
	{name: "GPS+LBS 0x12", hex: "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 00 03 80 81 0D 0A",
		want: Packet{Protocol: 0x12, Serial: 3, Valid: true,
			Position: gps(utc(2011, 8, 29, 17, 46, 16), 23.111668333333334, 114.409285, 0, 143, 15, true)}},
	// The same in the zone the login above declares.
	{name: "GPS+LBS 0x12 at GMT+8", loc: east8, hex: "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 00 03 80 81 0D 0A",
		want: Packet{Protocol: 0x12, Serial: 3, Valid: true,
			Position: gps(utc(2011, 8, 29, 9, 46, 16), 23.111668333333334, 114.409285, 0, 143, 15, true)}},
	// A device in Tunisia, traccar issue #3515: 17 km/h.
	{name: "GPS+LBS 0x12 of a device", hex: "78781f12110808111424c603f3f0c80118570611d54f025d030471003afe000d96e30d0a",
		want: Packet{Protocol: 0x12, Serial: 0x0D, Valid: true,
			Position: gps(utc(2017, 8, 8, 17, 20, 36), 36.84363111111111, 10.206865555555556, 4.722222222222222, 335, 6, true)}},
	// traccar Gt06ProtocolDecoderTest, which publishes its decoding: 2015-10-20 14:21:11, 54.94535, 24.01762.
	{name: "GPS+LBS 0x12 decoded elsewhere", hex: "78781f120f0a140e150bc505e51e780293a9e800540000f601006e0055da00035f240d0a",
		want: Packet{Protocol: 0x12, Serial: 3, Valid: true,
			Position: gps(utc(2015, 10, 20, 14, 21, 11), 54.945346666666666, 24.017622222222222, 0, 0, 5, true)}},
	// traccar Gt06ProtocolDecoderTest: four more bytes (mileage) after the LBS information.
	{name: "GPS+LBS 0x12 with mileage", hex: "787823120f081b121d37cb01c8e2cc08afd3c020d50201940701d600a1190041ee100576d1470d0a",
		want: Packet{Protocol: 0x12, Serial: 0x0576, Valid: true,
			Position: gps(utc(2015, 8, 27, 18, 29, 55), 16.634708888888888, 80.96707555555555, 8.88888888888889, 258, 11, true)}},
	// Concox protocol V3.1 §3.1 example.
	{name: "GPS+LBS 0x22", hex: "78 78 22 22 0F 0C 1D 02 33 05 C9 02 7A C8 18 0C 46 58 60 00 14 00 01 CC 00 28 7D 00 1F 71 00 00 01 00 08 20 86 0D 0A",
		want: Packet{Protocol: 0x22, Serial: 8, Valid: true,
			Position: gps(utc(2015, 12, 29, 2, 51, 5), 23.111693333333335, 114.40929777777778, 0, 0, 9, true)}},
	// traccar Gt06ProtocolDecoderTest: a device in Brazil (MCC 724), south latitude, west longitude.
	{name: "GPS+LBS 0x22 south and west", hex: "787822220e0914160f07c9021a362805090a7800d8b802d402c30e00a98a0105010213f4bb0d0a",
		want: Packet{Protocol: 0x22, Serial: 0x0213, Valid: true,
			Position: gps(utc(2014, 9, 20, 22, 15, 7), -19.595684444444444, -46.93254666666667, 0, 184, 9, true)}},
	// traccar Gt06ProtocolDecoderTest: not positioned, no satellites.
	{name: "GPS+LBS 0x22 without a fix", hex: "78782322110c070f1b0270000000000000000000040081360104cb8a00bef3000000000523030d0a",
		want: Packet{Protocol: 0x22, Serial: 5,
			Position: gps(utc(2017, 12, 7, 15, 27, 2), 0, 0, 0, 0, 0, false)}},
	// traccar Gt06ProtocolDecoderTest: a device near Buenos Aires.
	{name: "GPS 0x10 south and west", hex: "787819100e010903230ec803ae32a60653cded00180000020072feb70d0a",
		want: Packet{Protocol: 0x10, Serial: 0x72, Valid: true,
			Position: gps(utc(2014, 1, 9, 3, 35, 14), -34.30437666666667, -58.975278333333335, 0, 0, 8, true)}},
	// traccar Gt06ProtocolDecoderTest: a device near Toronto (MCC 302), two-byte MNC and four-byte cell ID.
	{name: "GPS+LBS 0x11", hex: "78782111150b0b022c30c804b7af7808810cb0003c00012e02d075df0084890c000679950d0a",
		want: Packet{Protocol: 0x11, Serial: 6, Valid: true,
			Position: gps(utc(2021, 11, 11, 2, 44, 48), 43.970484444444445, -79.26395555555555, 0, 0, 8, true)}},

	// GT06 protocol manual, alarm packet example: SOS, voltage level 6.
	{name: "alarm 0x16", hex: "78 78 25 16 0B 0B 0F 0E 24 1D CF 02 7A C8 87 0C 46 57 E6 00 14 02 09 01 CC 00 28 7D 00 1F 72 65 06 04 01 01 00 36 56 A4 0D 0A",
		want: Packet{Protocol: 0x16, Serial: 0x36, Valid: true, Batt: level6, HasBatt: true,
			Position: withBatt(gps(utc(2011, 11, 15, 14, 36, 29), 23.111755, 114.40923, 0, 2, 15, true), level6)}},
	// traccar Gt06ProtocolDecoderTest: a device in Brazil, 7 km/h.
	{name: "alarm 0x16 south and west", hex: "7878251610051b0f1c34c5022515d504b5dcd20738080902d4022bdf009cba5006640201006759680d0a",
		want: Packet{Protocol: 0x16, Serial: 0x67, Valid: true, Batt: level6, HasBatt: true,
			Position: withBatt(gps(utc(2016, 5, 27, 15, 28, 52), -19.991585, -43.90411666666667, 1.9444444444444444, 8, 5, true), level6)}},
	// traccar Gt06ProtocolDecoderTest: a model with 0x55 where the voltage level is.
	{name: "alarm 0x16 without a voltage level", hex: "7878251613020C12141AC5027951430C2A16F60014000900000000001A00007C550300020002F1E70D0A",
		want: Packet{Protocol: 0x16, Serial: 2, Valid: true,
			Position: gps(utc(2019, 2, 12, 18, 20, 26), 23.05838388888889, 113.38054555555556, 0, 0, 5, true)}},
	// Concox protocol V3.1 §6.1 example: vibration alarm, GPS not positioned.
	{name: "alarm 0x26 without a fix", hex: "78 78 25 26 12 03 0C 06 38 16 C3 02 6C 10 54 0C 38 C9 70 01 44 03 09 01 CC 00 28 66 00 0E EE 0C 06 04 03 02 00 0D A2 DB 0D 0A",
		want: Packet{Protocol: 0x26, Serial: 0x0D, Batt: level6, HasBatt: true,
			Position: withBatt(gps(utc(2018, 3, 12, 6, 56, 22), 22.575833333333332, 113.91565333333334, 0.2777777777777778, 3, 3, false), level6)}},
	// traccar Gt06ProtocolDecoderTest: a device in New Jersey, LBS length 10 (two-byte MNC), geo-fence number.
	{name: "alarm 0x27", hex: "78782727110c0b0e170f850450059107f461ae001c7e0a81360104cb8a00bef32806030c02ff000316b10d0a",
		want: Packet{Protocol: 0x27, Serial: 3, Valid: true, Batt: level6, HasBatt: true,
			Position: withBatt(gps(utc(2017, 12, 11, 14, 23, 15), 40.196205, -74.14239, 0, 126, 5, true), level6)}},
	// Concox protocol V3.1 §7.1 example: voltage level 4.
	{name: "LBS alarm 0x19", hex: "78 78 12 19 01 CC 00 28 7D 00 1F 71 20 04 04 01 01 00 94 6C 89 0D 0A",
		want: Packet{Protocol: 0x19, Serial: 0x94, Batt: level4, HasBatt: true}},

	// Concox protocol V3.1 §9.1 example.
	{name: "time request", hex: "78 78 05 8A 00 06 88 29 0D 0A",
		want: Packet{Protocol: 0x8A, Serial: 6}},
	// Concox protocol V3.1 §10.1 example, 133 bytes.
	{name: "information 0x94, long frame", hex: "testdata/concox-v3.1-information-0x94.hex",
		want: Packet{Long: true, Protocol: 0x94, Serial: 0x0A}},
	// traccar Gt06ProtocolDecoderTest: external device data with 0x0D0A inside the content.
	{name: "long frame with stop bits in its content", hex: "7979000E9B0332382E33A1E60D0A0289BE490D0A",
		want: Packet{Long: true, Protocol: 0x9B, Serial: 0x0289}},
	// traccar Gt06ProtocolDecoderTest: a protocol number this package does not know.
	{name: "unknown protocol", hex: "78780d1f000000000000000200b196a20d0a",
		want: Packet{Protocol: 0x1F, Serial: 0xB1}},

	// traccar Gt06ProtocolDecoderTest: the manual's GPS+LBS example with 0xCC for 0xCF and the error check unchanged.
	{name: "wrong CRC", hex: "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000380810D0A",
		err: ErrCRC, field: "error check"},
	// The heartbeat example with its stop bits damaged.
	{name: "no stop bits", hex: "78 78 0A 13 40 04 04 00 01 00 0F DC EE 0D 0B", err: ErrStop, field: "stop bits"},
	// The heartbeat example with a byte after it.
	{name: "bytes after the frame", hex: "78 78 0A 13 40 04 04 00 01 00 0F DC EE 0D 0A 00", err: ErrLength, field: "length"},
	// The heartbeat example with a length field one too large: the frame is one byte short.
	{name: "length says more", hex: "78 78 0B 13 40 04 04 00 01 00 0F DC EE 0D 0A", err: ErrShort, field: "frame"},
	{name: "length too small", hex: "78 78 04 13 00 0F 0D 0A", err: ErrLength, field: "length"},
	{name: "half a frame", hex: "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C", err: ErrShort, field: "frame"},
	{name: "start bits only", hex: "78 78", err: ErrShort, field: "frame"},
	{name: "empty", hex: "", err: ErrShort, field: "frame"},
	{name: "not start bits", hex: hex.EncodeToString([]byte("GET / HTTP/1.1\r\n")), err: ErrStart, field: "start bits"},
	{name: "mixed start bits", hex: "78 79 05 01 00 01 D9 DC 0D 0A", err: ErrStart, field: "start bits"},

	// The manual's GPS+LBS example with one field changed and the error check recomputed.
	{name: "latitude beyond 90", hex: "78781F120B081D112E10CF0A0000000C46584900148F01CC00287D001FB8000332610D0A",
		want: Packet{Protocol: 0x12, Serial: 3}, field: "latitude"},
	{name: "longitude beyond 180", hex: "78781F120B081D112E10CF027AC7EB1400000000148F01CC00287D001FB80003188B0D0A",
		want: Packet{Protocol: 0x12, Serial: 3}, field: "longitude"},
	{name: "course 1023", hex: "78781F120B081D112E10CF027AC7EB0C4658490017FF01CC00287D001FB8000359A50D0A",
		want: Packet{Protocol: 0x12, Serial: 3}, field: "course"},
	{name: "month 13", hex: "78781F120B0D1D112E10CF027AC7EB0C46584900148F01CC00287D001FB8000393F80D0A",
		want: Packet{Protocol: 0x12, Serial: 3}, field: "date time"},
	{name: "February 30", hex: "78781F120B021E112E10CF027AC7EB0C46584900148F01CC00287D001FB80003F9920D0A",
		want: Packet{Protocol: 0x12, Serial: 3}, field: "date time"},
	{name: "GPS information cut short", hex: "78780F120B081D112E10CF027AC70003EEAC0D0A",
		want: Packet{Protocol: 0x12, Serial: 3}, err: ErrLength, field: "GPS information"},
	// The manual's alarm example without its status, the length and error check recomputed.
	{name: "alarm without status", hex: "787820160B0B0F0E241DCF027AC8870C4657E60014020901CC00287D001F72003635C90D0A",
		want: Packet{Protocol: 0x16, Serial: 0x36}, err: ErrLength, field: "voltage level"},
	{name: "status without voltage level", hex: "7878061340000FEC020D0A",
		want: Packet{Protocol: 0x13, Serial: 0x0F}, err: ErrLength, field: "voltage level"},
	// The manual's login example with one nibble changed and the error check recomputed.
	{name: "terminal ID of 16 digits", hex: "78780D01112345678901234500015E8F0D0A",
		want: Packet{Protocol: 0x01, Serial: 1}, field: "terminal ID"},
	{name: "terminal ID not decimal", hex: "78780D010A234567890123450001919D0D0A",
		want: Packet{Protocol: 0x01, Serial: 1}, field: "terminal ID"},
	// The V3.1 login example with the time zone changed and the error check recomputed.
	{name: "time zone 9:72", hex: "78781101075253367890024270003CC10005B6A10D0A",
		want: Packet{Protocol: 0x01, Serial: 5}, field: "time zone"},
	{name: "time zone 15:00", hex: "78781101075253367890024270005DC0000569220D0A",
		want: Packet{Protocol: 0x01, Serial: 5}, field: "time zone"},
}

// hexBytes returns the bytes of hexadecimal s, spaces allowed, or of the
// testdata file s names, where lines starting with # are comments.
func hexBytes(tb testing.TB, s string) []byte {
	tb.Helper()
	if strings.HasPrefix(s, "testdata/") {
		text, err := os.ReadFile(s)
		if err != nil {
			tb.Fatal(err)
		}
		var lines []string
		for line := range strings.Lines(string(text)) {
			if !strings.HasPrefix(line, "#") {
				lines = append(lines, line)
			}
		}
		s = strings.Join(lines, "")
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("%.20s…: %v", s, err)
	}
	return b
}

// diffPacket describes how got differs from want, comparing time zones by
// name and offset and times by instant and zone, or returns "".
func diffPacket(got, want Packet) string {
	var d []string
	if !sameZone(got.Zone, want.Zone) {
		d = append(d, fmt.Sprintf("Zone = %v, want %v", got.Zone, want.Zone))
	}
	switch gp, wp := got.Position, want.Position; {
	case (gp == nil) != (wp == nil):
		d = append(d, fmt.Sprintf("Position = %+v, want %+v", gp, wp))
	case gp != nil:
		if !gp.Time.Equal(wp.Time) || gp.Time.Location() != time.UTC {
			d = append(d, fmt.Sprintf("Position.Time = %v, want %v", gp.Time, wp.Time))
		}
		g, w := *gp, *wp
		g.Time, w.Time = time.Time{}, time.Time{}
		if g != w {
			d = append(d, fmt.Sprintf("Position = %+v, want %+v", g, w))
		}
	}
	got.Zone, got.Position, want.Zone, want.Position = nil, nil, nil, nil
	if got != want {
		d = append(d, fmt.Sprintf("Packet = %+v, want %+v", got, want))
	}
	return strings.Join(d, "; ")
}

// sameZone reports whether a and b are both nil or have the same name and offset.
func sameZone(a, b *time.Location) bool {
	if a == nil || b == nil {
		return a == b
	}
	_, ao := time.Unix(0, 0).In(a).Zone()
	_, bo := time.Unix(0, 0).In(b).Zone()
	return a.String() == b.String() && ao == bo
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(hexBytes(t, tc.hex), tc.loc)
			if d := diffPacket(got, tc.want); d != "" {
				t.Error(d)
			}
			if tc.field == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if got.Position != nil {
					if err := got.Position.Validate(now); err != nil {
						t.Errorf("position does not validate: %v", err)
					}
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T), want an *Error", err, err)
			}
			if e.Field != tc.field || e.Err != tc.err || (tc.want.Protocol != 0 && e.Protocol != tc.want.Protocol) {
				t.Errorf("error %+v, want field %q wrapping %v", e, tc.field, tc.err)
			}
			if tc.err != nil && !errors.Is(err, tc.err) {
				t.Errorf("errors.Is(%v, %v) is false", err, tc.err)
			}
		})
	}
}

// TestError checks the text of errors: the protocol, the field, what is wrong.
func TestError(t *testing.T) {
	for _, tc := range []struct{ hex, want string }{
		{"78781F120B081D112E10CF0A0000000C46584900148F01CC00287D001FB8000332610D0A",
			"gt06: protocol 0x12: latitude: 93.20675555555556° is beyond 90°"},
		{"78781F120B0D1D112E10CF027AC7EB0C46584900148F01CC00287D001FB8000393F80D0A",
			"gt06: protocol 0x12: date time: 2011-13-29 17:46:16 is not a date and time"},
		{"78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000380810D0A",
			"gt06: protocol 0x12: error check: 0x8081, CRC-ITU of the frame is 0x7377"},
		{hex.EncodeToString([]byte("GET / HTTP/1.1\r\n")),
			"gt06: start bits: 0x47 does not start 0x7878 or 0x7979"},
		{"78 79 05 01 00 01 D9 DC 0D 0A", "gt06: start bits: 0x7879 is not 0x7878 or 0x7979"},
		{"79 79 04 01 94", "gt06: length: 1025 makes a frame of 1031 bytes, more than 1024"},
		{"78781101075253367890024270003CC10005B6A10D0A",
			"gt06: protocol 0x01: time zone: 0x3CC1 is not a time zone offset (hours×100+minutes up to 14:00)"},
	} {
		if _, err := Decode(hexBytes(t, tc.hex), nil); err == nil || err.Error() != tc.want {
			t.Errorf("Decode(%s) error\n%v, want\n%s", tc.hex, err, tc.want)
		}
	}
}

// scanCases are streams of frames as a device sends them, some ending in
// a broken frame.
var scanCases = []struct {
	name   string
	frames []string // the frames the scanner yields
	tail   string   // what follows them
	err    error    // the sentinel the scanner stops with
}{
	{name: "a session", frames: []string{
		"78 78 11 01 07 52 53 36 78 90 02 42 70 00 32 01 00 05 12 79 0D 0A",
		"78 78 0A 13 40 04 04 00 01 00 0F DC EE 0D 0A",
		"78 78 22 22 0F 0C 1D 02 33 05 C9 02 7A C8 18 0C 46 58 60 00 14 00 01 CC 00 28 7D 00 1F 71 00 00 01 00 08 20 86 0D 0A",
		"7979000E9B0332382E33A1E60D0A0289BE490D0A",
		"78 78 25 26 12 03 0C 06 38 16 C3 02 6C 10 54 0C 38 C9 70 01 44 03 09 01 CC 00 28 66 00 0E EE 0C 06 04 03 02 00 0D A2 DB 0D 0A",
		"testdata/concox-v3.1-information-0x94.hex",
		"78 78 05 8A 00 06 88 29 0D 0A",
	}},
	{name: "nothing"},
	{name: "not start bits", frames: []string{"78780d010358735070530281007718630d0a"},
		tail: hex.EncodeToString([]byte("GET / HTTP/1.1\r\n")), err: ErrStart},
	{name: "one stray byte", frames: []string{"78780d010358735070530281007718630d0a"}, tail: "00 78 78", err: ErrStart},
	{name: "length too small", frames: []string{"78780d010358735070530281007718630d0a"}, tail: "78 78 04 13 00 0F 0D 0A", err: ErrLength},
	{name: "length over MaxFrame", frames: []string{"78780d010358735070530281007718630d0a"}, tail: "79 79 FF FF 94", err: ErrLength},
	{name: "length says more", frames: []string{"78780d010358735070530281007718630d0a"},
		tail: "78 78 0B 13 40 04 04 00 01 00 0F DC EE 0D 0A 78 78 05 8A 00 06 88 29 0D 0A", err: ErrStop},
	{name: "length says less", frames: []string{"78780d010358735070530281007718630d0a"},
		tail: "78 78 09 13 40 04 04 00 01 00 0F DC EE 0D 0A", err: ErrStop},
	{name: "wrong CRC", frames: []string{"78780d010358735070530281007718630d0a"},
		tail: "78781F120B081D112E10CC027AC7EB0C46584900148F01CC00287D001FB8000380810D0A", err: ErrCRC},
	{name: "half a frame at EOF", frames: []string{"78780d010358735070530281007718630d0a"},
		tail: "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C", err: ErrShort},
	{name: "half a long frame at EOF", frames: []string{"78780d010358735070530281007718630d0a"}, tail: "79 79 00", err: ErrShort},
	{name: "one start byte at EOF", tail: "78", err: ErrShort},
}

// readers deliver a stream in the pieces a network may cut it into.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"halves", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
	{"random pieces", func(r io.Reader) io.Reader { return &pieces{r: r, rng: rand.New(rand.NewPCG(1, 2))} }},
}

// pieces reads from r in pieces of 1 to 64 bytes.
type pieces struct {
	r   io.Reader
	rng *rand.Rand
}

func (p *pieces) Read(b []byte) (int, error) {
	if len(b) > 1 {
		b = b[:1+p.rng.IntN(min(len(b), 64))]
	}
	return p.r.Read(b)
}

// scan returns the frames a bufio.Scanner splitting r with ScanFrames
// yields, as the adapter sets one up, and the scanner's error.
func scan(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 256), MaxFrame)
	sc.Split(ScanFrames)
	var frames [][]byte
	for sc.Scan() {
		frames = append(frames, bytes.Clone(sc.Bytes()))
	}
	return frames, sc.Err()
}

func TestScanFrames(t *testing.T) {
	for _, tc := range scanCases {
		var stream []byte
		var want [][]byte
		for _, f := range tc.frames {
			want = append(want, hexBytes(t, f))
			stream = append(stream, want[len(want)-1]...)
		}
		stream = append(stream, hexBytes(t, tc.tail)...)
		for _, rd := range readers {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				got, err := scan(rd.wrap(bytes.NewReader(stream)))
				if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
					t.Errorf("error %v, want %v", err, tc.err)
				}
				if err != nil {
					if e := (*Error)(nil); !errors.As(err, &e) {
						t.Errorf("error %v (%T), want an *Error", err, err)
					}
				}
				if len(got) != len(want) {
					t.Fatalf("%d frames, want %d", len(got), len(want))
				}
				for i := range got {
					if !bytes.Equal(got[i], want[i]) {
						t.Errorf("frame %d = % X, want % X", i, got[i], want[i])
					}
				}
			})
		}
	}
}

// sealed returns a frame of protocol proto with content and serial, its
// length field and error check computed.
func sealed(long bool, proto byte, content []byte, serial uint16) []byte {
	length := 1 + len(content) + 4
	var f []byte
	if long {
		f = []byte{0x79, 0x79, byte(length >> 8), byte(length)}
	} else {
		f = []byte{0x78, 0x78, byte(length)}
	}
	f = append(f, proto)
	f = append(f, content...)
	f = append(f, byte(serial>>8), byte(serial))
	crc := CRC(f[2:])
	return append(f, byte(crc>>8), byte(crc), 0x0D, 0x0A)
}

// TestScanFramesMaxFrame scans a frame of MaxFrame bytes, the largest taken,
// and one a byte longer, through a scanner whose buffer may grow to MaxFrame.
func TestScanFramesMaxFrame(t *testing.T) {
	content := bytes.Repeat([]byte{'A'}, MaxFrame-11)
	largest := sealed(true, 0x94, content, 1)
	if len(largest) != MaxFrame {
		t.Fatalf("frame of %d bytes", len(largest))
	}
	for _, rd := range readers {
		got, err := scan(rd.wrap(bytes.NewReader(largest)))
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], largest) {
			t.Errorf("%s: %d frames, error %v", rd.name, len(got), err)
		}
		got, err = scan(rd.wrap(bytes.NewReader(sealed(true, 0x94, append(content, 'A'), 1))))
		if !errors.Is(err, ErrLength) || len(got) != 0 {
			t.Errorf("%s: one byte over: %d frames, error %v, want %v", rd.name, len(got), err, ErrLength)
		}
	}
}

// responseCases are the documented answers of the server.
var responseCases = []struct {
	name string
	p    Packet
	now  time.Time
	want string
}{
	// GT06 protocol manual, login response example.
	{"login", Packet{Protocol: 0x01, Serial: 1}, now, "78 78 05 01 00 01 D9 DC 0D 0A"},
	// Concox protocol V3.1 §1.2 example.
	{"login serial 5", Packet{Protocol: 0x01, Serial: 5}, now, "78 78 05 01 00 05 9F F8 0D 0A"},
	// The server's answer to a device's login, traccar issue #3236.
	{"login of a device", Packet{Protocol: 0x01, Serial: 0x77}, now, "787805010077cf6d0d0a"},
	// Concox protocol V3.1 §2.2 example.
	{"heartbeat", Packet{Protocol: 0x13, Serial: 0x0100}, now, "78 78 05 13 01 00 E1 A0 0D 0A"},
	// The server's answer to a device's heartbeat, traccar issue #3236.
	{"heartbeat of a device", Packet{Protocol: 0x13, Serial: 0x78}, now, "78780513007807b70d0a"},
	// Concox protocol V3.1 §2.2 EG02/EG03 example.
	{"heartbeat 0x23", Packet{Protocol: 0x23, Serial: 8}, now, "78 78 05 23 00 08 F2 9E 0D 0A"},
	// Concox protocol V3.1 §6.2 example.
	{"alarm", Packet{Protocol: 0x26, Serial: 0x1C}, now, "78 78 05 26 00 1C 9D 86 0D 0A"},
	// Concox protocol V3.1 §9.2 example: 2015-12-29 00:00:21 UTC.
	{"time", Packet{Protocol: 0x8A, Serial: 6}, time.Date(2015, 12, 29, 0, 0, 21, 0, time.UTC), "78 78 0B 8A 0F 0C 1D 00 00 15 00 06 F0 86 0D 0A"},
	{"time from another zone", Packet{Protocol: 0x8A, Serial: 6}, time.Date(2015, 12, 29, 8, 0, 21, 0, east8), "78 78 0B 8A 0F 0C 1D 00 00 15 00 06 F0 86 0D 0A"},
	// The answer to an alarm in the long form (protocol 0x33, serial 8), a
	// test vector of a public Concox packet library.
	{"long form", Packet{Long: true, Protocol: 0x33, Serial: 8}, now, "79 79 00 05 33 00 08 44 A2 0D 0A"},
}

func TestAppendResponse(t *testing.T) {
	for _, tc := range responseCases {
		t.Run(tc.name, func(t *testing.T) {
			want := hexBytes(t, tc.want)
			if got := AppendResponse(nil, tc.p, tc.now); !bytes.Equal(got, want) {
				t.Errorf("AppendResponse = % X, want % X", got, want)
			}
			prefix := []byte("before")
			got := AppendResponse(prefix, tc.p, tc.now)
			if !bytes.Equal(got, append([]byte("before"), want...)) {
				t.Errorf("AppendResponse after a prefix = % X", got)
			}
			buf := make([]byte, 0, 32)
			if allocs := testing.AllocsPerRun(10, func() { buf = AppendResponse(buf[:0], tc.p, tc.now) }); allocs != 0 {
				t.Errorf("%v allocations with room in dst", allocs)
			}
			if n, frame, err := ScanFrames(want, true); n != len(want) || !bytes.Equal(frame, want) || err != nil {
				t.Errorf("ScanFrames(response) = %d, % X, %v", n, frame, err)
			}
		})
	}
}

func TestNeedsResponse(t *testing.T) {
	for proto, want := range map[byte]bool{
		0x01: true, 0x13: true, 0x16: true, 0x19: true, 0x23: true, 0x26: true, 0x27: true, 0x8A: true,
		0x10: false, 0x11: false, 0x12: false, 0x22: false, 0x15: false, 0x21: false, 0x94: false, 0x9B: false, 0x1F: false,
	} {
		if got := NeedsResponse(proto); got != want {
			t.Errorf("NeedsResponse(0x%02X) = %v, want %v", proto, got, want)
		}
	}
}

func TestCRC(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want uint16
	}{
		// The check value of CRC-16/X-25.
		{"check value", []byte("123456789"), 0x906E},
		{"empty", nil, 0},
		// GT06 protocol manual, login example (§5.1.3): length through serial.
		{"login", hexBytes(t, "0D 01 01 23 45 67 89 01 23 45 00 01"), 0x8CDD},
		// GT06 protocol manual, GPS+LBS example.
		{"location", hexBytes(t, "1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 00 03"), 0x8081},
		// Concox protocol V3.1 §2.1 example.
		{"heartbeat", hexBytes(t, "0A 13 40 04 04 00 01 00 0F"), 0xDCEE},
		// Concox protocol V3.1 §10.1 fuel sensor example, whose CRC the document gives as 0x0D12.
		{"long frame", hexBytes(t, "00 3F 94 0D 11 09 07 08 0C 03 21 41 49 4F 49 4C 2C 30 32 2C 30 32 35 2E 39 30 30 2C 30 32 35 "+
			"2E 34 30 30 2C 35 31 39 4A 2C 30 32 30 30 2C 30 32 37 2E 31 34 30 2C 30 2C 30 30 2C 39 46 83 A7"), 0x0D12},
	} {
		if got := CRC(tc.data); got != tc.want {
			t.Errorf("%s: CRC = 0x%04X, want 0x%04X", tc.name, got, tc.want)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	frame := hexBytes(b, "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 00 03 80 81 0D 0A")
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := Decode(frame, nil); err != nil {
			b.Fatal(err)
		}
	}
}
