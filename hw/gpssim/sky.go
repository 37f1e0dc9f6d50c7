package gpssim

import (
	"math"
	"slices"
	"time"
)

// system is a GNSS constellation, numbered by its NMEA 4.10 system id.
type system int

const (
	gps     system = 1
	glonass system = 2
	galileo system = 3
	beidou  system = 4
)

// talker is the talker id of the constellation's GSV sentences.
func (s system) talker() string {
	return [...]string{gps: "GP", glonass: "GL", galileo: "GA", beidou: "GB"}[s]
}

// signal is the NMEA 4.10 signal id u-blox appends to GSV: L1 C/A, L1OF,
// E1 and B1I.
func (s system) signal() int {
	return [...]int{gps: 1, glonass: 1, galileo: 7, beidou: 1}[s]
}

// sat is one satellite of the simulated sky.
type sat struct {
	sys  system
	prn  int // as NMEA numbers it (GLONASS 65-96)
	rank int // position in the sky, 0 the highest
}

// maxPerSystem bounds the satellites of one constellation in a sky.
const maxPerSystem = 12

// The simulated skies, best satellite first: the first SatsInView are in
// view and the first Sats of those are used.
var (
	ubloxSky = makeSky(map[system][]int{
		gps:     {2, 5, 7, 9, 12, 13, 15, 18, 20, 24, 25, 29},
		glonass: {65, 66, 72, 73, 74, 75, 81, 82},
		galileo: {1, 3, 4, 8, 11, 12, 19, 26},
		beidou:  {6, 9, 14, 16, 21, 27},
	}, []system{gps, glonass, galileo, gps, beidou, gps, glonass, galileo})
	gpsSky = makeSky(map[system][]int{
		gps: {2, 5, 7, 9, 12, 13, 15, 18, 20, 24, 25, 29},
	}, []system{gps})
)

// makeSky interleaves the constellations' satellites in the order pattern
// repeats, skipping constellations once they have run out.
func makeSky(prns map[system][]int, pattern []system) []sat {
	var sky []sat
	next := map[system]int{}
	for left := true; left; {
		left = false
		for _, sys := range pattern {
			if i := next[sys]; i < len(prns[sys]) {
				sky = append(sky, sat{sys: sys, prn: prns[sys][i], rank: len(sky)})
				next[sys] = i + 1
				left = true
			}
		}
	}
	return sky
}

// systemsOf lists the constellations of a sky in system id order.
func systemsOf(sky []sat) []system {
	var systems []system
	for _, s := range sky {
		if !slices.Contains(systems, s.sys) {
			systems = append(systems, s.sys)
		}
	}
	slices.Sort(systems)
	return systems
}

func sortByPRN(sats []sat) {
	slices.SortFunc(sats, func(a, b sat) int { return a.prn - b.prn })
}

// look returns the satellite's elevation and azimuth in degrees and its
// signal to noise ratio in dB-Hz at t: the higher its rank the lower and
// weaker it is, and it drifts slowly across the sky.
func (s sat) look(t time.Time) (el, az, snr int) {
	minutes := float64(t.Hour()*60+t.Minute()) + float64(t.Second())/60
	el = 85 - s.rank*2 + int(math.Round(3*math.Sin(minutes/20+float64(s.prn))))
	el = min(max(el, 5), 89)
	az = (s.prn*47 + int(s.sys)*83 + int(minutes/4)) % 360
	snr = 18 + el/3 + s.prn%5
	return el, az, snr
}
