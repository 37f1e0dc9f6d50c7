package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"trackgate/cloud/api"
	"trackgate/internal/config"
)

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table writes rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// keyValues writes one object's fields, a "key: value" line each, aligned.
func keyValues(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

func localTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04") }

func km(m float64) string { return strconv.FormatFloat(m/1000, 'f', 2, 64) + " km" }

func duration(s float64) string {
	return (time.Duration(s) * time.Second).Round(time.Second).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var tracksLsFlags struct {
	device, from, to string
	limit            int
	all              bool
}

var tracksLs = command{name: "ls", usage: "[--device D] [--from T] [--to T] [--limit N] [--all]",
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&tracksLsFlags.device, "device", "", "only this device's tracks")
		fs.StringVar(&tracksLsFlags.from, "from", "", "only tracks reaching this RFC 3339 `instant` or later")
		fs.StringVar(&tracksLsFlags.to, "to", "", "only tracks started at this RFC 3339 `instant` or earlier")
		fs.IntVar(&tracksLsFlags.limit, "limit", 50, "at most this many tracks (1–500)")
		fs.BoolVar(&tracksLsFlags.all, "all", false, "every track, page after page")
	},
	run: func(e *env, args []string) error {
		c, err := e.connect(args, 0, 0, "no arguments")
		if err != nil {
			return err
		}
		f := tracksLsFlags
		q := url.Values{"limit": {strconv.Itoa(f.limit)}}
		for k, v := range map[string]string{"device": f.device, "from": f.from, "to": f.to} {
			if v != "" {
				q.Set(k, v)
			}
		}
		all := []api.Track{}
		for {
			var page struct {
				Tracks     []api.Track `json:"tracks"`
				NextCursor string      `json:"next_cursor"`
			}
			if err := c.call(e.ctx, "GET", "/api/v1/tracks", q, nil, &page); err != nil {
				return err
			}
			all = append(all, page.Tracks...)
			if !f.all || page.NextCursor == "" {
				break
			}
			q.Set("cursor", page.NextCursor)
		}
		if e.json {
			return printJSON(e.stdout, all)
		}
		rows := make([][]string, 0, len(all))
		for _, t := range all {
			state := "stopped"
			if t.Recording {
				state = "recording"
			}
			rows = append(rows, []string{t.ID, t.Device, orDash(t.Name), localTime(t.Started), duration(t.Summary.Duration),
				km(t.Summary.Distance), strconv.Itoa(t.Summary.Points), state})
		}
		return table(e.stdout, []string{"ID", "DEVICE", "NAME", "STARTED", "DURATION", "DISTANCE", "POINTS", "STATE"}, rows)
	}}

var tracksShow = command{name: "show", usage: "ID", run: func(e *env, args []string) error {
	c, err := e.connect(args, 1, 1, "a track id")
	if err != nil {
		return err
	}
	var t api.Track
	if err := c.call(e.ctx, "GET", "/api/v1/tracks/"+url.PathEscape(args[0]), nil, nil, &t); err != nil {
		return err
	}
	if e.json {
		return printJSON(e.stdout, t)
	}
	stopped := "recording"
	if t.Stopped != nil {
		stopped = localTime(*t.Stopped)
	}
	s := t.Summary
	rows := [][]string{
		{"id", t.ID}, {"name", orDash(t.Name)}, {"device", t.Device}, {"started", localTime(t.Started)}, {"stopped", stopped},
		{"points", strconv.Itoa(s.Points)}, {"distance", km(s.Distance)}, {"duration", duration(s.Duration)},
		{"moving", duration(s.Moving)}, {"avg speed", fmt.Sprintf("%.1f km/h", s.AvgSpeed*3.6)},
		{"max speed", fmt.Sprintf("%.1f km/h", s.MaxSpeed*3.6)}, {"climb", fmt.Sprintf("%.0f m up, %.0f m down", s.Gain, s.Loss)},
	}
	if t.Stale {
		rows = append(rows, []string{"note", "the summary is being computed again"})
	}
	return keyValues(e.stdout, rows)
}}

var tracksExportFlags struct {
	format, out string
	simplify    float64
}

var tracksExport = command{name: "export", usage: "ID [--format gpx|geojson|csv|json] [--simplify M] [-o FILE]",
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&tracksExportFlags.format, "format", "gpx", "gpx, geojson, csv or json")
		fs.StringVar(&tracksExportFlags.out, "o", "", "write to this `file` (default: standard output)")
		fs.Float64Var(&tracksExportFlags.simplify, "simplify", 0, "simplify the line to this tolerance, in `metres`")
	},
	run: func(e *env, args []string) error {
		c, err := e.connect(args, 1, 1, "a track id")
		if err != nil {
			return err
		}
		f := tracksExportFlags
		q := url.Values{"format": {f.format}}
		if f.simplify > 0 {
			q.Set("simplify", strconv.FormatFloat(f.simplify, 'f', -1, 64))
		}
		resp, err := c.send(e.ctx, "GET", "/api/v1/tracks/"+url.PathEscape(args[0])+"/points", q, nil, "", -1)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if f.out == "" || f.out == "-" {
			_, err = io.Copy(e.stdout, resp.Body)
			return err
		}
		tmp, err := os.CreateTemp(filepath.Dir(f.out), ".trackctl-export-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		n, err := io.Copy(tmp, resp.Body)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("export to %s: %w", f.out, err)
		}
		if err := os.Rename(tmp.Name(), f.out); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "Wrote %s (%d bytes).\n", f.out, n)
		return nil
	}}

var tracksRm = command{name: "rm", usage: "ID...", run: func(e *env, args []string) error {
	c, err := e.connect(args, 1, -1, "one or more track ids")
	if err != nil {
		return err
	}
	for _, id := range args {
		if err := c.call(e.ctx, "DELETE", "/api/v1/tracks/"+url.PathEscape(id), nil, nil, nil); err != nil {
			return fmt.Errorf("delete track %s: %w", id, err)
		}
		if !e.json {
			fmt.Fprintf(e.stderr, "Deleted track %s and its points.\n", id)
		}
	}
	return nil
}}

var devicesLs = command{name: "ls", usage: "", run: func(e *env, args []string) error {
	c, err := e.connect(args, 0, 0, "no arguments")
	if err != nil {
		return err
	}
	var out struct {
		Devices []api.Device `json:"devices"`
	}
	if err := c.call(e.ctx, "GET", "/api/v1/devices", nil, nil, &out); err != nil {
		return err
	}
	if e.json {
		return printJSON(e.stdout, out.Devices)
	}
	rows := make([][]string, 0, len(out.Devices))
	for _, d := range out.Devices {
		seen := "never"
		if d.LastSeen != nil {
			seen = localTime(*d.LastSeen)
		}
		split := "off"
		if d.AutoSplit > 0 {
			split = (time.Duration(d.AutoSplit) * time.Minute).String()
		}
		rows = append(rows, []string{d.ID, orDash(d.Name), seen, orDash(d.Recording), split})
	}
	return table(e.stdout, []string{"ID", "NAME", "LAST SEEN", "RECORDING", "AUTO TRACKS"}, rows)
}}

// deviceFlags are the settings devices add and devices set take.
var deviceFlags struct {
	name      string
	idents    []string
	noIdents  bool
	speedUnit string
	secret    bool
	noSecret  bool
	given     map[string]bool
}

// deviceFlagSet registers the device settings' flags; set adds those only
// a change makes sense for.
func deviceFlagSet(set bool) func(fs *flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		deviceFlags.given = map[string]bool{}
		fs.Func("name", "the device's display `name`", func(v string) error {
			deviceFlags.name, deviceFlags.given["name"] = v, true
			return nil
		})
		fs.Func("identifier", "a further `id` the firmware-bridge knows the device by, such as a tracker's IMEI or an OsmAnd id (repeatable; replaces the list)", func(v string) error {
			deviceFlags.idents = append(deviceFlags.idents, v)
			return nil
		})
		fs.Func("speed-unit", "`unit` of the speed the device sends to the OsmAnd port: knots (Traccar Client), mps (OsmAnd app), kmh, mph, or \"\" for the bridge's default", func(v string) error {
			deviceFlags.speedUnit, deviceFlags.given["speed-unit"] = v, true
			return nil
		})
		fs.BoolVar(&deviceFlags.secret, "secret", false, "give the device a new protocol secret (the OsmAnd key), printed once; it then reports only with it")
		if set {
			fs.BoolVar(&deviceFlags.noIdents, "no-identifiers", false, "remove the device's further identifiers")
			fs.BoolVar(&deviceFlags.noSecret, "no-secret", false, "remove the device's protocol secret")
		}
	}
}

// applyDeviceFlags changes device id as the settings' flags say, and
// returns its new secret when one was asked for.
func applyDeviceFlags(e *env, c *client, id string, withName bool) (secret string, err error) {
	f := &deviceFlags
	patch := map[string]any{}
	if withName && f.given["name"] {
		patch["name"] = f.name
	}
	if len(f.idents) > 0 || f.noIdents {
		patch["identifiers"] = append([]string{}, f.idents...)
	}
	if f.given["speed-unit"] {
		patch["speed_unit"] = f.speedUnit
	}
	path := "/api/v1/devices/" + url.PathEscape(id)
	if len(patch) > 0 {
		if err := c.call(e.ctx, "PATCH", path, nil, patch, nil); err != nil {
			return "", err
		}
	}
	switch {
	case f.secret && f.noSecret:
		return "", config.Usagef("give --secret or --no-secret, not both")
	case f.secret:
		var out struct {
			Secret string `json:"secret"`
		}
		if err := c.call(e.ctx, "POST", path+"/secret", nil, nil, &out); err != nil {
			return "", err
		}
		return out.Secret, nil
	case f.noSecret:
		return "", c.call(e.ctx, "DELETE", path+"/secret", nil, nil, nil)
	}
	return "", nil
}

var devicesAdd = command{name: "add", usage: "ID [--name N] [--identifier X]... [--speed-unit U] [--secret]",
	flags: deviceFlagSet(false),
	run: func(e *env, args []string) error {
		c, err := e.connect(args, 1, 1, "a device id")
		if err != nil {
			return err
		}
		var out struct {
			ID     string `json:"id"`
			Name   string `json:"name"`
			Token  string `json:"token"`
			Secret string `json:"secret,omitempty"`
		}
		if err := c.call(e.ctx, "POST", "/api/v1/devices", nil, map[string]string{"id": args[0], "name": deviceFlags.name}, &out); err != nil {
			return err
		}
		if out.Secret, err = applyDeviceFlags(e, c, out.ID, false); err != nil {
			return fmt.Errorf("registered %s, but its settings failed: %w", out.ID, err)
		}
		if e.json {
			return printJSON(e.stdout, out)
		}
		fmt.Fprintf(e.stderr, "Registered %s. Its device token (its MQTT password, user name %s) is shown only now:\n", out.ID, out.ID)
		fmt.Fprintln(e.stdout, out.Token)
		if out.Secret != "" {
			fmt.Fprintf(e.stderr, "Its protocol secret (the OsmAnd key: end the app's server URL in ?key=SECRET), shown only now:\n")
			fmt.Fprintln(e.stdout, out.Secret)
		}
		return nil
	}}

var devicesSet = command{name: "set", usage: "ID [--name N] [--identifier X]... [--no-identifiers] [--speed-unit U] [--secret | --no-secret]",
	flags: deviceFlagSet(true),
	run: func(e *env, args []string) error {
		c, err := e.connect(args, 1, 1, "a device id")
		if err != nil {
			return err
		}
		secret, err := applyDeviceFlags(e, c, args[0], true)
		if err != nil {
			return err
		}
		var d api.Device
		if err := c.call(e.ctx, "GET", "/api/v1/devices/"+url.PathEscape(args[0]), nil, nil, &d); err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, struct {
				api.Device
				NewSecret string `json:"new_secret,omitempty"`
			}{d, secret})
		}
		if err := keyValues(e.stdout, [][]string{{"id", d.ID}, {"name", orDash(d.Name)}, {"identifiers", orDash(strings.Join(d.Identifiers, " "))},
			{"speed unit", orDash(d.SpeedUnit)}, {"secret", fmt.Sprint(d.Secret)}}); err != nil {
			return err
		}
		if secret != "" {
			fmt.Fprintf(e.stderr, "Its new protocol secret (the OsmAnd key: end the app's server URL in ?key=SECRET), shown only now:\n")
			fmt.Fprintln(e.stdout, secret)
		}
		return nil
	}}

var devicesRm = command{name: "rm", usage: "ID", run: func(e *env, args []string) error {
	c, err := e.connect(args, 1, 1, "a device id")
	if err != nil {
		return err
	}
	if err := c.call(e.ctx, "DELETE", "/api/v1/devices/"+url.PathEscape(args[0]), nil, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.stderr, "Removed device %s; its token no longer connects. Its tracks are kept.\n", args[0])
	return nil
}}

var recordFlags struct{ device, name string }

func recordFlagSet(name bool) func(fs *flag.FlagSet) {
	return func(fs *flag.FlagSet) {
		fs.StringVar(&recordFlags.device, "device", "", "the `device` that records (required)")
		if name {
			fs.StringVar(&recordFlags.name, "name", "", "the track's name")
		}
	}
}

// recordClient is the prologue of the record commands.
func recordClient(e *env, args []string) (*client, error) {
	if recordFlags.device == "" {
		return nil, config.Usagef("--device is required")
	}
	return e.connect(args, 0, 0, "no arguments")
}

var recordStart = command{name: "start", usage: "--device D [--name N]", flags: recordFlagSet(true),
	run: func(e *env, args []string) error {
		c, err := recordClient(e, args)
		if err != nil {
			return err
		}
		var t api.Track
		body := map[string]string{"device": recordFlags.device, "name": recordFlags.name}
		if err := c.call(e.ctx, "POST", "/api/v1/tracks", nil, body, &t); err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, t)
		}
		fmt.Fprintf(e.stdout, "%s\n", t.ID)
		fmt.Fprintf(e.stderr, "Recording track %s on %s since %s; stop with trackctl record stop --device %s\n",
			t.ID, t.Device, localTime(t.Started), t.Device)
		return nil
	}}

var recordStop = command{name: "stop", usage: "--device D", flags: recordFlagSet(false),
	run: func(e *env, args []string) error {
		c, err := recordClient(e, args)
		if err != nil {
			return err
		}
		var d api.Device
		if err := c.call(e.ctx, "GET", "/api/v1/devices/"+url.PathEscape(recordFlags.device), nil, nil, &d); err != nil {
			return err
		}
		if d.Recording == "" {
			return fmt.Errorf("device %s is not recording", d.ID)
		}
		var t api.Track
		if err := c.call(e.ctx, "POST", "/api/v1/tracks/"+d.Recording+"/stop", nil, nil, &t); err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, t)
		}
		fmt.Fprintf(e.stdout, "%s\n", t.ID)
		fmt.Fprintf(e.stderr, "Stopped track %s: %s, %s, %d points.\n", t.ID, km(t.Summary.Distance), duration(t.Summary.Duration), t.Summary.Points)
		return nil
	}}
