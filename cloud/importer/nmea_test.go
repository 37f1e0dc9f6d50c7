package importer

import (
	"fmt"
	"strings"
	"testing"

	"trackgate/internal/position"
)

// sentence frames body ("GPGGA,…") as "$body*HH", the checksum computed.
func sentence(body string) string { return fmt.Sprintf("$%s*%02X", body, checksum(body)) }

// corrupt is sentence(body) with a checksum that does not match.
func corrupt(body string) string { return fmt.Sprintf("$%s*%02X", body, checksum(body)^0xFF) }

// checksum is the NMEA checksum of body.
func checksum(body string) byte {
	var sum byte
	for i := 0; i < len(body); i++ {
		sum ^= body[i]
	}
	return sum
}

// lowerSum returns sentence s with its checksum in lower case.
func lowerSum(s string) string { return s[:len(s)-2] + strings.ToLower(s[len(s)-2:]) }

// lines joins lines with CR LF.
func lines(l ...string) string { return strings.Join(l, "\r\n") + "\r\n" }

// nmeaBursts is a receiver's log of RMC and GGA bursts: a GGA with a bad
// checksum in the middle, a garbage line, a GSV, a void epoch, and no line
// end at the end.
var nmeaBursts = strings.TrimSuffix(lines(
	sentence("GPGGA,080000.00,5222.21405,N,00453.40771,E,1,09,1.05,2.4,M,46.1,M,,"),
	sentence("GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010524,,,A"),
	sentence("GPGGA,080001.00,5222.20732,N,00453.40709,E,2,10,0.95,2.6,M,46.1,M,,"),
	sentence("GPRMC,080001.00,A,5222.20732,N,00453.40709,E,10.5,183.50,010524,,,D"),
	corrupt("GPGGA,080002.00,5222.20060,N,00453.40648,E,1,09,1.05,2.4,M,46.1,M,,"),
	sentence("GPRMC,080002.00,A,5222.20060,N,00453.40648,E,11.0,360.0,010524,,,A"),
	"hello, world",
	"",
	sentence("GPGSV,1,1,04,05,45,120,40,07,30,200,35,13,60,045,42,20,15,300,30"),
	sentence("GPGGA,080003.00,,,,,0,00,99.99,,M,,M,,"),
	sentence("GPRMC,080003.00,V,,,,,,,010524,,,N"),
	sentence("GPGGA,080004.00,5222.19000,S,00453.40000,W,1,05,2.0,-3.5,M,46.1,M,,"),
	sentence("GPRMC,080004.00,A,5222.19000,S,00453.40000,W,0.0,,010524,,,A"),
), "\r\n")

// nmeaGGAOnly is a log without dates: it is dated from Now.
var nmeaGGAOnly = lines(
	sentence("GNGGA,115959.00,4807.03800,N,01131.00000,E,1,12,0.8,545.4,M,46.9,M,,"),
	sentence("GNGGA,120000.00,4807.03900,N,01131.00100,E,1,12,0.8,545.5,M,46.9,M,,"),
)

// deg converts ddmm.mmmm to degrees.
func deg(d, m float64) float64 { return d + m/60 }

// nmeaReadCases are NMEA files that read, with what they hold.
func nmeaReadCases() []readCase {
	const knot = 1852.0 / 3600
	gga := position.FieldAlt | position.FieldGeoid | position.FieldHDOP | position.FieldSats | position.FieldFix
	rmc := position.FieldSpeed | position.FieldCourse
	return []readCase{
		{name: "RMC and GGA bursts", in: nmeaBursts, skipped: 3, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: deg(52, 22.21405), Lon: deg(4, 53.40771), Alt: 2.4, Geoid: 46.1, HDOP: 1.05,
				Sats: 9, Fix: position.Fix3D, Speed: 10 * knot, Course: 183.2, Set: R | gga | rmc},
			{Time: ts("2024-05-01T08:00:01Z"), Lat: deg(52, 22.20732), Lon: deg(4, 53.40709), Alt: 2.6, Geoid: 46.1, HDOP: 0.95,
				Sats: 10, Fix: position.FixDGPS, Speed: 10.5 * knot, Course: 183.5, Set: R | gga | rmc},
			{Time: ts("2024-05-01T08:00:02Z"), Lat: deg(52, 22.20060), Lon: deg(4, 53.40648), Speed: 11 * knot, Course: 0,
				Fix: position.Fix2D, Set: R | rmc | position.FieldFix},
			{Time: ts("2024-05-01T08:00:04Z"), Lat: -deg(52, 22.19), Lon: -deg(4, 53.4), Alt: -3.5, Geoid: 46.1, HDOP: 2,
				Sats: 5, Fix: position.Fix3D, Speed: 0, Set: R | gga | position.FieldSpeed},
		}},
		{name: "GGA only, dated from Now", in: nmeaGGAOnly, want: []position.Position{
			{Time: ts("2026-06-01T11:59:59Z"), Lat: deg(48, 7.038), Lon: deg(11, 31), Alt: 545.4, Geoid: 46.9, HDOP: 0.8,
				Sats: 12, Fix: position.Fix3D, Set: R | gga},
			{Time: ts("2026-06-01T12:00:00Z"), Lat: deg(48, 7.039), Lon: deg(11, 31.001), Alt: 545.5, Geoid: 46.9, HDOP: 0.8,
				Sats: 12, Fix: position.Fix3D, Set: R | gga},
		}},
		{name: "prefixes, lower-case checksums, AIS and proprietary sentences", in: lines(
			"2024-05-01 08:00:00.120 "+sentence("GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010524,,,A"),
			sentence("PGRME,15.0,M,45.0,M,25.0,M"),
			"!"+sentence("AIVDM,1,1,,A,13aEOK?P00PD2wVMdLDRhgvL289?,0")[1:],
			lowerSum(sentence("GPRMC,080001.00,A,5222.20732,N,00453.40709,E,10.5,183.50,010524,,,A")),
		), want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: deg(52, 22.21405), Lon: deg(4, 53.40771), Speed: 10 * knot, Course: 183.2,
				Fix: position.Fix2D, Set: R | rmc | position.FieldFix},
			{Time: ts("2024-05-01T08:00:01Z"), Lat: deg(52, 22.20732), Lon: deg(4, 53.40709), Speed: 10.5 * knot, Course: 183.5,
				Fix: position.Fix2D, Set: R | rmc | position.FieldFix},
		}},
		{name: "without checksums", in: lines(
			"$GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010524,,,A",
		), want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: deg(52, 22.21405), Lon: deg(4, 53.40771), Speed: 10 * knot, Course: 183.2,
				Fix: position.Fix2D, Set: R | rmc | position.FieldFix},
		}},
		{name: "a fix in the future is skipped", in: lines(
			sentence("GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010530,,,A"),
		), skipped: 1},
		{name: "over-long lines", in: lines(
			sentence("GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010524,,,A"+strings.Repeat(",", 2000)),
			strings.Repeat("x", 100<<10),
			sentence("GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010524,,,A"),
		), skipped: 2, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: deg(52, 22.21405), Lon: deg(4, 53.40771), Speed: 10 * knot, Course: 183.2,
				Fix: position.Fix2D, Set: R | rmc | position.FieldFix},
		}},
		{name: "only void fixes", in: lines(sentence("GPGGA,080003.00,,,,,0,00,99.99,,M,,M,,")), skipped: 1},
		{name: "empty", in: ""},
		{name: "blank lines", in: "\r\n \n\t\n"},
	}
}

func TestReadNMEA(t *testing.T) { runReadCases(t, NMEA, nmeaReadCases()) }

// nmeaErrorCases are NMEA files that fail, with where and why.
func nmeaErrorCases() []errorCase {
	return []errorCase{
		{"text", "hello\nworld\n", 1, "no NMEA sentences"},
		{"binary", "\x00\x01\x02\xff\xfe", 1, "no NMEA sentences"},
		{"only bad checksums", lines(corrupt("GPGGA,080000.00,5222.21405,N,00453.40771,E,1,09,1.05,2.4,M,46.1,M,,")), 1, "no NMEA sentences"},
		{"dollars but no sentences", "$hello world\n$5 off\n", 1, "no NMEA sentences"},
		{"CSV", "time,lat,lon\n2024-05-01T08:00:00Z,52,4\n", 1, "no NMEA sentences"},
	}
}

func TestNMEAErrors(t *testing.T) { runErrorCases(t, NMEA, nmeaErrorCases()) }
