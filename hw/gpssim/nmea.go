package gpssim

import (
	"math"
	"strconv"
	"time"
)

// Profile is the receiver a Sim imitates: which sentences an epoch holds, in
// which order, and how many decimals each field is printed with.
type Profile string

// The receivers gpssim imitates.
const (
	// UBlox is a u-blox M8 speaking NMEA 4.10 with GPS, GLONASS, Galileo
	// and BeiDou: GNRMC, GNVTG, GNGGA, one GNGSA per constellation (with its
	// system id), GPGSV, GLGSV, GAGSV and GBGSV groups (with their signal
	// id), GNGLL. Latitude and longitude minutes have 5 decimals, times 2.
	// It sends a GNTXT banner when plugged in.
	UBlox Profile = "ublox"
	// SiRF is a GPS-only SiRF receiver speaking NMEA 3.01: GPGGA, GPGSA, a
	// GPGSV group, GPRMC, in that order. Minutes have 4 decimals, times 3.
	SiRF Profile = "sirf"
	// MTK is a GPS-only MediaTek MT3339 sending GPRMC and GPGGA only, with
	// 4 decimals of minutes and 3 of time. It announces itself with PMTK010
	// and PMTK011 when plugged in and answers the firmware query
	// "$PMTK605*31" with a PMTK705 line.
	MTK Profile = "mtk"
)

// Fix is one epoch exactly as the sentences encode it: a parser that reads
// the sentences gets these values back. Profile.Round brings any Fix to that
// form.
type Fix struct {
	Time       time.Time // UTC, full date
	Valid      bool      // false: void fix (RMC status V, GGA quality 0, GSA fix type 1, empty position fields)
	Lat, Lon   float64   // degrees
	Alt        float64   // metres above mean sea level (GGA)
	Geoid      float64   // geoid separation, metres (GGA)
	Speed      float64   // m/s: the printed knots * 1852/3600
	Course     float64   // degrees true
	HDOP       float64   // horizontal dilution of precision (GGA and GSA)
	PDOP, VDOP float64   // position and vertical dilution of precision (GSA; 0 for MTK)
	Sats       int       // satellites used (GGA; listed in GSA)
	SatsInView int       // total over all constellations' GSV groups (0 for MTK)
}

// maxSats is the most satellites a fix is computed from (GGA's and a GSA's
// limit).
const maxSats = 12

// knot is a knot in metres per second.
const knot = 1852.0 / 3600

// format is how a profile prints its fields.
type format struct {
	talker   string   // talker of RMC, GGA, GSA, VTG, GLL
	latDec   int      // decimals of latitude and longitude minutes
	timeDec  int      // decimals of the seconds of a time
	speedDec int      // decimals of the speed in knots
	dopDec   int      // decimals of the DOPs
	satsWide bool     // GGA's satellites used printed with two digits
	nmea41   bool     // NMEA 4.10 fields: GSA system id, GSV signal id, RMC navigational status
	voidDOP  string   // DOP fields of a void fix (u-blox prints 99.99, the others leave them empty)
	sky      []sat    // satellites in view, best first; nil: no GSA or GSV
	systems  []system // the constellations of sky, one GSA and one GSV group each
	epoch    []sentenceKind
}

// sentenceKind is a sentence of an epoch.
type sentenceKind int

const (
	rmc sentenceKind = iota
	vtg
	gga
	gsa
	gsv
	gll
)

// formats are the profiles' formats.
var formats = map[Profile]*format{
	UBlox: {talker: "GN", latDec: 5, timeDec: 2, speedDec: 3, dopDec: 2, satsWide: true, nmea41: true,
		voidDOP: "99.99", sky: ubloxSky, systems: systemsOf(ubloxSky), epoch: []sentenceKind{rmc, vtg, gga, gsa, gsv, gll}},
	SiRF: {talker: "GP", latDec: 4, timeDec: 3, speedDec: 2, dopDec: 1, satsWide: true,
		sky: gpsSky, systems: systemsOf(gpsSky), epoch: []sentenceKind{gga, gsa, gsv, rmc}},
	MTK: {talker: "GP", latDec: 4, timeDec: 3, speedDec: 2, dopDec: 2,
		epoch: []sentenceKind{rmc, gga}},
}

// valid reports whether p is one of the profiles gpssim knows.
func (p Profile) valid() bool { return formats[p] != nil }

// Round returns f as p encodes it: the time truncated to the printed
// fraction of a second and in UTC, every value rounded to the decimals p
// prints, the fields of a void fix cleared, the counts capped at what p can
// list (satellites used at 12 and at the satellites in view) and the fields
// p does not print zeroed. It panics on an unknown profile.
func (p Profile) Round(f Fix) Fix {
	ft := formats[p]
	f.Time = f.Time.UTC().Truncate(time.Duration(math.Pow10(9 - ft.timeDec)))
	f.SatsInView = min(max(f.SatsInView, 0), len(ft.sky))
	f.Sats = min(max(f.Sats, 0), maxSats)
	if ft.sky != nil {
		f.Sats = min(f.Sats, f.SatsInView)
	}
	if !f.Valid {
		voidDOP, _ := strconv.ParseFloat(ft.voidDOP, 64)
		f.Lat, f.Lon, f.Alt, f.Geoid, f.Speed, f.Course, f.Sats = 0, 0, 0, 0, 0, 0, 0
		f.HDOP, f.PDOP, f.VDOP = voidDOP, voidDOP, voidDOP
	} else {
		f.Lat = roundCoord(f.Lat, ft.latDec)
		f.Lon = roundCoord(f.Lon, ft.latDec)
		f.Alt = roundTo(f.Alt, 1)
		f.Geoid = roundTo(f.Geoid, 1)
		f.Speed = roundTo(max(f.Speed, 0)/knot, ft.speedDec) * knot
		f.Course = math.Mod(roundTo(f.Course, 2), 360)
		if f.Course < 0 {
			f.Course = roundTo(f.Course+360, 2)
		}
		f.HDOP = roundTo(min(max(f.HDOP, 0), 99.99), ft.dopDec)
		f.PDOP = roundTo(min(max(f.PDOP, 0), 99.99), ft.dopDec)
		f.VDOP = roundTo(min(max(f.VDOP, 0), 99.99), ft.dopDec)
	}
	if ft.sky == nil {
		f.PDOP, f.VDOP = 0, 0
	}
	return f
}

// roundTo rounds v to dec decimals, turning -0 into 0.
func roundTo(v float64, dec int) float64 {
	s := math.Pow10(dec)
	return math.Round(v*s)/s + 0
}

// roundCoord rounds a latitude or longitude to what is printed as degrees
// and minutes with dec decimals.
func roundCoord(v float64, dec int) float64 {
	deg, min := splitCoord(v, dec)
	return math.Copysign(float64(deg)+min/60, v) + 0
}

// splitCoord returns |v| as whole degrees and minutes rounded to dec
// decimals, carrying 60 minutes into a degree.
func splitCoord(v float64, dec int) (int, float64) {
	a := math.Abs(v)
	deg := math.Floor(a)
	min := roundTo((a-deg)*60, dec)
	if min >= 60 {
		deg, min = deg+1, roundTo(min-60, dec)
	}
	return int(deg), min
}

// AppendEpoch appends the sentences p sends for f, each "$...*HH\r\n" with a
// valid checksum, rendering p.Round(f). It panics on an unknown profile.
func AppendEpoch(dst []byte, p Profile, f Fix) []byte {
	ft := formats[p]
	f = p.Round(f)
	for _, k := range ft.epoch {
		switch k {
		case rmc:
			dst = ft.appendRMC(dst, f)
		case vtg:
			dst = ft.appendVTG(dst, f)
		case gga:
			dst = ft.appendGGA(dst, f)
		case gsa:
			dst = ft.appendGSA(dst, f)
		case gsv:
			dst = ft.appendGSV(dst, f)
		case gll:
			dst = ft.appendGLL(dst, f)
		}
	}
	return dst
}

// AppendSentence appends "$" body "*HH\r\n", HH being the checksum of body.
func AppendSentence(dst []byte, body string) []byte {
	start := len(dst)
	dst = append(dst, '$')
	dst = append(dst, body...)
	return endSentence(dst, start)
}

// endSentence ends the sentence that starts at dst[start] with its checksum
// and CR LF.
func endSentence(dst []byte, start int) []byte {
	var sum byte
	for _, c := range dst[start+1:] {
		sum ^= c
	}
	const hex = "0123456789ABCDEF"
	return append(dst, '*', hex[sum>>4], hex[sum&15], '\r', '\n')
}

// banners are the lines a receiver sends when it powers up.
var banners = map[Profile][]string{
	UBlox: {
		"GNTXT,01,01,02,u-blox AG - www.u-blox.com",
		"GNTXT,01,01,02,HW UBX-M8030 00080000",
		"GNTXT,01,01,02,ROM CORE 3.01 (107888)",
		"GNTXT,01,01,02,FWVER=SPG 3.01",
		"GNTXT,01,01,02,PROTVER=18.00",
		"GNTXT,01,01,02,GPS;GLO;GAL;BDS",
		"GNTXT,01,01,02,ANTSTATUS=OK",
	},
	MTK: {"PMTK011,MTKGPS", "PMTK010,001"},
}

// AppendBanner appends the lines p sends when it powers up (none for SiRF).
func AppendBanner(dst []byte, p Profile) []byte {
	for _, b := range banners[p] {
		dst = AppendSentence(dst, b)
	}
	return dst
}

// The MTK firmware query and its answer.
const (
	mtkQuery   = "$PMTK605*31"
	mtkRelease = "PMTK705,AXN_2.31_3339_13101700,5632,PA6H,1.0"
)

// begin starts a sentence of talker and kind, returning where it starts for
// endSentence.
func begin(dst []byte, talker, kind string) ([]byte, int) {
	start := len(dst)
	dst = append(dst, '$')
	dst = append(dst, talker...)
	dst = append(dst, kind...)
	return dst, start
}

// appendFloat appends v with dec decimals, never as -0.
func appendFloat(dst []byte, v float64, dec int) []byte {
	return strconv.AppendFloat(dst, v+0, 'f', dec, 64)
}

// appendInt appends v, with leading zeros to width digits.
func appendInt(dst []byte, v, width int) []byte {
	for w, p := width, 1; w > 1; w-- {
		p *= 10
		if v < p {
			dst = append(dst, '0')
		}
	}
	return strconv.AppendInt(dst, int64(v), 10)
}

// appendTime appends ",hhmmss.ss" (or .sss).
func (ft *format) appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, ',')
	dst = appendInt(dst, t.Hour(), 2)
	dst = appendInt(dst, t.Minute(), 2)
	dst = appendInt(dst, t.Second(), 2)
	dst = append(dst, '.')
	return appendInt(dst, t.Nanosecond()/int(math.Pow10(9-ft.timeDec)), ft.timeDec)
}

// appendDate appends ",ddmmyy".
func appendDate(dst []byte, t time.Time) []byte {
	dst = append(dst, ',')
	dst = appendInt(dst, t.Day(), 2)
	dst = appendInt(dst, int(t.Month()), 2)
	return appendInt(dst, t.Year()%100, 2)
}

// appendPosition appends ",ddmm.mmmmm,N,dddmm.mmmmm,E", or four empty
// fields for a void fix.
func (ft *format) appendPosition(dst []byte, f Fix) []byte {
	if !f.Valid {
		return append(dst, ",,,,"...)
	}
	for _, c := range []struct {
		v        float64
		width    int
		pos, neg byte
	}{{f.Lat, 2, 'N', 'S'}, {f.Lon, 3, 'E', 'W'}} {
		deg, min := splitCoord(c.v, ft.latDec)
		dst = append(dst, ',')
		dst = appendInt(dst, deg, c.width)
		if min < 10 {
			dst = append(dst, '0')
		}
		dst = appendFloat(dst, min, ft.latDec)
		if c.v < 0 {
			dst = append(dst, ',', c.neg)
		} else {
			dst = append(dst, ',', c.pos)
		}
	}
	return dst
}

// mode is the FAA mode indicator: autonomous, or not valid.
func mode(f Fix) byte {
	if f.Valid {
		return 'A'
	}
	return 'N'
}

func (ft *format) appendRMC(dst []byte, f Fix) []byte {
	dst, start := begin(dst, ft.talker, "RMC")
	dst = ft.appendTime(dst, f.Time)
	if f.Valid {
		dst = append(dst, ",A"...)
	} else {
		dst = append(dst, ",V"...)
	}
	dst = ft.appendPosition(dst, f)
	dst = append(dst, ',')
	if f.Valid {
		dst = appendFloat(dst, f.Speed/knot, ft.speedDec)
		dst = append(dst, ',')
		dst = appendFloat(dst, f.Course, 2)
	} else {
		dst = append(dst, ',')
	}
	dst = appendDate(dst, f.Time)
	dst = append(dst, ",,,"...) // magnetic variation and its direction: empty
	dst = append(dst, mode(f))
	if ft.nmea41 {
		dst = append(dst, ",V"...) // navigational status: not given
	}
	return endSentence(dst, start)
}

func (ft *format) appendVTG(dst []byte, f Fix) []byte {
	dst, start := begin(dst, ft.talker, "VTG")
	if !f.Valid {
		dst = append(dst, ",,,,,,,,,N"...)
		return endSentence(dst, start)
	}
	dst = append(dst, ',')
	dst = appendFloat(dst, f.Course, 2)
	dst = append(dst, ",T,,M,"...)
	knots := roundTo(f.Speed/knot, ft.speedDec)
	dst = appendFloat(dst, knots, ft.speedDec)
	dst = append(dst, ",N,"...)
	dst = appendFloat(dst, knots*1.852, ft.speedDec)
	dst = append(dst, ",K,A"...)
	return endSentence(dst, start)
}

func (ft *format) appendGGA(dst []byte, f Fix) []byte {
	dst, start := begin(dst, ft.talker, "GGA")
	dst = ft.appendTime(dst, f.Time)
	dst = ft.appendPosition(dst, f)
	width := 1
	if ft.satsWide {
		width = 2
	}
	if f.Valid {
		dst = append(dst, ",1,"...)
		dst = appendInt(dst, f.Sats, width)
		dst = append(dst, ',')
		dst = appendFloat(dst, f.HDOP, ft.dopDec)
		dst = append(dst, ',')
		dst = appendFloat(dst, f.Alt, 1)
		dst = append(dst, ",M,"...)
		dst = appendFloat(dst, f.Geoid, 1)
		dst = append(dst, ",M,,"...) // age of differential corrections and station: empty
		return endSentence(dst, start)
	}
	dst = append(dst, ",0,"...)
	dst = appendInt(dst, 0, width)
	dst = append(dst, ',')
	dst = append(dst, ft.voidDOP...)
	if ft.nmea41 {
		dst = append(dst, ",,,,,,"...)
	} else {
		dst = append(dst, ",,M,,M,,"...)
	}
	return endSentence(dst, start)
}

func (ft *format) appendGLL(dst []byte, f Fix) []byte {
	dst, start := begin(dst, ft.talker, "GLL")
	dst = ft.appendPosition(dst, f)
	dst = ft.appendTime(dst, f.Time)
	if f.Valid {
		dst = append(dst, ",A"...)
	} else {
		dst = append(dst, ",V"...)
	}
	dst = append(dst, ',', mode(f))
	return endSentence(dst, start)
}

// appendGSA appends one GSA per constellation of the profile, listing the
// satellites used.
func (ft *format) appendGSA(dst []byte, f Fix) []byte {
	for _, sys := range ft.systems {
		var start int
		dst, start = begin(dst, ft.talker, "GSA")
		dst = append(dst, ",A,"...)
		if f.Valid {
			dst = append(dst, '3')
		} else {
			dst = append(dst, '1')
		}
		n := 0
		for _, s := range ft.sky[:f.Sats] {
			if s.sys == sys {
				dst = append(dst, ',')
				dst = appendInt(dst, s.prn, 2)
				n++
			}
		}
		for ; n < maxSats; n++ {
			dst = append(dst, ',')
		}
		for _, dop := range []float64{f.PDOP, f.HDOP, f.VDOP} {
			dst = append(dst, ',')
			if f.Valid {
				dst = appendFloat(dst, dop, ft.dopDec)
			} else {
				dst = append(dst, ft.voidDOP...)
			}
		}
		if ft.nmea41 {
			dst = append(dst, ',')
			dst = appendInt(dst, int(sys), 1)
		}
		dst = endSentence(dst, start)
	}
	return dst
}

// appendGSV appends one GSV group per constellation of the profile, four
// satellites a sentence, in PRN order.
func (ft *format) appendGSV(dst []byte, f Fix) []byte {
	var buf [maxPerSystem]sat
	for _, sys := range ft.systems {
		sats := buf[:0]
		for _, s := range ft.sky[:f.SatsInView] {
			if s.sys == sys {
				sats = append(sats, s)
			}
		}
		sortByPRN(sats)
		total := max((len(sats)+3)/4, 1)
		for i := range total {
			var start int
			dst, start = begin(dst, sys.talker(), "GSV")
			dst = append(dst, ',')
			dst = appendInt(dst, total, 1)
			dst = append(dst, ',')
			dst = appendInt(dst, i+1, 1)
			dst = append(dst, ',')
			dst = appendInt(dst, len(sats), 2)
			for _, s := range sats[i*4 : min(i*4+4, len(sats))] {
				el, az, snr := s.look(f.Time)
				dst = append(dst, ',')
				dst = appendInt(dst, s.prn, 2)
				dst = append(dst, ',')
				dst = appendInt(dst, el, 2)
				dst = append(dst, ',')
				dst = appendInt(dst, az, 3)
				dst = append(dst, ',')
				dst = appendInt(dst, snr, 2)
			}
			if ft.nmea41 {
				dst = append(dst, ',')
				dst = appendInt(dst, sys.signal(), 1)
			}
			dst = endSentence(dst, start)
		}
	}
	return dst
}
