// Package gpssim simulates a GPS receiver on a serial line: a pseudo-terminal
// whose slave side (/dev/pts/N, reached through a symlink such as var/gps0)
// a reader opens as it would /dev/ttyUSB0, and on which the receiver writes
// NMEA 0183 epochs at its update rate, as a u-blox M8, a SiRF or a MediaTek
// receiver would. It can replay a GPX route or drive a generated loop, and
// reproduce what goes wrong with real receivers: corrupted checksums,
// garbage on the line, lost sentences, a cold start without a fix, the wrong
// line speed and the cable being unplugged and plugged back in.
//
// A real UART with nobody listening loses what the receiver sends; a
// pseudo-terminal does not, so a Sim makes it do so. What Linux does, and
// what a Sim does about it (the tests check each through go.bug.st/serial):
//
//   - Bytes written to the master while nobody has the slave open are not
//     lost: they queue in the slave's input, about 20 KiB of them, after
//     which a non-blocking write fails with EAGAIN and a blocking one
//     blocks for good (closing the master does not wake it). A reader that
//     opens the slave later reads them, stale; with the pty's default
//     termios they are also echoed back to the master. A Sim sets the line
//     raw (no echo), does not keep the slave open itself, and sees on the
//     master whether anyone does: poll reports POLLHUP while nobody has it
//     open, and the Sim then writes nothing. Its master is non-blocking:
//     when a reader keeps the slave open without reading, the queue fills
//     up and the epochs that do not fit are dropped, as a UART would
//     overrun. As soon as inotify reports that a reader closed the slave,
//     the Sim flushes what it left unread with TCIFLUSH on a slave
//     descriptor opened through TIOCGPTPEER (a TCOFLUSH on the master
//     flushes only part of it); a reader that reopens the device within
//     that moment may still get some of it. go.bug.st/serial puts the line
//     in exclusive mode (TIOCEXCL), which outlives a reader that dies
//     without clearing it and would lock out the next one (unless it runs
//     as root); the flush clears it too.
//   - The slave's termios, and so the line speed a reader set (for example
//     with serial.Open(path, &serial.Mode{BaudRate: 9600})), can be read
//     on the master with TCGETS: Linux answers for the slave. A Sim whose
//     Config.Baud is set sends garbage instead of sentences while the
//     reader's speed differs, as a UART at the wrong speed would receive.
//   - Closing the master (unplugging) hangs up the slave: a reader blocked
//     in Read returns at once (go.bug.st/serial reports "Port has been
//     closed", as the read returns 0 bytes), its writes fail with EIO, and
//     the /dev/pts/N node is gone at once.
//
// gpssim needs Linux pseudo-terminals: elsewhere Run fails.
package gpssim

import (
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// Config configures a Sim.
type Config struct {
	// Link, if set, is a symlink to the current slave device, replaced
	// atomically on every plug-in (a temporary link renamed over it) and
	// removed on unplug and when Run returns. Its directory is created if
	// need be; an existing file there that is not a symlink is an error.
	Link string
	// Rate is epochs per second, 0.1 to 20 (real receivers do 1 to 10);
	// 0 means 1.
	Rate float64
	// Baud is the receiver's line speed. While it is non-zero and the line
	// speed the reader set on the slave differs, the Sim writes as many
	// random bytes (never a '$', so never a sentence) instead of its
	// sentences. 0: any speed works.
	Baud int
	// Profile is the receiver to imitate; empty means UBlox.
	Profile Profile
	// Route, if not nil, is replayed, looping, with positions interpolated
	// along it: at its own timing when every point has a time, else at
	// Speed. Nil: drive a generated loop that starts at Lat, Lon.
	Route []Point
	// Lat and Lon are where the generated loop starts, degrees.
	Lat, Lon float64
	// Speed is the speed along the generated loop or an untimed Route, m/s.
	Speed float64
	// Faults are the faults to reproduce.
	Faults Faults
	// Seed seeds the random source of the faults and the generated loop:
	// runs with the same seed and the same readers are the same.
	Seed int64
	// Logger logs plugging in and out and the reader's line speed;
	// slog.Default() when nil.
	Logger *slog.Logger
	// OnEpoch, if set, is called on Run's goroutine once the last byte of
	// an epoch has been written to the pty, with the fix it encodes (faults
	// or not) and the time it was written. It is not called for epochs
	// nobody was there to receive, that did not fit in the reader's queue
	// or that went out as garbage at the wrong line speed.
	OnEpoch func(f Fix, written time.Time)
	// Now is the clock epochs are timed and stamped by; time.Now when nil.
	Now func() time.Time
	// Linger is how long Run keeps the pty open, writing nothing, after
	// its context ends, so that the reader gets the last epoch written
	// before the pty hangs up; 0 closes it at once.
	Linger time.Duration
}

// bauds are the line speeds a Sim can be set to.
var bauds = []int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600}

// geoidSeparation is the geoid separation every fix reports, metres (about
// right for the Netherlands).
const geoidSeparation = 47.0

// Sim is a simulated receiver. Create it with New and start it with Run.
type Sim struct {
	cfg      Config
	period   time.Duration
	track    *track
	rng      *rand.Rand // used by New, then by Run's goroutine only
	skyBase  int        // satellites in view on average
	skyPhase float64

	ready    chan struct{}
	path     atomic.Pointer[string]
	received atomic.Int64
	started  atomic.Bool
}

// New checks cfg and returns a Sim that Run will start. It does no I/O.
func New(cfg Config) (*Sim, error) {
	if cfg.Rate == 0 {
		cfg.Rate = 1
	}
	if !(cfg.Rate >= 0.1 && cfg.Rate <= 20) {
		return nil, fmt.Errorf("gpssim: rate %v: want 0.1 to 20 epochs per second", cfg.Rate)
	}
	if cfg.Profile == "" {
		cfg.Profile = UBlox
	}
	if !cfg.Profile.valid() {
		return nil, fmt.Errorf("gpssim: profile %q: want %s, %s or %s", cfg.Profile, UBlox, SiRF, MTK)
	}
	if cfg.Baud != 0 && !slices.Contains(bauds, cfg.Baud) {
		return nil, fmt.Errorf("gpssim: baud %d: want 0 or one of %v", cfg.Baud, bauds)
	}
	if !(cfg.Speed >= 0 && cfg.Speed < 1000) {
		return nil, fmt.Errorf("gpssim: speed %v m/s: want 0 to 1000", cfg.Speed)
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, fmt.Errorf("gpssim: faults: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Sim{
		cfg:    cfg,
		period: time.Duration(math.Round(1000/cfg.Rate)) * time.Millisecond,
		rng:    rand.New(rand.NewPCG(uint64(cfg.Seed), 0x6770_7373_696d)),
		ready:  make(chan struct{}),
	}
	route := cfg.Route
	if route == nil {
		if !(cfg.Lat >= -85 && cfg.Lat <= 85) || !(cfg.Lon >= -180 && cfg.Lon <= 180) {
			return nil, fmt.Errorf("gpssim: start %v, %v: want a latitude within ±85 and a longitude within ±180", cfg.Lat, cfg.Lon)
		}
		route = generatedLoop(cfg.Lat, cfg.Lon, cfg.Speed, s.rng)
	}
	tr, err := newTrack(route, cfg.Speed)
	if err != nil {
		return nil, fmt.Errorf("gpssim: %w", err)
	}
	s.track = tr
	s.skyBase = len(formats[cfg.Profile].sky) * 2 / 3
	if s.skyBase == 0 {
		s.skyBase = len(gpsSky) * 2 / 3
	}
	s.skyPhase = 2 * math.Pi * s.rng.Float64()
	return s, nil
}

// Ready is closed once the first pty exists and the link points to it.
func (s *Sim) Ready() <-chan struct{} { return s.ready }

// Path returns the current slave device (/dev/pts/N), or "" while unplugged.
func (s *Sim) Path() string {
	if p := s.path.Load(); p != nil {
		return *p
	}
	return ""
}

// Received returns how many bytes readers wrote to the receiver.
func (s *Sim) Received() int64 { return s.received.Load() }

// now reads the Sim's clock.
func (s *Sim) now() time.Time { return s.cfg.Now() }

// nextEpoch returns the first epoch after t: epochs are whole multiples of
// the period since the Unix epoch, as a receiver aligns them to GPS time.
func (s *Sim) nextEpoch(t time.Time) time.Time {
	p := int64(s.period)
	return time.Unix(0, (t.UnixNano()/p+1)*p).UTC()
}

// fixAt returns the fix of the epoch at t of a run started at start, as the
// profile encodes it.
func (s *Sim) fixAt(t, start time.Time) Fix {
	elapsed := t.Sub(start)
	p, speed, course := s.track.at(elapsed)
	// The sky changes slowly: two satellites more or fewer over ten minutes.
	secs := float64(t.UnixNano()) / 1e9
	inView := s.skyBase + int(math.Round(2*math.Sin(2*math.Pi*secs/600+s.skyPhase)))
	used := min(maxSats, inView*2/3+1)
	hdop := 0.5 + 5/float64(used)
	pdop := 1.6 * hdop
	return s.cfg.Profile.Round(Fix{
		Time:       t,
		Valid:      elapsed >= s.cfg.Faults.Void,
		Lat:        p.Lat,
		Lon:        math.Remainder(p.Lon, 360),
		Alt:        p.Alt,
		Geoid:      geoidSeparation,
		Speed:      speed,
		Course:     course,
		HDOP:       hdop,
		PDOP:       pdop,
		VDOP:       math.Sqrt(pdop*pdop - hdop*hdop),
		Sats:       used,
		SatsInView: inView,
	})
}
