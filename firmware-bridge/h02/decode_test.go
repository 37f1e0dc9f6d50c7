package h02

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"trackgate/internal/position"
)

// now is after every capture's date.
var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func utc(y int, mo time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
}

// dm is degrees and minutes in degrees, computed as the decoder does.
func dm(deg, minutes float64) float64 { return deg + minutes/60 }

// kn is knots in metres per second.
func kn(v float64) float64 { return v * (1852.0 / 3600) }

const fixSet = position.FieldTime | position.FieldLat | position.FieldLon | position.FieldSpeed | position.FieldCourse | position.FieldFix

// fixAt is a position with the fields every decoded fix has.
func fixAt(t time.Time, lat, lon, speed, course float64, valid bool) *position.Position {
	p := &position.Position{Time: t, Lat: lat, Lon: lon, Speed: speed, Course: course, Fix: position.FixNone, Set: fixSet}
	if valid {
		p.Fix = position.Fix2D
	}
	return p
}

// withBatt adds a battery percentage to p.
func withBatt(p *position.Position, b float64) *position.Position {
	p.Batt = b
	p.Set |= position.FieldBatt
	return p
}

func unhex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// decodeTests are messages captured from devices and the Message or error
// each must give; they also seed FuzzDecode. A source names where each was
// published: "decoder test" is the H02ProtocolDecoderTest.java of the
// Traccar server, "frame test" its H02FrameDecoderTest.java, both captured
// from devices; "protocol document" an example printed in a vendor's H02
// document. Messages "altered" are captures with one field changed, to
// reach an error.
var decodeTests = []struct {
	name string
	msg  []byte
	now  time.Time // zero for now
	want Message
	err  string // Error() of the error, "" for none
	is   error  // the sentinel the error wraps
}{
	// V1: the position report.
	{
		name: "V1 valid", // frame test
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1", Valid: true,
			Position: fixAt(utc(2016, 11, 13, 12, 45, 52), dm(50, 35.3129), dm(4, 31.8211), kn(0.20), 0, true)},
	},
	{
		name: "V1 invalid", // decoder test
		msg:  []byte("*HQ,3800008786,V1,062507,V,3048.2437,N,03058.5617,E,000.00,000,250413,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "3800008786", Type: "V1",
			Position: fixAt(utc(2013, 4, 25, 6, 25, 7), dm(30, 48.2437), dm(30, 58.5617), 0, 0, false)},
	},
	{
		name: "V1 with cell and battery level 6 of 6", // protocol document ("gprs protocol", sinotrack family)
		msg:  []byte("*HQ,4103000861,V1,092853,A,2234.2029,N,11351.4197,E,000.40,000,270215,FFFFFBFF,460,00,0,0,6#"),
		want: Message{Maker: "HQ", IMEI: "4103000861", Type: "V1", Valid: true, Batt: 100, HasBatt: true,
			Position: withBatt(fixAt(utc(2015, 2, 27, 9, 28, 53), dm(22, 34.2029), dm(113, 51.4197), kn(0.40), 0, true), 100)},
	},
	{
		name: "V1 western, battery level 6", // decoder test (9.93978, -84.11178 there)
		msg:  []byte("*HQ,4210051415,V1,164549,A,0956.3869,N,08406.7068,W,000.00,000,221215,FFFFFBFF,712,01,0,0,6#"),
		want: Message{Maker: "HQ", IMEI: "4210051415", Type: "V1", Valid: true, Batt: 100, HasBatt: true,
			Position: withBatt(fixAt(utc(2015, 12, 22, 16, 45, 49), dm(9, 56.3869), -dm(84, 6.7068), 0, 0, true), 100)},
	},
	{
		name: "V1 battery level 5", // decoder test
		msg:  []byte("*HQ,4106012736,V1,224434,A,1827.3855,N,06705.7577,W,000.00,000,100117,FFFFFBFF,310,260,49101,1753,5#"),
		want: Message{Maker: "HQ", IMEI: "4106012736", Type: "V1", Valid: true, Batt: 80, HasBatt: true,
			Position: withBatt(fixAt(utc(2017, 1, 10, 22, 44, 34), dm(18, 27.3855), -dm(67, 5.7577), 0, 0, true), 80)},
	},
	{
		name: "V1 southern, four cell fields and no battery", // protocol document ("GPRS Protocol", Galactic tracker)
		msg:  []byte("*HQ,2150000452,V1,191046,A,3653.1621,S,17443.7627,E,000.29,000,240217,FBFF9FFF,530,01,06072,7213#"),
		want: Message{Maker: "HQ", IMEI: "2150000452", Type: "V1", Valid: true,
			Position: fixAt(utc(2017, 2, 24, 19, 10, 46), -dm(36, 53.1621), dm(174, 43.7627), kn(0.29), 0, true)},
	},
	{
		name: "V1 southern and western, degrees without leading zeros", // decoder test
		msg:  []byte("*HQ,354188045498669,V1,195200,A,701.8915,S,3450.3399,W,0.00,205.70,050213,ffffffff,000243,000000,000000#"),
		want: Message{Maker: "HQ", IMEI: "354188045498669", Type: "V1", Valid: true,
			Position: fixAt(utc(2013, 2, 5, 19, 52, 0), -dm(7, 1.8915), -dm(34, 50.3399), 0, 205.70, true)},
	},
	{
		name: "V1 four-digit longitude", // decoder test
		msg:  []byte("*HQ,353588010001689,V1,221116,A,1548.8220,S,4753.1679,W,0.00,0.00,300413,ffffffff,0002d4,000004,0001cd,000047#"),
		want: Message{Maker: "HQ", IMEI: "353588010001689", Type: "V1", Valid: true,
			Position: fixAt(utc(2013, 4, 30, 22, 11, 16), -dm(15, 48.8220), -dm(47, 53.1679), 0, 0, true)},
	},
	{
		name: "V1 coordinates with dashes", // decoder test (-23.48349, -46.85975 there)
		msg:  []byte("*HQ,1451316409,V1,030149,A,-23-29.0095,S,-46-51.5852,W,2.4,065,070315,FFFFFFFF#"),
		want: Message{Maker: "HQ", IMEI: "1451316409", Type: "V1", Valid: true,
			Position: fixAt(utc(2015, 3, 7, 3, 1, 49), -dm(23, 29.0095), -dm(46, 51.5852), kn(2.4), 65, true)},
	},
	{
		name: "V1 coordinates with dashes, one-digit minutes", // decoder test
		msg:  []byte("*HQ,1451316485,V1,121557,A,-23-3.3408,S,-48-2.8926,W,0.1,158,241115,FFFFFFFF#"),
		want: Message{Maker: "HQ", IMEI: "1451316485", Type: "V1", Valid: true,
			Position: fixAt(utc(2015, 11, 24, 12, 15, 57), -dm(23, 3.3408), -dm(48, 2.8926), kn(0.1), 158, true)},
	},
	{
		name: "V1 coordinates without decimal point, battery level 4", // decoder test
		msg:  []byte("*HQ,5905101893,V1,105759,A,37573392,S,145037022,E,000.00,173,280122,FF7FFBFF,,,9059e2c,8232,4#"),
		want: Message{Maker: "HQ", IMEI: "5905101893", Type: "V1", Valid: true, Batt: 60, HasBatt: true,
			Position: withBatt(fixAt(utc(2022, 1, 28, 10, 57, 59), -dm(37, 57.3392), dm(145, 3.7022), 0, 173, true), 60)},
	},
	{
		name: "V1 five decimals, hexadecimal cell fields", // decoder test
		msg:  []byte("*HQ,353588020068342,V1,084436,A,3257.01525,N,00655.03865,W,57.78,40,011216,FFFBFFFF,25c,a, 154,b04c#"),
		want: Message{Maker: "HQ", IMEI: "353588020068342", Type: "V1", Valid: true,
			Position: fixAt(utc(2016, 12, 1, 8, 44, 36), dm(32, 57.01525), -dm(6, 55.03865), kn(57.78), 40, true)},
	},
	{
		name: "V1 five fields after the status, the last not a level", // decoder test
		msg:  []byte("*HQ,353588020068342,V1,062840,A,5241.1249,N,954.9490,E,0.00,0.00,231013,ffffffff,000106,000002,000203,004c87,24#"),
		want: Message{Maker: "HQ", IMEI: "353588020068342", Type: "V1", Valid: true,
			Position: fixAt(utc(2013, 10, 23, 6, 28, 40), dm(52, 41.1249), dm(9, 54.9490), 0, 0, true)},
	},
	{
		name: "V1 speed padded with spaces", // decoder test
		msg:  []byte("*HQ,865205035331981,V1,132926,A,1935.3933,N,07920.4134,E,  3.34,342,280519,FFFFFFFF#"),
		want: Message{Maker: "HQ", IMEI: "865205035331981", Type: "V1", Valid: true,
			Position: fixAt(utc(2019, 5, 28, 13, 29, 26), dm(19, 35.3933), dm(79, 20.4134), kn(3.34), 342, true)},
	},
	{
		name: "V1 a number before the date", // decoder test
		msg:  []byte("*HQ,4210209006,V1,054048,A,2828.2297,N,07733.4332,E,000.5,047,4,080918,EEE7FBDF,4261193,0#"),
		want: Message{Maker: "HQ", IMEI: "4210209006", Type: "V1", Valid: true,
			Position: fixAt(utc(2018, 9, 8, 5, 40, 48), dm(28, 28.2297), dm(77, 33.4332), kn(0.5), 47, true)},
	},
	{
		name: "V1 empty validity", // decoder test
		msg:  []byte("*HQ,355488020119695,V1,050418,,2827.61232,N,07703.84822,E,0.00,0,031015,FFFEFBFF#"),
		want: Message{Maker: "HQ", IMEI: "355488020119695", Type: "V1",
			Position: fixAt(utc(2015, 10, 3, 5, 4, 18), dm(28, 27.61232), dm(77, 3.84822), 0, 0, false)},
	},
	{
		name: "V1 no fix, empty fields", // decoder test
		msg:  []byte("*HQ,353505510948929,V1,,V,,N,,E,0.00,0,,FFFFF7FF,f0,a,11a0,c0c6#"),
		want: Message{Maker: "HQ", IMEI: "353505510948929", Type: "V1"},
	},
	{
		name: "V1 no fix, zero fields", // decoder test
		msg:  []byte("*HQ,353588020068342,V1,000000,V,0.0000,0,0.0000,0,0.00,0.00,000000,ffffffff,000106,000002,000203,004c87,16#"),
		want: Message{Maker: "HQ", IMEI: "353588020068342", Type: "V1"},
	},
	{
		name: "V1 no fix, coordinates without time or date", // decoder test
		msg:  []byte("*HQ,353505220873067,V1,,V,4605.75732,N,01430.73863,E,0.00,0,,FFFFFFEF,125,194,  64,d3#"),
		want: Message{Maker: "HQ", IMEI: "353505220873067", Type: "V1"},
	},
	{
		name: "V1 of another maker", // decoder test; the protocol document's example values
		msg:  []byte("*TH,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"),
		want: Message{Maker: "TH", IMEI: "2020916012", Type: "V1", Valid: true,
			Position: fixAt(utc(2002, 9, 22, 5, 3, 16), dm(22, 12.8745), dm(113, 46.6574), kn(14.28), 28, true)},
	},
	{
		name: "V1 without its date takes the day of now", // frame test, the date removed
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,,FFFFFBFF#"),
		now:  utc(2016, 11, 14, 0, 10, 0),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1", Valid: true,
			Position: fixAt(utc(2016, 11, 13, 12, 45, 52), dm(50, 35.3129), dm(4, 31.8211), kn(0.20), 0, true)},
	},
	{
		name: "V1 without an IMEI", // decoder test
		msg:  []byte("*HQ,,V1,173212,A,2225.78879,S,02829.19021,E,0.00,0,290418,FFFFFBFF#"),
		want: Message{Maker: "HQ"},
		err:  "h02: imei: missing",
	},

	// V4: the confirmation of a command, with a fix.
	{
		name: "V4 confirming S17", // decoder test
		msg:  []byte("*TH,2020916012,V4,S17,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"),
		want: Message{Maker: "TH", IMEI: "2020916012", Type: "V4", Valid: true,
			Position: fixAt(utc(2002, 9, 22, 5, 3, 16), dm(22, 12.8745), dm(113, 46.6574), kn(14.28), 28, true)},
	},
	{
		name: "V4 confirming S14 with its parameters", // decoder test
		msg:  []byte("*TH,2020916012,V4,S14,100,10,1,3,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"),
		want: Message{Maker: "TH", IMEI: "2020916012", Type: "V4", Valid: true,
			Position: fixAt(utc(2002, 9, 22, 5, 3, 16), dm(22, 12.8745), dm(113, 46.6574), kn(14.28), 28, true)},
	},
	{
		name: "V4 confirming S1 with text parameters", // decoder test
		msg:  []byte("*TH,2020916012,V4,S1,OK,pass_word,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFD#"),
		want: Message{Maker: "TH", IMEI: "2020916012", Type: "V4", Valid: true,
			Position: fixAt(utc(2002, 9, 22, 5, 3, 16), dm(22, 12.8745), dm(113, 46.6574), kn(14.28), 28, true)},
	},

	// The other position types.
	{
		name: "V19 with SIM fields", // decoder test
		msg:  []byte("*HQ,4209951296,V19,214452,A,5201.0178,N,01830.5029,E,000.00,000,200417,,195.63.13.195,89480610500392633029,BFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4209951296", Type: "V19", Valid: true,
			Position: fixAt(utc(2017, 4, 20, 21, 44, 52), dm(52, 1.0178), dm(18, 30.5029), 0, 0, true)},
	},
	{
		name: "V19 invalid, southern and western", // decoder test
		msg:  []byte("*HQ,4109179024,V19,181519,V,3853.2587,S,06205.9175,W,000.00,000,090217,,5492932630888,8954315265044716555?,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4109179024", Type: "V19",
			Position: fixAt(utc(2017, 2, 9, 18, 15, 19), -dm(38, 53.2587), -dm(62, 5.9175), 0, 0, false)},
	},
	{
		name: "V2 with a coding scheme for validity", // decoder test
		msg:  []byte("*HQ,353505221264507,V2,100220,0,5238.26259,N,00507.33983,E,0.25,0,280917,FFFFFFFF,cc,28,  db,d75b#"),
		want: Message{Maker: "HQ", IMEI: "353505221264507", Type: "V2",
			Position: fixAt(utc(2017, 9, 28, 10, 2, 20), dm(52, 38.26259), dm(5, 7.33983), kn(0.25), 0, false)},
	},
	{
		name: "VI1 answer to a location request", // decoder test
		msg:  []byte("*HQ,353505221264507,VI1,075146,0,5238.25900,N,00507.33429,E,0.54,0,250917,FFFFFFFF,cc,28,  db,d75b#"),
		want: Message{Maker: "HQ", IMEI: "353505221264507", Type: "VI1",
			Position: fixAt(utc(2017, 9, 25, 7, 51, 46), dm(52, 38.25900), dm(5, 7.33429), kn(0.54), 0, false)},
	},
	{
		name: "V5", // decoder test
		msg:  []byte("*HQ,9180271064,V5,091233,V,2348.8912,N,09021.3302,E,000.00,000,051219,FFFFBBFF,470,01,21019,2033,2921283#"),
		want: Message{Maker: "HQ", IMEI: "9180271064", Type: "V5",
			Position: fixAt(utc(2019, 12, 5, 9, 12, 33), dm(23, 48.8912), dm(90, 21.3302), 0, 0, false)},
	},
	{
		name: "VP1 cells, no fix", // decoder test
		msg:  []byte("*hq,356327081001239,VP1,V,470,002,92,3565,0Y92,19433,30Y92,1340,29#"),
		want: Message{Maker: "hq", IMEI: "356327081001239", Type: "VP1"},
	},
	{
		name: "VP1 fix without a time of day, even on the day of now", // decoder test
		msg:  []byte("*hq,356327080425330,VP1,A,2702.7245,S,15251.9311,E,0.48,0.0000,080917#"),
		now:  utc(2017, 9, 8, 3, 12, 45),
		want: Message{Maker: "hq", IMEI: "356327080425330", Type: "VP1", Valid: true},
	},

	// Messages without a position.
	{
		name: "NBR cell towers", // decoder test
		msg:  []byte("*HQ,4109179024,NBR,103732,722,310,0,6,8106,32010,23,8101,22007,25,8106,12010,23,8106,22105,22,8101,22012,16,8106,42010,5,100217,FFFFFBFF,5#"),
		want: Message{Maker: "HQ", IMEI: "4109179024", Type: "NBR"},
	},
	{
		name: "NBR without the trailing field", // decoder test
		msg:  []byte("*HQ,1600068812,NBR,141335,262,02,255,6,431,17003,26,431,11101,13,431,6353,13,431,22172,13,431,11093,13,431,60861,10,151216,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "1600068812", Type: "NBR"},
	},
	{
		name: "LINK with battery", // decoder test
		msg:  []byte("*HQ,1700086468,LINK,180902,15,0,84,0,0,240517,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "1700086468", Type: "LINK", Batt: 84, HasBatt: true},
	},
	{
		name: "LINK with satellites", // decoder test
		msg:  []byte("*HQ,1600068860,LINK,112137,20,8,67,0,0,081116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "1600068860", Type: "LINK", Batt: 67, HasBatt: true},
	},
	{
		name: "HTBT heartbeat with battery", // decoder test
		msg:  []byte("*HQ,135790246811220,HTBT,100#"),
		want: Message{Maker: "HQ", IMEI: "135790246811220", Type: "HTBT", Batt: 100, HasBatt: true},
	},
	{
		name: "HTBT heartbeat without battery", // decoder test
		msg:  []byte("*HQ,135790246811220,HTBT#"),
		want: Message{Maker: "HQ", IMEI: "135790246811220", Type: "HTBT"},
	},
	{
		name: "XT heartbeat", // decoder test
		msg:  []byte("*HQ,356327080425330,XT,1,100#"),
		want: Message{Maker: "HQ", IMEI: "356327080425330", Type: "XT"},
	},
	{
		name: "V3 cells, not decoded", // decoder test
		msg:  []byte("*HQ,353111080001055,V3,044855,28403,01,001450,011473,158,-62,0292,0,X,030817,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "353111080001055", Type: "V3"},
	},
	{
		name: "BASE, unknown", // decoder test
		msg:  []byte("*HQ,8401016597,BASE,152609,0,0,0,0,211014,FFFFFFFF#"),
		want: Message{Maker: "HQ", IMEI: "8401016597", Type: "BASE"},
	},
	{
		name: "BS, unknown", // decoder test
		msg:  []byte("*HQ,356803210091319,BS,,2d4,a,1b63,1969,26,1b63,10b2,31,0,0,25,,ffffffff,60#"),
		want: Message{Maker: "HQ", IMEI: "356803210091319", Type: "BS"},
	},
	{
		name: "no type", // decoder test
		msg:  []byte("*HQ,4109198974,#"),
		want: Message{Maker: "HQ", IMEI: "4109198974"},
		err:  "h02: type: missing",
	},

	// Binary records.
	{
		name: "binary valid, battery level 6", // frame test, the record of "V1 valid"
		msg:  unhex("2441060116601245431311165035313006004318210e000000fffffbffff0024"),
		want: Message{IMEI: "4106011660", Binary: true, Valid: true, Batt: 100, HasBatt: true,
			Position: withBatt(fixAt(utc(2016, 11, 13, 12, 45, 43), dm(50, 35.3130), dm(4, 31.8210), 0, 0, true), 100)},
	},
	{
		name: "binary invalid, speed and course", // protocol document example; decoder test
		msg:  unhex("2410307310010503162209022212874500113466574C014028fffffbffff0000"),
		want: Message{IMEI: "1030731001", Binary: true,
			Position: fixAt(utc(2002, 9, 22, 5, 3, 16), dm(22, 12.8745), dm(113, 46.6574), kn(14), 28, false)},
	},
	{
		name: "binary southern and western", // decoder test
		msg:  unhex("24270517030820321418041423307879000463213792000056fffff9ffff0000"),
		want: Message{IMEI: "2705170308", Binary: true, Valid: true,
			Position: fixAt(utc(2014, 4, 18, 20, 32, 14), -dm(23, 30.7879), -dm(46, 32.1379), 0, 56, true)},
	},
	{
		name: "binary record of 45 bytes, with cell data", // decoder and frame tests
		msg:  unhex("24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f"),
		want: Message{Binary: true},
		err:  "h02: length: 45 bytes, want 32",
	},
	{
		name: "binary cut short", // frame test, cut
		msg:  unhex("2441060116601245431311165035313006004318210e"),
		want: Message{Binary: true},
		err:  "h02: length: 22 bytes, want 32",
		is:   ErrShort,
	},
	{
		name: "binary terminal number not BCD", // frame test, altered
		msg:  unhex("24410601166f1245431311165035313006004318210e000000fffffbffff0024"),
		want: Message{Binary: true},
		err:  "h02: imei: BCD 410601166f is not 10 digits",
	},
	{
		name: "binary course of 360", // frame test, altered
		msg:  unhex("2441060116601245431311165035313006004318210e000360fffffbffff0024"),
		want: Message{IMEI: "4106011660", Binary: true},
		err:  "h02: course: BCD 0360 is not a course in [0, 360)",
	},
	{
		name: "binary minutes of 60", // frame test, altered
		msg:  unhex("2441060116601245431311165060313006004318210e000000fffffbffff0024"),
		want: Message{IMEI: "4106011660", Binary: true},
		err:  "h02: latitude: BCD 50603130 has minutes not below 60",
	},
	{
		name: "binary 30 February", // frame test, altered
		msg:  unhex("2441060116601245433002165035313006004318210e000000fffffbffff0024"),
		want: Message{IMEI: "4106011660", Binary: true},
		err:  "h02: date: BCD 300216 is not DDMMYY",
	},

	// Broken text messages: captures altered.
	{
		name: "latitude minutes of 60",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5060.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: latitude: "5060.3129" has minutes not below 60`,
	},
	{
		name: "latitude of 91 degrees",
		msg:  []byte("*HQ,4106011660,V1,124552,A,9100.0000,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: latitude: "9100.0000" is more than 90 degrees`,
	},
	{
		name: "longitude of 181 degrees",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,18100.0001,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: longitude: "18100.0001" is more than 180 degrees`,
	},
	{
		name: "longitude not a number",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,0043l.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: longitude: "0043l.8211" is not degrees and minutes`,
	},
	{
		name: "hemisphere not N or S",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,E,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: latitude: hemisphere "E" is not N or S`,
	},
	{
		name: "course of 360",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,360,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: course: "360" is not a course in [0, 360)`,
	},
	{
		name: "speed with an exponent",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,1e3,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: speed: "1e3" is not a speed in knots up to 3887`,
	},
	{
		name: "speed beyond the model's",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,4000.00,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: speed: "4000.00" is not a speed in knots up to 3887`,
	},
	{
		name: "31 November",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,311116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: date: "311116" is not DDMMYY`,
	},
	{
		name: "hour 24",
		msg:  []byte("*HQ,4106011660,V1,244552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: time: "244552" is not HHMMSS`,
	},
	{
		name: "valid fix without time",
		msg:  []byte("*HQ,4106011660,V1,,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: time: missing`,
	},
	{
		name: "validity X",
		msg:  []byte("*HQ,4106011660,V1,124552,X,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: validity: "X" is not A or V`,
	},
	{
		name: "too few fields",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N#"),
		want: Message{Maker: "HQ", IMEI: "4106011660", Type: "V1"},
		err:  `h02: fields: 4 fields after the type, want at least 9 from time to date`,
	},
	{
		name: "LINK battery over 100",
		msg:  []byte("*HQ,1700086468,LINK,180902,15,0,184,0,0,240517,FFFFFBFF#"),
		want: Message{Maker: "HQ", IMEI: "1700086468", Type: "LINK"},
		err:  `h02: battery: "184" is not a percentage`,
	},
	{
		name: "IMEI with a letter",
		msg:  []byte("*HQ,41060l1660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		want: Message{Maker: "HQ"},
		err:  `h02: imei: "41060l1660" is not 1 to 20 digits`,
	},
	{
		name: "maker with a digit",
		msg:  []byte("*H0,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
		err:  `h02: maker: "H0" is not 1 to 8 letters`,
	},
	{
		name: "control byte inside",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,\x0000431.8211,E,000.20,000,131116,FFFFFBFF#"),
		err:  `h02: message: byte 0x00 at offset 39`,
	},
	{
		name: "no '#'",
		msg:  []byte("*HQ,4106011660,V1,124552,A,5035.3129,N"),
		err:  `h02: end: no '#' at the end`,
		is:   ErrShort,
	},
	{
		name: "line break left on",
		msg:  []byte("*HQ,135790246811220,HTBT,100#\r\n"),
		err:  `h02: end: no '#' at the end`,
		is:   ErrShort,
	},
	{
		name: "not a message",
		msg:  []byte("HQ,4106011660,V1#"),
		err:  `h02: start: byte 0x48 cannot start a message`,
		is:   ErrStart,
	},
	{
		name: "empty",
		msg:  []byte{},
		err:  `h02: length: empty message`,
		is:   ErrShort,
	},
	{
		name: "longer than MaxMessage",
		msg:  []byte("*HQ,1,V1," + strings.Repeat("0", MaxMessage) + "#"),
		err:  `h02: length: 522 bytes, more than 512`,
		is:   ErrTooLong,
	},
}

func TestDecode(t *testing.T) {
	for _, tc := range decodeTests {
		t.Run(tc.name, func(t *testing.T) {
			at := tc.now
			if at.IsZero() {
				at = now
			}
			got, err := Decode(tc.msg, at)
			if tc.err == "" && err != nil {
				t.Fatalf("Decode(%q): %v", tc.msg, err)
			}
			if tc.err != "" {
				var e *Error
				if err == nil || !errors.As(err, &e) || err.Error() != tc.err {
					t.Fatalf("Decode(%q) error = %v, want %s", tc.msg, err, tc.err)
				}
				if !errors.Is(err, tc.is) && tc.is != nil || tc.is == nil && e.Err != nil {
					t.Errorf("error %v wraps %v, want %v", err, e.Err, tc.is)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Decode(%q) =\n%s\nwant\n%s", tc.msg, show(got), show(tc.want))
			}
			if p := got.Position; p != nil {
				if err := p.Validate(at); err != nil {
					t.Errorf("position does not validate: %v", err)
				}
			}
		})
	}
}

// show formats m with its position's JSON, for failure messages.
func show(m Message) string {
	s := "{Maker:" + m.Maker + " IMEI:" + m.IMEI + " Type:" + m.Type + " Binary:" + fmtBool(m.Binary) +
		" Valid:" + fmtBool(m.Valid) + " HasBatt:" + fmtBool(m.HasBatt) + " Batt:" + string(position.AppendFloat(nil, m.Batt))
	if m.Position != nil {
		s += " Position:" + string(m.Position.AppendJSON(nil))
	}
	return s + "}"
}

func fmtBool(v bool) string {
	if v {
		return "true"
	}
	return "false"
}

// readers split a stream as networks do.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"halves", iotest.HalfReader},
	{"EOF with data", iotest.DataErrReader},
}

// scan splits stream with ScanMessages through a bufio.Scanner as the
// adapter sets it up, and returns the tokens and the error it ends with.
func scan(r io.Reader) ([][]byte, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 0, 128), MaxMessage)
	s.Split(ScanMessages)
	var tokens [][]byte
	for s.Scan() {
		tokens = append(tokens, bytes.Clone(s.Bytes()))
	}
	return tokens, s.Err()
}

// wellFormed returns the messages of decodeTests that decode without error,
// text and binary, for streams.
func wellFormed() [][]byte {
	var msgs [][]byte
	for _, tc := range decodeTests {
		if tc.err == "" {
			msgs = append(msgs, tc.msg)
		}
	}
	return msgs
}

// join joins msgs into a stream with the line breaks devices send, or none.
func join(msgs [][]byte) []byte {
	seps := []string{"\r\n", "", "\n", "\r\n\r\n"}
	var b []byte
	for i, m := range msgs {
		b = append(append(b, m...), seps[i%len(seps)]...)
	}
	return b
}

var (
	htbt   = []byte("*HQ,135790246811220,HTBT,100#")
	record = unhex("2441060116601245431311165035313006004318210e000000fffffbffff0024")
	long   = unhex("24410600082621532131081504419390060740418306000000fffffbfdff0015060000002c02dc0c000000001f")
	// full is a message of exactly MaxMessage bytes.
	full = []byte("*HQ,135790246811220,XT," + strings.Repeat("1", MaxMessage-24) + "#")
	// over is a message of MaxMessage+1 bytes.
	over = []byte("*HQ,135790246811220,XT," + strings.Repeat("1", MaxMessage-23) + "#")
)

// scanTests are streams and the tokens and error they must split into; they
// also seed FuzzScanMessages.
var scanTests = []struct {
	name   string
	stream []byte
	tokens [][]byte
	is     error // the sentinel the scan ends with, nil for a clean end
}{
	{name: "captures mixed, text and binary", stream: join(wellFormed()), tokens: wellFormed()},
	{name: "nothing"},
	{name: "line breaks only", stream: []byte("\r\n\n\r\r\n")},
	{name: "line breaks longer than MaxMessage, then a message",
		stream: append(bytes.Repeat([]byte("\r\n"), MaxMessage), htbt...), tokens: [][]byte{htbt}},
	{name: "a message of MaxMessage bytes", stream: append(append([]byte{}, full...), record...), tokens: [][]byte{full, record}},
	{name: "garbage first", stream: []byte("GET / HTTP/1.1\r\n"), is: ErrStart},
	{name: "garbage after a message", stream: append(append([]byte{}, htbt...), "\r\n\x00\x01"...), tokens: [][]byte{htbt}, is: ErrStart},
	{name: "record with cell data of 45 bytes", stream: long, tokens: [][]byte{long[:32]}, is: ErrStart},
	{name: "text without '#'", stream: []byte("*HQ,1," + strings.Repeat("0", 2*MaxMessage)), is: ErrTooLong},
	{name: "text one byte over MaxMessage", stream: over, is: ErrTooLong},
	{name: "half a text message at EOF", stream: htbt[:12], is: ErrShort},
	{name: "half a record at EOF", stream: append(append([]byte{}, htbt...), record[:20]...), tokens: [][]byte{htbt}, is: ErrShort},
}

func TestScanMessages(t *testing.T) {
	if len(full) != MaxMessage || len(over) != MaxMessage+1 {
		t.Fatalf("test messages of %d and %d bytes, want %d and %d", len(full), len(over), MaxMessage, MaxMessage+1)
	}
	for _, tc := range scanTests {
		for _, r := range readers {
			t.Run(tc.name+"/"+r.name, func(t *testing.T) {
				tokens, err := scan(r.wrap(bytes.NewReader(tc.stream)))
				if !reflect.DeepEqual(tokens, tc.tokens) {
					t.Errorf("tokens %q, want %q", tokens, tc.tokens)
				}
				var e *Error
				switch {
				case tc.is == nil && err != nil:
					t.Errorf("error %v, want none", err)
				case tc.is != nil && (!errors.Is(err, tc.is) || !errors.As(err, &e)):
					t.Errorf("error %v, want an *Error wrapping %v", err, tc.is)
				}
			})
		}
	}
}

func TestScanMessagesAsksNoMoreThanMaxMessage(t *testing.T) {
	for n := 1; n <= MaxMessage; n++ {
		data := append([]byte("*"), strings.Repeat("1", n-1)...)
		adv, tok, err := ScanMessages(data, false)
		if n < MaxMessage && (adv != 0 || tok != nil || err != nil) {
			t.Fatalf("%d bytes without '#': %d, %q, %v; want a request for more", n, adv, tok, err)
		}
		if n == MaxMessage && !errors.Is(err, ErrTooLong) {
			t.Fatalf("%d bytes without '#': error %v, want ErrTooLong", n, err)
		}
	}
}

// captures reads testdata/captures.txt: the messages Decode must accept and
// those it must reject.
func captures(t testing.TB) (accept, reject [][]byte) {
	data, err := os.ReadFile("testdata/captures.txt")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		line = strings.TrimRight(line, "\n")
		if line == "" || line[0] == '#' {
			continue
		}
		list := &accept
		if rest, ok := strings.CutPrefix(line, "! "); ok {
			list, line = &reject, rest
		}
		msg := []byte(line)
		if h, ok := strings.CutPrefix(line, "$ "); ok {
			msg = unhex(h)
		}
		*list = append(*list, msg)
	}
	return accept, reject
}

func TestCaptures(t *testing.T) {
	accept, reject := captures(t)
	for _, msg := range accept {
		m, err := Decode(msg, now)
		if err != nil {
			t.Errorf("Decode(%q): %v", msg, err)
			continue
		}
		if m.Position != nil {
			if err := m.Position.Validate(now); err != nil {
				t.Errorf("Decode(%q): position does not validate: %v", msg, err)
			}
		}
	}
	for _, msg := range reject {
		if m, err := Decode(msg, now); err == nil {
			t.Errorf("Decode(%q) = %s, want an error", msg, show(m))
		}
	}
	tokens, err := scan(iotest.HalfReader(bytes.NewReader(join(accept))))
	if err != nil || !reflect.DeepEqual(tokens, accept) {
		t.Errorf("the stream of the captures split into %q, %v", tokens, err)
	}
}

func TestNearDay(t *testing.T) {
	for _, tc := range []struct {
		now       time.Time
		h, mi, s  int
		want      time.Time
		situation string
	}{
		{utc(2016, 11, 13, 12, 50, 0), 12, 45, 52, utc(2016, 11, 13, 12, 45, 52), "earlier the same day"},
		{utc(2016, 11, 13, 12, 50, 0), 14, 50, 0, utc(2016, 11, 13, 14, 50, 0), "a device clock two hours ahead"},
		{utc(2016, 11, 13, 12, 50, 0), 15, 50, 1, utc(2016, 11, 12, 15, 50, 1), "more than dateSlack ahead: the day before"},
		{utc(2016, 11, 14, 0, 10, 0), 23, 59, 0, utc(2016, 11, 13, 23, 59, 0), "just before midnight, received after"},
		{utc(2016, 11, 13, 23, 55, 0), 0, 5, 0, utc(2016, 11, 14, 0, 5, 0), "just after midnight, by a clock ahead"},
		{time.Date(2016, 11, 14, 1, 0, 0, 0, time.FixedZone("UTC+8", 8*3600)), 16, 0, 0, utc(2016, 11, 13, 16, 0, 0), "now in another zone"},
	} {
		if got := nearDay(tc.now, tc.h, tc.mi, tc.s); !got.Equal(tc.want) {
			t.Errorf("%s: nearDay(%v, %02d:%02d:%02d) = %v, want %v", tc.situation, tc.now, tc.h, tc.mi, tc.s, got, tc.want)
		}
	}
}

func TestAppendReply(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
		now  time.Time
		dst  string
		want string
	}{
		{"V1", []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"), now, "",
			"*HQ,4106011660,V4,V1,20261121100000#"},
		{"V1 without a fix", []byte("*HQ,353505510948929,V1,,V,,N,,E,0.00,0,,FFFFF7FF,f0,a,11a0,c0c6#"), now, "",
			"*HQ,353505510948929,V4,V1,20261121100000#"},
		{"V1 of another maker", []byte("*TH,2020916012,V1,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"), now, "",
			"*TH,2020916012,V4,V1,20261121100000#"},
		{"V1 stamped in UTC", []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"),
			time.Date(2026, 11, 22, 3, 4, 5, 999e6, time.FixedZone("UTC+8", 8*3600)), "",
			"*HQ,4106011660,V4,V1,20261121190405#"},
		{"appended", []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#"), now, "*HQ,1,HTBT#",
			"*HQ,1,HTBT#*HQ,4106011660,V4,V1,20261121100000#"},
		{"NBR", []byte("*HQ,1600068812,NBR,141335,262,02,255,6,431,17003,26,431,11101,13,431,6353,13,431,22172,13,431,11093,13,431,60861,10,151216,FFFFFBFF#"), now, "",
			"*HQ,1600068812,V4,NBR,20261121100000#"},
		{"HTBT", []byte("*HQ,135790246811220,HTBT,100#"), now, "", "*HQ,135790246811220,HTBT#"},
		{"HTBT without battery", []byte("*HQ,135790246811220,HTBT#"), now, "", "*HQ,135790246811220,HTBT#"},
		{"LINK takes none", []byte("*HQ,1700086468,LINK,180902,15,0,84,0,0,240517,FFFFFBFF#"), now, "", ""},
		{"V4 takes none", []byte("*TH,2020916012,V4,S17,130305,050316,A,2212.8745,N,11346.6574,E,14.28,028,220902,FFFFFBFF#"), now, "", ""},
		{"VP1 takes none", []byte("*hq,356327081001239,VP1,V,470,002,92,3565,0Y92,19433,30Y92,1340,29#"), now, "", ""},
		{"XT takes none", []byte("*HQ,356327080425330,XT,1,100#"), now, "", ""},
		{"binary takes none", unhex("2441060116601245431311165035313006004318210e000000fffffbffff0024"), now, "", ""},
	} {
		m, err := Decode(tc.msg, now)
		if err != nil {
			t.Fatalf("%s: Decode(%q): %v", tc.name, tc.msg, err)
		}
		if got := AppendReply([]byte(tc.dst), m, tc.now); string(got) != tc.want {
			t.Errorf("%s: AppendReply = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := AppendReply(nil, Message{}, now); got != nil {
		t.Errorf("AppendReply of an empty Message = %q, want nothing", got)
	}
}

func BenchmarkDecode(b *testing.B) {
	msg := []byte("*HQ,4106011660,V1,124552,A,5035.3129,N,00431.8211,E,000.20,000,131116,FFFFFBFF#")
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := Decode(msg, now); err != nil {
			b.Fatal(err)
		}
	}
}
