package gpssim

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"

	"trackgate/internal/logx"
)

// cbauds maps the speed bits of a termios c_cflag to bits per second.
var cbauds = map[uint32]int{
	unix.B50: 50, unix.B75: 75, unix.B110: 110, unix.B134: 134, unix.B150: 150, unix.B200: 200,
	unix.B300: 300, unix.B600: 600, unix.B1200: 1200, unix.B1800: 1800, unix.B2400: 2400,
	unix.B4800: 4800, unix.B9600: 9600, unix.B19200: 19200, unix.B38400: 38400,
	unix.B57600: 57600, unix.B115200: 115200, unix.B230400: 230400, unix.B460800: 460800,
	unix.B500000: 500000, unix.B576000: 576000, unix.B921600: 921600, unix.B1000000: 1000000,
	unix.B1152000: 1152000, unix.B1500000: 1500000, unix.B2000000: 2000000,
	unix.B2500000: 2500000, unix.B3000000: 3000000, unix.B3500000: 3500000, unix.B4000000: 4000000,
}

// plug is one pseudo-terminal pair, from plug-in to unplug.
type plug struct {
	master *os.File
	fd     int    // master's descriptor, non-blocking
	path   string // slave device
	notify int    // inotify descriptor watching the slave device being opened and closed
}

// openPlug opens a pseudo-terminal whose line is raw at speed baud (9600
// when 0) and that nobody but the master has open.
func openPlug(baud int) (*plug, error) {
	m, s, err := pty.Open()
	if err != nil {
		return nil, fmt.Errorf("open a pty: %w", err)
	}
	p := &plug{master: m, fd: int(m.Fd()), path: s.Name()}
	// Fd put the master in blocking mode; the slave is closed so that the
	// master shows whether anyone else has it open.
	err = errors.Join(setRaw(p.fd, baud), s.Close(), unix.SetNonblock(p.fd, true))
	if err == nil {
		p.notify, err = unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
		if err == nil {
			if _, err = unix.InotifyAddWatch(p.notify, p.path, unix.IN_OPEN|unix.IN_CLOSE); err != nil {
				unix.Close(p.notify)
			}
		}
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("set up pty %s: %w", p.path, err)
	}
	return p, nil
}

// close closes the master, which hangs up the slave.
func (p *plug) close() error {
	return errors.Join(unix.Close(p.notify), p.master.Close())
}

// closed reports whether the slave device was closed since it was last
// asked.
func (p *plug) closed() bool {
	var buf [4096]byte
	closed := false
	for {
		n, err := unix.Read(p.notify, buf[:])
		if n <= 0 || err != nil {
			return closed
		}
		// Each event is a struct inotify_event (wd, mask, cookie, len)
		// and len bytes of name.
		for b := buf[:n]; len(b) >= unix.SizeofInotifyEvent; {
			mask, nameLen := binary.NativeEndian.Uint32(b[4:]), binary.NativeEndian.Uint32(b[12:])
			closed = closed || mask&unix.IN_CLOSE != 0
			b = b[min(unix.SizeofInotifyEvent+int(nameLen), len(b)):]
		}
	}
}

// setRaw makes the line of the pty whose master is fd raw, 8N1, at speed
// baud (9600 when 0): the pty's default would echo what the receiver writes
// back to it and turn LF into CR LF.
func setRaw(fd, baud int) error {
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	tio.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	tio.Oflag &^= unix.OPOST
	tio.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	tio.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	tio.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL
	if baud == 0 {
		baud = 9600
	}
	for bits, b := range cbauds {
		if b == baud {
			tio.Cflag |= bits
		}
	}
	tio.Cc[unix.VMIN], tio.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, tio); err != nil {
		return fmt.Errorf("set termios: %w", err)
	}
	return nil
}

// speed returns the line speed the reader set on the slave, read on the
// master: Linux answers TCGETS on a master for its slave. 0: a speed other
// than the standard ones.
func (p *plug) speed() (int, error) {
	tio, err := unix.IoctlGetTermios(p.fd, unix.TCGETS)
	if err != nil {
		return 0, fmt.Errorf("get termios of %s: %w", p.path, err)
	}
	return cbauds[tio.Cflag&unix.CBAUD], nil
}

// flushSlave discards what is queued for the slave's readers. Linux has no
// reliable way to do so from the master (a TCOFLUSH there leaves part of it),
// so it opens the slave through TIOCGPTPEER and flushes its input. It also
// lifts the exclusive mode (TIOCEXCL, which go.bug.st/serial sets) that a
// reader that died without clearing it leaves on the pty, where it would
// keep other users from opening it: a real device's goes with its last
// close.
func (p *plug) flushSlave() error {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(p.fd), unix.TIOCGPTPEER,
		uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC))
	if errno != 0 {
		return fmt.Errorf("open the slave of %s: %w", p.path, errno)
	}
	fd := int(r)
	defer unix.Close(fd)
	if err := unix.IoctlSetInt(fd, unix.TCFLSH, unix.TCIFLUSH); err != nil {
		return fmt.Errorf("flush %s: %w", p.path, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TIOCNXCL, 0); err != nil {
		return fmt.Errorf("clear exclusive mode of %s: %w", p.path, err)
	}
	return nil
}

// runner is the state of a running Sim, owned by Run's goroutine.
type runner struct {
	*Sim
	start     time.Time
	wakeFd    int   // readable once Run's context is done
	plug      *plug // nil while unplugged
	attached  bool  // someone has the slave open
	banner    bool  // the banner is still to be sent on this plug
	lineSpeed int   // the reader's line speed last seen, -1 before any
	inj       injector
	in        []byte // the line the reader is writing
	buf, msg  []byte
	out       []byte
	fds       []unix.PollFd
}

// Run plugs the receiver in, writes an epoch every period until ctx ends,
// unplugging and plugging back in as Faults say, and cleans up: the pty is
// closed and the link removed. It returns nil when ctx ends, or the error
// that stopped it. Run may be called once.
func (s *Sim) Run(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("gpssim: Run called twice")
	}
	wake, wakeW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("gpssim: %w", err)
	}
	defer wake.Close()
	defer wakeW.Close()
	stop := context.AfterFunc(ctx, func() { wakeW.Write([]byte{0}) })
	defer stop()

	r := &runner{Sim: s, start: s.now(), wakeFd: int(wake.Fd()), inj: injector{f: s.cfg.Faults, rng: s.rng}}
	if err := r.plugIn(); err != nil {
		return err
	}
	defer r.unplug()
	close(s.ready)

	f := s.cfg.Faults
	var toggle time.Time // when to unplug or plug in next; zero: never
	if f.UnplugAfter > 0 {
		toggle = r.start.Add(f.UnplugAfter)
	}
	next := s.nextEpoch(r.start)
	for ctx.Err() == nil {
		now := s.now()
		if !toggle.IsZero() && !now.Before(toggle) {
			toggle = time.Time{}
			if r.plug != nil {
				r.unplug()
				if f.ReplugAfter > 0 {
					toggle = now.Add(f.ReplugAfter)
				}
			} else {
				if err := r.plugIn(); err != nil {
					return err
				}
				toggle = now.Add(f.UnplugAfter)
			}
		}
		r.service()
		if at := s.now(); !at.Before(next) {
			// The latest epoch due: when the Sim ran late, it skips the
			// ones it missed rather than send them stale.
			due := s.nextEpoch(at).Add(-s.period)
			if skipped := int(due.Sub(next) / s.period); skipped > 0 {
				r.cfg.Logger.Warn("late; epochs skipped", "skipped", skipped, "epoch", due)
			}
			r.epoch(due)
			next = due.Add(s.period)
		}
		deadline := next
		if !toggle.IsZero() && toggle.Before(deadline) {
			deadline = toggle
		}
		if err := r.wait(deadline); err != nil {
			return err
		}
	}
	if s.cfg.Linger <= 0 {
		return nil
	}
	wake.Read(make([]byte, 1)) // the wake-up of ctx's end (written once), so that polls wait again
	for end := s.now().Add(s.cfg.Linger); s.now().Before(end); {
		r.service()
		if err := r.wait(end); err != nil {
			return err
		}
	}
	return nil
}

// plugIn opens a new pty and points the link at it.
func (r *runner) plugIn() error {
	p, err := openPlug(r.cfg.Baud)
	if err != nil {
		return fmt.Errorf("gpssim: %w", err)
	}
	if err := r.pointLink(p.path); err != nil {
		p.close()
		return fmt.Errorf("gpssim: %w", err)
	}
	r.plug, r.attached, r.banner, r.lineSpeed, r.in = p, false, true, -1, r.in[:0]
	r.path.Store(&p.path)
	r.cfg.Logger.Info("plugged in", "path", p.path, "link", r.cfg.Link,
		"profile", r.cfg.Profile, "rate", r.cfg.Rate, "baud", r.cfg.Baud)
	return nil
}

// unplug closes the pty, which hangs up its reader, and removes the link.
func (r *runner) unplug() {
	if r.plug == nil {
		return
	}
	empty := ""
	r.path.Store(&empty)
	r.removeLink(r.plug.path)
	if err := r.plug.close(); err != nil {
		r.cfg.Logger.Warn("close pty", "path", r.plug.path, logx.Err(err))
	}
	r.cfg.Logger.Info("unplugged", "path", r.plug.path, "link", r.cfg.Link)
	r.plug = nil
}

// linkSeq tells apart the temporary links of the Sims of a process.
var linkSeq atomic.Int64

// pointLink points the link at path, atomically.
func (r *runner) pointLink(path string) error {
	link := r.cfg.Link
	if link == "" {
		return nil
	}
	if fi, err := os.Lstat(link); err == nil && fi.Mode()&os.ModeSymlink == 0 {
		return fmt.Errorf("link %s exists and is not a symlink", link)
	}
	dir := filepath.Dir(link)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.%d", filepath.Base(link), os.Getpid(), linkSeq.Add(1)))
	if err := os.Symlink(path, tmp); err != nil {
		return fmt.Errorf("link %s: %w", link, err)
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", link, err)
	}
	return nil
}

// removeLink removes the link if it still points at path.
func (r *runner) removeLink(path string) {
	link := r.cfg.Link
	if link == "" {
		return
	}
	if target, err := os.Readlink(link); err != nil || target != path {
		return
	}
	if err := os.Remove(link); err != nil {
		r.cfg.Logger.Warn("remove link", "link", link, logx.Err(err))
	}
}

// service reads what the reader wrote and finds out whether anyone has the
// slave open. When a reader has closed it, it flushes what that reader left
// unread, so that the next one does not get it stale, even if it opened the
// device before the Sim noticed.
func (r *runner) service() {
	if r.plug == nil {
		return
	}
	closed := r.plug.closed()
	fds := []unix.PollFd{{Fd: int32(r.plug.fd), Events: unix.POLLIN}}
	if _, err := unix.Poll(fds, 0); err != nil && err != unix.EINTR {
		r.cfg.Logger.Warn("poll pty", "path", r.plug.path, logx.Err(err))
		return
	}
	if attached := fds[0].Revents&unix.POLLHUP == 0; attached != r.attached {
		r.attached = attached
		r.cfg.Logger.Debug("reader", "path", r.plug.path, "attached", attached)
	}
	if fds[0].Revents&unix.POLLIN != 0 {
		r.read()
	}
	if closed {
		if err := r.plug.flushSlave(); err != nil {
			r.cfg.Logger.Warn("flush", logx.Err(err))
		}
		r.plug.closed() // the flush's own open and close
	}
}

// read reads what the reader wrote, counting it and answering the queries
// the profile knows.
func (r *runner) read() {
	var buf [512]byte
	for {
		n, err := unix.Read(r.plug.fd, buf[:])
		if n <= 0 || err != nil {
			return // EAGAIN: all read; EIO: nobody has the slave open
		}
		r.received.Add(int64(n))
		for _, c := range buf[:n] {
			if c != '\n' {
				if len(r.in) < 128 {
					r.in = append(r.in, c)
				}
				continue
			}
			if r.cfg.Profile == MTK && string(bytes.TrimSuffix(r.in, []byte("\r"))) == mtkQuery {
				r.send(AppendSentence(nil, mtkRelease), nil)
			}
			r.in = r.in[:0]
		}
	}
}

// epoch sends the epoch at t.
func (r *runner) epoch(t time.Time) {
	if r.plug == nil || !r.attached {
		return // nobody listens: the receiver's bytes go nowhere
	}
	f := r.fixAt(t, r.start)
	r.buf = AppendEpoch(r.buf[:0], r.cfg.Profile, f)
	r.send(r.buf, &f)
}

// send writes b to the reader in one write, after the banner if it is the
// first thing the reader gets since the plug-in, through the faults, or as
// much garbage at the wrong line speed, and reports the epoch f if it went
// out whole.
func (r *runner) send(b []byte, f *Fix) {
	if r.plug == nil || !r.attached {
		return
	}
	if r.banner {
		r.msg = append(AppendBanner(r.msg[:0], r.cfg.Profile), b...)
		b = r.msg
		r.banner = false
	}
	garbled := false
	if r.cfg.Baud != 0 {
		speed, err := r.plug.speed()
		if err != nil {
			r.cfg.Logger.Warn("line speed", logx.Err(err))
		}
		garbled = speed != r.cfg.Baud
		if speed != r.lineSpeed {
			r.lineSpeed = speed
			if garbled {
				r.cfg.Logger.Warn("the reader's line speed differs; it gets garbage",
					"path", r.plug.path, "reader_baud", speed, "baud", r.cfg.Baud)
			} else {
				r.cfg.Logger.Debug("the reader's line speed matches", "path", r.plug.path, "baud", speed)
			}
		}
	}
	if garbled {
		r.out = r.inj.garbage(r.out[:0], len(b), "$")
	} else {
		r.out = r.inj.apply(r.out[:0], b)
	}
	n, err := unix.Write(r.plug.fd, r.out)
	if err != nil || n < len(r.out) {
		r.cfg.Logger.Debug("the reader's queue is full; output lost", "path", r.plug.path,
			"wrote", max(n, 0), "of", len(r.out), logx.Err(err))
		return
	}
	if f != nil && !garbled && r.cfg.OnEpoch != nil {
		r.cfg.OnEpoch(*f, r.now())
	}
}

// wait waits until deadline, Run's context is done, the slave device is
// opened or closed, or the reader writes.
func (r *runner) wait(deadline time.Time) error {
	d := max(deadline.Sub(r.now()), 0)
	r.fds = append(r.fds[:0], unix.PollFd{Fd: int32(r.wakeFd), Events: unix.POLLIN})
	if r.plug != nil {
		r.fds = append(r.fds, unix.PollFd{Fd: int32(r.plug.notify), Events: unix.POLLIN})
		if r.attached {
			// While nobody has the slave open, the master polls POLLHUP
			// at once; inotify tells when someone opens it.
			r.fds = append(r.fds, unix.PollFd{Fd: int32(r.plug.fd), Events: unix.POLLIN})
		}
	}
	ts := unix.NsecToTimespec(int64(d))
	if _, err := unix.Ppoll(r.fds, &ts, nil); err != nil && err != unix.EINTR {
		return fmt.Errorf("gpssim: poll: %w", err)
	}
	return nil
}
