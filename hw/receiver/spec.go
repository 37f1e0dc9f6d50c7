package receiver

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"trackgate/internal/topic"
)

// Kinds of source.
const (
	KindSerial = "serial" // a serial port by path: serial:/dev/ttyUSB0[@BAUD]=DEVICE
	KindTCP    = "tcp"    // an NMEA 0183 server: tcp://HOST:PORT=DEVICE
	KindUSB    = "usb"    // a USB receiver found by its IDs: usb:VID:PID[:SERIAL][@BAUD]=DEVICE
)

// Bauds are the line speeds auto-baud tries, in order.
var Bauds = []int{4800, 9600, 19200, 38400, 57600, 115200}

// Spec names one source of NMEA and the device its fixes belong to.
type Spec struct {
	Kind   string // KindSerial, KindTCP or KindUSB
	Path   string // serial: the port's path
	Baud   int    // serial, usb: line speed; 0 means auto-baud
	Addr   string // tcp: host:port
	USB    USBID  // usb: which receiver
	Device string // the device id fixes are published under
}

// USBID identifies a USB receiver whichever port it lands on. Serial is
// optional: without it, the first port with the VID and PID matches.
type USBID struct {
	VID, PID, Serial string // VID and PID as 4 lower-case hex digits
}

func (u USBID) String() string {
	s := u.VID + ":" + u.PID
	if u.Serial != "" {
		s += ":" + u.Serial
	}
	return s
}

// String returns the spec in the form ParseSpec reads.
func (s Spec) String() string {
	return s.Source() + "=" + s.Device
}

// Source returns the spec without its device: where the NMEA comes from.
func (s Spec) Source() string {
	baud := ""
	if s.Baud != 0 {
		baud = "@" + strconv.Itoa(s.Baud)
	}
	switch s.Kind {
	case KindTCP:
		return "tcp://" + s.Addr
	case KindUSB:
		return "usb:" + s.USB.String() + baud
	}
	return "serial:" + s.Path + baud
}

// ParseSpec parses a --source value:
//
//	serial:/dev/ttyUSB0=van          auto-baud
//	serial:/dev/ttyUSB0@9600=van     fixed speed
//	tcp://192.168.4.1:10110=boat     NMEA 0183 over TCP (port 10110 by default)
//	usb:1546:01a8=van                a USB receiver by VID:PID (hex)
//	usb:1546:01a8:0123456@9600=van   … and serial number
func ParseSpec(v string) (Spec, error) {
	i := strings.LastIndexByte(v, '=')
	if i < 0 {
		return Spec{}, fmt.Errorf("source %q: want SOURCE=DEVICE", v)
	}
	src, device := v[:i], v[i+1:]
	if err := topic.ValidDevice(device); err != nil {
		return Spec{}, fmt.Errorf("source %q: %w", v, err)
	}
	s := Spec{Device: device}
	var err error
	switch {
	case strings.HasPrefix(src, "tcp://"):
		s.Kind, s.Addr = KindTCP, strings.TrimPrefix(src, "tcp://")
		host, port, splitErr := net.SplitHostPort(s.Addr)
		if splitErr != nil {
			host, port = s.Addr, "10110"
		}
		if host == "" {
			return Spec{}, fmt.Errorf("source %q: no host", v)
		}
		if net.ParseIP(host) == nil && !validHostname(host) {
			return Spec{}, fmt.Errorf("source %q: bad host %q", v, host)
		}
		if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
			return Spec{}, fmt.Errorf("source %q: bad port %q", v, port)
		}
		s.Addr = net.JoinHostPort(host, port)
	case strings.HasPrefix(src, "serial:"):
		s.Kind = KindSerial
		s.Path, s.Baud, err = splitBaud(strings.TrimPrefix(src, "serial:"))
		if err == nil && s.Path == "" {
			err = fmt.Errorf("no port path")
		}
	case strings.HasPrefix(src, "usb:"):
		s.Kind = KindUSB
		var ids string
		ids, s.Baud, err = splitBaud(strings.TrimPrefix(src, "usb:"))
		if err == nil {
			s.USB, err = parseUSBID(ids)
		}
	default:
		return Spec{}, fmt.Errorf("source %q: want serial:PATH[@BAUD], usb:VID:PID[:SERIAL][@BAUD] or tcp://HOST:PORT before =DEVICE", v)
	}
	if err != nil {
		return Spec{}, fmt.Errorf("source %q: %w", v, err)
	}
	return s, nil
}

// splitBaud splits "PATH@BAUD" (BAUD optional).
func splitBaud(s string) (string, int, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return s, 0, nil
	}
	baud, err := strconv.Atoi(s[i+1:])
	if err != nil || baud < 50 || baud > 4_000_000 {
		return "", 0, fmt.Errorf("bad baud rate %q", s[i+1:])
	}
	return s[:i], baud, nil
}

func parseUSBID(s string) (USBID, error) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) < 2 {
		return USBID{}, fmt.Errorf("want VID:PID[:SERIAL], got %q", s)
	}
	id := USBID{VID: strings.ToLower(parts[0]), PID: strings.ToLower(parts[1])}
	if len(parts) == 3 {
		id.Serial = parts[2]
	}
	for _, h := range []string{id.VID, id.PID} {
		if _, err := strconv.ParseUint(h, 16, 16); err != nil || len(h) != 4 {
			return USBID{}, fmt.Errorf("USB id %q: VID and PID are 4 hex digits", s)
		}
	}
	return id, nil
}

// ParseSpecs reads a sources file: one ParseSpec value per line; blank lines
// and lines starting with '#' are skipped. It is how USB receivers keep their
// device ids: list them by VID, PID and serial number, e.g.
//
//	# u-blox on the dashboard, Prolific adapter in the boot
//	usb:1546:01a8:00000001=van-dash
//	usb:067b:2303@4800=van-boot
func ParseSpecs(r io.Reader) ([]Spec, error) {
	var specs []Spec
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		s, err := ParseSpec(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		specs = append(specs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read sources: %w", err)
	}
	return specs, nil
}

// validHostname reports whether h is a DNS name: letters, digits, '-' and
// '.', not starting with '-' or '.'.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 || h[0] == '-' || h[0] == '.' {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
