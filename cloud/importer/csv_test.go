package importer

import (
	"strings"
	"testing"

	"trackgate/internal/position"
)

// csvSemicolon is a phone logger's CSV: semicolons, epoch milliseconds,
// decimal commas, empty cells.
const csvSemicolon = "Timestamp;Latitude;Longitude;Altitude;Speed;Bearing;Accuracy;Battery;Satellites\r\n" +
	"1714550400000;52.370216;4.895168;2.5;5.5;123.4;4;87;8\r\n" +
	"1714550401500;52,3703;4,8953;;0;360;3,5;86;\r\n"

// csvTab is a spreadsheet's export: tabs, a BOM, quoted cells, unknown
// columns, "2006-01-02 15:04:05" times, and a blank line.
const csvTab = "\ufeff\"Date_Time\"\tname\tLAT\tLng\tele\tHDOP\tfix\tsats\tcomment\n" +
	"2024-05-01 08:00:00.250\tstart\t52.5\t13.4\t34\t0.8\t3d\t9\t\"tab\there, \"\"quoted\"\"\"\n" +
	"\n" +
	"2024-05-01 08:00:01\t\t52.50001\t13.40002\t  35 \t\tDGPS\t\t\"two\nlines\"\n" +
	"2024-05-01T08:00:02+02:00\t\t-52.5\t-13.4\n"

// csvReadCases are CSV files that read, with what they hold.
func csvReadCases() []readCase {
	return []readCase{
		{name: "semicolons and epoch milliseconds", in: csvSemicolon, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 52.370216, Lon: 4.895168, Alt: 2.5, Speed: 5.5, Course: 123.4, Acc: 4, Batt: 87, Sats: 8,
				Set: R | position.FieldAlt | position.FieldSpeed | position.FieldCourse | position.FieldAcc | position.FieldBatt | position.FieldSats},
			{Time: ts("2024-05-01T08:00:01.5Z"), Lat: 52.3703, Lon: 4.8953, Speed: 0, Course: 0, Acc: 3.5, Batt: 86,
				Set: R | position.FieldSpeed | position.FieldCourse | position.FieldAcc | position.FieldBatt},
		}},
		{name: "tabs", in: csvTab, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00.25Z"), Lat: 52.5, Lon: 13.4, Alt: 34, HDOP: 0.8, Fix: position.Fix3D, Sats: 9,
				Set: R | position.FieldAlt | position.FieldHDOP | position.FieldFix | position.FieldSats},
			{Time: ts("2024-05-01T08:00:01Z"), Lat: 52.50001, Lon: 13.40002, Alt: 35, Fix: position.FixDGPS,
				Set: R | position.FieldAlt | position.FieldFix},
			{Time: ts("2024-05-01T06:00:02Z"), Lat: -52.5, Lon: -13.4, Set: R},
		}},
		{name: "commas and epoch seconds", in: "utc,lat,long,course,pdop,vdop,geoid\n1714550400,1,2,359.5,1.5,2.5,-30\n1714550400.5,1,2,,,,\n", want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 1, Lon: 2, Course: 359.5, PDOP: 1.5, VDOP: 2.5, Geoid: -30,
				Set: R | position.FieldCourse | position.FieldPDOP | position.FieldVDOP | position.FieldGeoid},
			{Time: ts("2024-05-01T08:00:00.5Z"), Lat: 1, Lon: 2, Set: R},
		}},
		{name: "header only", in: "time,lat,lon\n"},
		{name: "duplicate columns: the first counts", in: "time,lat,lon,lat\n2024-05-01T08:00:00Z,1,2,x\n", want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 1, Lon: 2, Set: R},
		}},
	}
}

func TestReadCSV(t *testing.T) { runReadCases(t, CSV, csvReadCases()) }

// csvErrorCases are CSV files that fail, with where and why.
func csvErrorCases() []errorCase {
	return []errorCase{
		{"no time column", "lat,lon,alt\n1,2,3\n", 1, `the header has no time column: want time, lat and lon columns (found ["lat" "lon" "alt"])`},
		{"no position", "\n\ntimestamp;speed\n", 3, "the header has no lat, no lon column"},
		{"empty", "", 1, "empty file"},
		{"bad number", "time,lat,lon,speed\n2024-05-01T08:00:00Z,1,2,3\n2024-05-01T08:00:01Z,1,2,fast\n", 3, `column speed: "fast" is not a number`},
		{"decimal comma with commas", "time,lat,lon,speed\n2024-05-01T08:00:00Z,1,2,\"3,5\"\n", 2, `column speed: "3,5" is not a number`},
		{"bad time", "time,lat,lon\n\n2024-05-01T08:00:00Z,1,2\n01.05.2024 08:00,1,2\n", 4, `column time: "01.05.2024 08:00" is not an RFC 3339 time`},
		{"bad sats", "time,lat,lon,sats\n2024-05-01T08:00:00Z,1,2,7.5\n", 2, `column sats: "7.5" is not a number of satellites`},
		{"bad fix", "time,lat,lon,fix\n2024-05-01T08:00:00Z,1,2,good\n", 2, `column fix: "good" is not one of`},
		{"no time", "time,lat,lon\n2024-05-01T08:00:00Z,1,2\n,1,2\n", 3, "row without time: trackgate stores positions by their time"},
		{"short row", "time,lat,lon\n2024-05-01T08:00:00Z,1\n", 2, "row without lon"},
		{"out of range", "time,lat,lon,batt\n2024-05-01T08:00:00Z,1,2,101\n", 2, "row: batt: range: 101 is not within [0, 100]"},
		{"future", "time,lat,lon\n2030-05-01T08:00:00Z,1,2\n", 2, "row: time: future"},
		{"error after a multi-line cell", "time,lat,lon,note\n2024-05-01T08:00:00Z,1,2,\"a\nb\nc\"\n2024-05-01T08:00:01Z,1,x,\n", 5, `column lon: "x" is not a number`},
		{"bare quote", "time,lat,lon\n2024-05-01T08:00:00Z,1,2\n2024-05-01T08:00:01Z,1\"5,2\n", 3, `CSV: bare " in non-quoted-field`},
		{"unterminated quote", "time,lat,lon\n2024-05-01T08:00:00Z,1,2\n\"2024-05-01T08:00:01Z,1,2\n", 3, `CSV: extraneous or missing " in quoted-field`},
		{"binary", "\x00\x01\x02\n\x03", 1, "the header has no time, no lat, no lon column"},
		{"NMEA", lines(sentence("GPRMC,080000.00,A,5222.21405,N,00453.40771,E,10.0,183.20,010524,,,A")), 1, "the header has no time, no lat, no lon column"},
	}
}

func TestCSVErrors(t *testing.T) { runErrorCases(t, CSV, csvErrorCases()) }

func TestSniffDelimiter(t *testing.T) {
	for head, want := range map[string]rune{
		"a,b,c\n1;2;3;4;5":     ',',
		"a;b;c":                ';',
		"a\tb\tc":              '\t',
		`"a,b";c;d`:            ';',
		`"a;b;c";d,e`:          ',',
		"a":                    ',',
		"a;b\tc":               ';',
		"time\tname, place\tx": '\t',
		"\n \r\na;b\nc,d,e":    ';',
	} {
		if got := sniffDelimiter([]byte(head)); got != want {
			t.Errorf("sniffDelimiter(%q) = %q, want %q", head, got, want)
		}
	}
}

// TestCSVLongRecords checks that a long record is read, and one too long
// for memory fails.
func TestCSVLongRecords(t *testing.T) {
	long := "time,lat,lon,note\n2024-05-01T08:00:00Z,1,2,\"" + strings.Repeat("x\n\"\"", (maxCSVRecord-100)/4) + "\"\n"
	got, _, err := readAll(t, CSV, long)
	if err != nil || len(got) != 1 {
		t.Fatalf("Read = %d positions, %v", len(got), err)
	}
	runErrorCases(t, CSV, []errorCase{
		{"too long", long + "2024-05-01T08:00:00Z,1,2," + strings.Repeat("x", maxCSVRecord) + "\n", 2 + (maxCSVRecord-100)/4 + 1,
			"a record (a line, or more in quotes) longer than 1048576 bytes"},
		{"without line end", strings.Repeat("x", 3*maxCSVRecord), 1, "longer than 1048576 bytes"},
		{"unterminated quote", "time,lat,lon\n\"" + strings.Repeat("x\n", maxCSVRecord), 2, "longer than 1048576 bytes"},
	})
}
