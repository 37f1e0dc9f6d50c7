package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"trackgate/gateway"
	"trackgate/gateway/enrol"
	"trackgate/gateway/spool"
	"trackgate/gateway/uplink"
	"trackgate/hw/receiver"
	"trackgate/internal/config"
	"trackgate/internal/logx"
)

// gatewayScope is the scope of the enrolled gateway's broker token.
const gatewayScope = "gateway"

// uplinkCredentials sets up's token source: the token file, or the
// enrolment in data.
func uplinkCredentials(up *gateway.Uplink, tokenFile, data string, log *slog.Logger) error {
	if tokenFile != "" {
		up.Token = func(context.Context, bool) (string, error) { return readTokenFile(tokenFile) }
		if _, err := readTokenFile(tokenFile); err != nil {
			return config.Usagef("--uplink-token-file: %v", err)
		}
		return nil
	}
	st, err := enrol.Open(data, nil)
	if errors.Is(err, enrol.ErrNotEnrolled) {
		return config.Usagef("--uplink needs credentials: enrol the gateway first (gateway enroll --cloud URL --data %s), or give --uplink-token-file", data)
	}
	if err != nil {
		return err
	}
	e := &enrolled{data: data, st: st, log: log}
	up.Token = e.token
	up.Register = e.register
	up.Enrolment = e.status
	return nil
}

// readTokenFile reads a token file, which must be private.
func readTokenFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is mode %04o: others may read the token; chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// enrolled hands out the enrolled gateway's tokens. Once the enrolment is
// revoked, its file is read again when it changes, so that `gateway enroll`
// run again takes effect without a restart.
type enrolled struct {
	data string
	log  *slog.Logger
	mu   sync.Mutex
	st   *enrol.Store
	// revokedFile is the enrolment file's modification time when the
	// enrolment was found revoked.
	revokedFile time.Time
}

func (e *enrolled) store() *enrol.Store {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.st.Revoked() == nil {
		return e.st
	}
	fi, err := os.Stat(filepath.Join(e.data, enrol.File))
	if err != nil {
		return e.st
	}
	if e.revokedFile.IsZero() {
		e.revokedFile = fi.ModTime()
	} else if !fi.ModTime().Equal(e.revokedFile) {
		if st, err := enrol.Open(e.data, nil); err == nil {
			e.log.Info("enrolment file changed: using the new enrolment", "owner", st.Owner())
			e.st, e.revokedFile = st, time.Time{}
		}
	}
	return e.st
}

// token is the uplink's token source: the broker token.
func (e *enrolled) token(ctx context.Context, fresh bool) (string, error) {
	st := e.store()
	if fresh {
		if err := st.Forget(ctx, gatewayScope); err != nil {
			return "", err
		}
	}
	tok, err := st.Token(ctx, gatewayScope)
	if errors.Is(err, enrol.ErrRevoked) {
		return "", fmt.Errorf("%w: %w", uplink.ErrRevoked, err)
	}
	if err != nil {
		return "", err
	}
	return tok.AccessToken, nil
}

// register registers the receivers' devices to the gateway's owner.
func (e *enrolled) register(ctx context.Context, ids []string) error {
	st := e.store()
	added, err := st.RegisterDevices(ctx, ids)
	if len(added) > 0 {
		e.log.Info("receivers' devices registered with the cloud", "owner", st.Owner(), "devices", added)
		// The broker token lists the owner's devices: get one that has them.
		if ferr := st.Forget(ctx, gatewayScope); ferr != nil && err == nil {
			err = ferr
		}
	}
	return err
}

// status describes the enrolment for /status.
func (e *enrolled) status() any {
	st := e.store()
	out := map[string]string{"cloud": st.Cloud(), "owner": st.Owner(), "state": "enrolled"}
	if err := st.Revoked(); err != nil {
		out["state"], out["error"] = "revoked", err.Error()
	}
	return out
}

// enroll runs `gateway enroll`: the device grant, then the registration of
// the given sources' devices.
func enroll(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gateway enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cloud := fs.String("cloud", "http://127.0.0.1:8080", "the cloud's base `URL` (https, or http on loopback)")
	data := fs.String("data", "./var/gateway", "data `directory` that keeps the enrolment (enrolment.json, mode 0600)")
	timeout := fs.Duration("timeout", 15*time.Minute, "how `long` to wait for the owner's approval")
	var sources []string
	fs.Func("source", "a receiver the gateway reads, `SOURCE=DEVICE` (repeatable): its device is registered to the owner", func(v string) error {
		sources = append(sources, strings.Fields(v)...)
		return nil
	})
	log, err := logx.Parse(fs, "gateway enroll --cloud URL [--data DIR] [--source SOURCE=DEVICE]...", args, stderr)
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range sources {
		spec, err := receiver.ParseSpec(s)
		if err != nil {
			return config.Usagef("--source: %v", err)
		}
		ids = append(ids, spec.Device)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	st, err := enrol.Enroll(ctx, *cloud, *data, stdout, nil)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("not approved within %s: run gateway enroll again", *timeout)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Enrolled with %s as %s's gateway; credentials in %s/enrolment.json.\n", st.Cloud(), st.Owner(), *data)
	if len(ids) > 0 {
		added, err := st.RegisterDevices(ctx, ids)
		if err != nil {
			return err
		}
		log.Info("devices registered", "added", added)
		fmt.Fprintf(stdout, "Devices registered to %s: %s (new: %d).\n", st.Owner(), strings.Join(ids, ", "), len(added))
	}
	return nil
}

// parseBytes parses a size: a number of bytes with an optional KiB, MiB or
// GiB (or K, M, G) suffix.
func parseBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", v)
	}
	return n * mult, nil
}

// parseSync parses --uplink-fsync.
func parseSync(v string) (time.Duration, error) {
	switch v {
	case "always":
		return spool.SyncAlways, nil
	case "never":
		return spool.SyncNever, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q: want always, never or a positive interval such as 1s", v)
	}
	return d, nil
}
