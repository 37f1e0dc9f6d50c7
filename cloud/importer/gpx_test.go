package importer

import (
	"strings"
	"testing"

	"trackgate/internal/position"
)

// gpx10 is a GPX 1.0 file as converters write it: speed and course in the
// points, a waypoint and a route.
const gpx10 = `<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.0" creator="converter 1.9" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns="http://www.topografix.com/GPX/1/0" xsi:schemaLocation="http://www.topografix.com/GPX/1/0 http://www.topografix.com/GPX/1/0/gpx.xsd">
<time>2024-05-01T07:59:00Z</time>
<bounds minlat="52.370216" minlon="4.895168" maxlat="52.3703" maxlon="4.8953"/>
<wpt lat="52.1" lon="4.1">
  <ele>1.0</ele>
  <time>2024-05-01T07:00:00Z</time>
  <name>Home</name>
</wpt>
<trk>
  <name>ride</name>
  <number>1</number>
<trkseg>
<trkpt lat="52.370216" lon="4.895168">
  <ele>2.5</ele>
  <time>2024-05-01T08:00:00Z</time>
  <course>123.4</course>
  <speed>5.5</speed>
  <geoidheight>46.1</geoidheight>
  <fix>3d</fix>
  <sat>8</sat>
  <hdop>0.9</hdop>
  <vdop>1.2</vdop>
  <pdop>1.5</pdop>
</trkpt>
<trkpt lat="52.3703" lon="4.8953">
  <ele>2.7</ele>
  <time>2024-05-01T08:00:01.5Z</time>
  <course>360</course>
  <speed>0</speed>
  <fix>pps</fix>
</trkpt>
</trkseg>
</trk>
<rte>
  <name>back</name>
  <rtept lat="52.36" lon="4.89"><time>2024-05-01T09:00:00Z</time><name>turn</name></rtept>
</rte>
</gpx>
`

// gpx11Handheld is a GPX 1.1 file from a handheld: namespaces, metadata,
// track extensions, and speed and course in TrackPointExtension v2.
const gpx11Handheld = `<?xml version="1.0" encoding="UTF-8" standalone="no" ?>
<gpx xmlns="http://www.topografix.com/GPX/1/1" xmlns:gpxx="http://www.garmin.com/xmlschemas/GpxExtensions/v3" xmlns:wptx1="http://www.garmin.com/xmlschemas/WaypointExtension/v1" xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v2" creator="handheld 2.1" version="1.1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd http://www.garmin.com/xmlschemas/GpxExtensions/v3 http://www8.garmin.com/xmlschemas/GpxExtensionsv3.xsd http://www.garmin.com/xmlschemas/TrackPointExtension/v2 http://www8.garmin.com/xmlschemas/TrackPointExtensionv2.xsd">
  <metadata>
    <link href="https://handheld.example">
      <text>Handheld maker</text>
    </link>
    <time>2024-05-01T08:00:00Z</time>
  </metadata>
  <trk>
    <name>2024-05-01 10:00:00</name>
    <extensions>
      <gpxx:TrackExtension>
        <gpxx:DisplayColor>Cyan</gpxx:DisplayColor>
      </gpxx:TrackExtension>
    </extensions>
    <trkseg>
      <trkpt lat="46.5000000" lon="7.5000000">
        <ele>1500.25</ele>
        <time>2024-05-01T10:00:00+02:00</time>
        <extensions>
          <gpxtpx:TrackPointExtension>
            <gpxtpx:atemp>12.0</gpxtpx:atemp>
            <gpxtpx:hr>120</gpxtpx:hr>
            <gpxtpx:speed>3.25</gpxtpx:speed>
            <gpxtpx:course>270.5</gpxtpx:course>
          </gpxtpx:TrackPointExtension>
        </extensions>
      </trkpt>
      <trkpt lat="46.5000100" lon="7.5000200">
        <ele>1500.5</ele>
        <time>2024-05-01T08:00:01.250Z</time>
        <extensions><gpxtpx:TrackPointExtension><gpxtpx:speed> 3.5 </gpxtpx:speed></gpxtpx:TrackPointExtension></extensions>
      </trkpt>
    </trkseg>
    <trkseg>
      <trkpt lat="-46.5" lon="-7.5"><time>2024-05-01T08:10:00Z</time></trkpt>
    </trkseg>
  </trk>
</gpx>
`

// gpxApp is a phone app's GPX 1.1: single quotes, hdop, and speed and
// heading straight in the point's extensions, in the app's namespace.
const gpxApp = `<?xml version='1.0' encoding='UTF-8' standalone='yes' ?>
<gpx version="1.1" creator="phone app 4.7" xmlns="http://www.topografix.com/GPX/1/1" xmlns:app="https://app.example/gpx" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd">
  <metadata>
    <name>2024-05-01_10-00_Wed</name>
  </metadata>
  <trk>
    <trkseg>
      <trkpt lat="48.1371234" lon="11.5754321">
        <ele>519.4</ele>
        <time>2024-05-01T08:00:00Z</time>
        <hdop>3.2</hdop>
        <extensions>
          <app:speed>1.4</app:speed>
          <app:heading>87</app:heading>
        </extensions>
      </trkpt>
      <trkpt lat="48.1371300" lon="11.5754400">
        <ele>519.6</ele>
        <time>2024-05-01T08:00:05Z</time>
        <hdop>3.4</hdop>
        <extensions>
          <speed>1.5</speed>
          <course>88</course>
        </extensions>
      </trkpt>
    </trkseg>
  </trk>
  <extensions>
    <app:show_arrows>false</app:show_arrows>
  </extensions>
</gpx>
`

// gpxReadCases are GPX files that read, with what they hold.
func gpxReadCases() []readCase {
	return []readCase{
		{name: "GPX 1.0", in: gpx10, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 52.370216, Lon: 4.895168, Alt: 2.5, Course: 123.4, Speed: 5.5, Geoid: 46.1,
				Fix: position.Fix3D, Sats: 8, HDOP: 0.9, VDOP: 1.2, PDOP: 1.5,
				Set: R | position.FieldAlt | position.FieldCourse | position.FieldSpeed | position.FieldGeoid | position.FieldFix |
					position.FieldSats | position.FieldHDOP | position.FieldVDOP | position.FieldPDOP},
			{Time: ts("2024-05-01T08:00:01.5Z"), Lat: 52.3703, Lon: 4.8953, Alt: 2.7, Course: 0, Speed: 0, Fix: position.FixDGPS,
				Set: R | position.FieldAlt | position.FieldCourse | position.FieldSpeed | position.FieldFix},
			{Time: ts("2024-05-01T09:00:00Z"), Lat: 52.36, Lon: 4.89, Set: R},
		}},
		{name: "GPX 1.1 TrackPointExtension", in: gpx11Handheld, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 46.5, Lon: 7.5, Alt: 1500.25, Speed: 3.25, Course: 270.5,
				Set: R | position.FieldAlt | position.FieldSpeed | position.FieldCourse},
			{Time: ts("2024-05-01T08:00:01.25Z"), Lat: 46.50001, Lon: 7.50002, Alt: 1500.5, Speed: 3.5,
				Set: R | position.FieldAlt | position.FieldSpeed},
			{Time: ts("2024-05-01T08:10:00Z"), Lat: -46.5, Lon: -7.5, Set: R},
		}},
		{name: "app extensions", in: gpxApp, want: []position.Position{
			{Time: ts("2024-05-01T08:00:00Z"), Lat: 48.1371234, Lon: 11.5754321, Alt: 519.4, HDOP: 3.2, Speed: 1.4, Course: 87,
				Set: R | position.FieldAlt | position.FieldHDOP | position.FieldSpeed | position.FieldCourse},
			{Time: ts("2024-05-01T08:00:05Z"), Lat: 48.13713, Lon: 11.57544, Alt: 519.6, HDOP: 3.4, Speed: 1.5, Course: 88,
				Set: R | position.FieldAlt | position.FieldHDOP | position.FieldSpeed | position.FieldCourse},
		}},
		{name: "prefixed GPX elements, CDATA, comments and entities",
			in: "\ufeff<?xml version=\"1.0\"?>\n<!-- exported -->\n<g:gpx xmlns:g=\"http://www.topografix.com/GPX/1/1\"><g:trk><g:trkseg>\n" +
				"<g:trkpt g:lat=' 1.5 ' lon=\"&#50;\"><g:time><![CDATA[2024-05-01T08:00:00]]><!-- UTC --></g:time><g:ele>1&#x30;</g:ele><g:name>a &amp; b</g:name></g:trkpt>\n" +
				"</g:trkseg></g:trk></g:gpx>\n",
			want: []position.Position{{Time: ts("2024-05-01T08:00:00Z"), Lat: 1.5, Lon: 2, Alt: 10, Set: R | position.FieldAlt}}},
		{name: "empty values are absent",
			in:   `<gpx><trk><trkseg><trkpt lat="1" lon="2"><ele> </ele><time>2024-05-01T08:00:00Z</time><hdop/><sat></sat></trkpt></trkseg></trk></gpx>`,
			want: []position.Position{{Time: ts("2024-05-01T08:00:00Z"), Lat: 1, Lon: 2, Set: R}}},
		{name: "ISO 8859-1",
			in:   "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<gpx><trk><name>M\xfcnchen</name><trkseg><trkpt lat=\"1\" lon=\"2\"><time>2024-05-01T08:00:00Z</time></trkpt></trkseg></trk></gpx>",
			want: []position.Position{{Time: ts("2024-05-01T08:00:00Z"), Lat: 1, Lon: 2, Set: R}}},
		{name: "no points", in: `<gpx version="1.1"><wpt lat="1" lon="2"/></gpx>`},
		{name: "trailing bytes after the document", in: "<gpx></gpx>\n\x00\x00\x00garbage",
			want: nil},
	}
}

func TestReadGPX(t *testing.T) { runReadCases(t, GPX, gpxReadCases()) }

// gpxErrorCases are GPX files that fail, with where and why.
func gpxErrorCases() []errorCase {
	pt := func(inner string) string {
		return "<gpx>\n<trk>\n<trkseg>\n<trkpt lat=\"52\" lon=\"4\">\n" + inner + "\n</trkpt>\n</trkseg>\n</trk>\n</gpx>\n"
	}
	return []errorCase{
		{"no time", pt("<ele>1</ele>"), 4, "trkpt without <time>: trackgate stores positions by their time"},
		{"rtept without time", "<gpx>\n<rte>\n<rtept lat='1' lon='2'/>\n</rte></gpx>", 3, "rtept without <time>"},
		{"bad time", pt("<time>yesterday</time>"), 5, `<time> "yesterday" is not an RFC 3339 time`},
		{"bad ele", pt("<time>2024-05-01T08:00:00Z</time>\n<ele>high</ele>"), 6, `<ele> "high" is not a number`},
		{"bad sat", pt("<time>2024-05-01T08:00:00Z</time>\n<sat>-1</sat>"), 6, `<sat> "-1" is not a number of satellites`},
		{"bad fix", pt("<time>2024-05-01T08:00:00Z</time>\n<fix>4d</fix>"), 6, `<fix> "4d" is not one of`},
		{"bad speed", pt("<time>2024-05-01T08:00:00Z</time>\n<extensions><x:speed>NaN</x:speed></extensions>"), 6, `<speed> "NaN" is not a number`},
		{"speed out of range", pt("<time>2024-05-01T08:00:00Z</time>\n<speed>-1</speed>"), 4, "trkpt: speed: range: -1 is not within [0, 2000]"},
		{"future", pt("<time>2030-05-01T08:00:00Z</time>"), 4, "trkpt: time: future"},
		{"before 2000", pt("<time>1999-12-31T23:59:59Z</time>"), 4, "trkpt: time: past"},
		{"lat out of range", "<gpx>\n<trk><trkseg>\n\n<trkpt lat='91' lon='4'><time>2024-05-01T08:00:00Z</time></trkpt></trkseg></trk></gpx>", 4, "lat: range"},
		{"no lat", "<gpx>\n<trk><trkseg><trkpt lon='4'>", 2, "<trkpt> without the lat attribute"},
		{"bad lon", "<gpx>\n<trk><trkseg><trkpt lat='1' lon='0x10'>", 2, `<trkpt> lon="0x10" is not a number`},
		{"value too long", pt("<time>" + strings.Repeat(" ", 2000) + "</time>"), 5, "<time> longer than 1024 bytes"},
		{"token too long", "<gpx>\n<desc>" + strings.Repeat("x", maxXMLToken+10) + "</desc></gpx>", 2, "XML token longer than"},
		{"too deep", "<gpx>\n" + strings.Repeat("<a>", maxXMLDepth), 2, "nested deeper than 256"},
		{"syntax", pt("<time>2024-05-01T08:00:00Z</time>\n<ele>1</ele\n>\n<a b>"), 8, "XML syntax error"},
		{"mismatched tags", pt("<time>2024-05-01T08:00:00Z</time>\n<ele>1</sat>"), 6, "<ele> closed by </sat>"},
		{"mismatched prefix", "<gpx>\n<a:trk></b:trk>", 2, "<a:trk> closed by </b:trk>"},
		{"truncated", pt("<time>2024-05-01T08:00:00Z</time>")[:60], 5, "unexpected end of file inside <time>"},
		{"truncated in a tag", "<gpx>\n<trk><trkseg><trkpt lat='1", 2, "XML syntax error"},
		{"not GPX", "<?xml version=\"1.0\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\"><Document/></kml>", 2, "the root element is <kml>, not <gpx>"},
		{"empty", "", 1, "no <gpx> element"},
		{"only a declaration", "<?xml version=\"1.0\"?>\n\n", 1, "no <gpx> element"},
		{"unknown encoding", "<?xml version=\"1.0\" encoding=\"EBCDIC\"?>\n<gpx/>", 1, "EBCDIC"},
		{"invalid UTF-8", "<gpx>\n<trk><name>\xff</name></trk></gpx>", 2, "invalid UTF-8"},
		{"undefined entity", "<gpx>\n<trk><name>&nbsp;</name></trk></gpx>", 2, "XML syntax error"},
		{"binary", "\x00\x01\x02\x03", 1, "XML syntax error"},
	}
}

func TestGPXErrors(t *testing.T) { runErrorCases(t, GPX, gpxErrorCases()) }
