package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"trackgate/cloud/api"
	"trackgate/internal/config"
)

var importFlags struct {
	device, format, name string
	noWait               bool
}

var importCommand = command{name: "import", usage: "FILE... --device D [--format gpx|nmea|geojson|csv] [--name N] [--no-wait]",
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&importFlags.device, "device", "", "the `device` the positions are of (required)")
		fs.StringVar(&importFlags.format, "format", "", "the files' format: gpx, nmea, geojson or csv (default: told from the content)")
		fs.StringVar(&importFlags.name, "name", "", "name of the track each file makes (default: the file's name)")
		fs.BoolVar(&importFlags.noWait, "no-wait", false, "upload and print the job ids without waiting for the imports")
	},
	run: importFiles}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func importFiles(e *env, files []string) error {
	if len(files) == 0 {
		return config.Usagef("want one or more files to import")
	}
	if importFlags.device == "" {
		return config.Usagef("--device is required: the device the positions are of")
	}
	c, err := e.client()
	if err != nil {
		return err
	}
	var results []*api.Job
	var failed []string
	for _, path := range files {
		if e.ctx.Err() != nil {
			break
		}
		j, err := importFile(e, c, path)
		if j != nil {
			results = append(results, j)
		}
		if err != nil {
			var ae *apiError
			if errors.As(err, &ae) && ae.Status == 401 {
				return err
			}
			fmt.Fprintf(e.stderr, "%s: %v\n", path, err)
			failed = append(failed, path)
		}
	}
	if e.json {
		if err := printJSON(e.stdout, results); err != nil {
			return err
		}
	}
	switch {
	case e.ctx.Err() != nil:
		return errors.New("import interrupted")
	case len(failed) > 0:
		return fmt.Errorf("%d of %d imports did not complete: %s", len(failed), len(files), strings.Join(failed, ", "))
	}
	return nil
}

// importFile uploads one file and, unless --no-wait, follows its job to
// its end.
func importFile(e *env, c *client, path string) (*api.Job, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	q := url.Values{"device": {importFlags.device}, "filename": {filepath.Base(path)}}
	if importFlags.format != "" {
		q.Set("format", importFlags.format)
	}
	if importFlags.name != "" {
		q.Set("name", importFlags.name)
	}
	tty := isTerminal(e.stderr) && !e.json
	var body io.Reader = f
	var bar *progressbar.ProgressBar
	if tty {
		bar = progressbar.NewOptions64(fi.Size(), progressbar.OptionSetWriter(e.stderr), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription("upload "+filepath.Base(path)), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowCount(), progressbar.OptionClearOnFinish())
		r := progressbar.NewReader(f, bar)
		body = &r
	}
	resp, err := c.send(e.ctx, "POST", "/api/v1/imports", q, body, "application/octet-stream", fi.Size())
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	var j api.Job
	err = json.NewDecoder(resp.Body).Decode(&j)
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("upload: reading the answer: %w", err)
	}
	if importFlags.noWait {
		if !e.json {
			fmt.Fprintln(e.stdout, j.ID)
			fmt.Fprintf(e.stderr, "%s: uploaded as job %s; follow it with trackctl jobs show --wait %s\n", path, j.ID, j.ID)
		}
		return &j, nil
	}
	if !e.json && !tty {
		fmt.Fprintf(e.stderr, "%s: uploaded (%d bytes, %s) as job %s\n", path, j.Size, j.Format, j.ID)
	}
	end, err := follow(e, c, &j, filepath.Base(path))
	if end == nil {
		return &j, err
	}
	if err == nil && !e.json {
		fmt.Fprintf(e.stdout, "%s: %s positions imported into track %s (job %s", path, strconv.FormatInt(end.Processed, 10), deref(end.Track), end.ID)
		if end.Skipped > 0 {
			fmt.Fprintf(e.stdout, ", %d records skipped", end.Skipped)
		}
		fmt.Fprintln(e.stdout, ")")
	}
	return end, err
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

// follow polls job j until it ends, showing its progress: a bar on a
// terminal, a line every few seconds otherwise. When ctx ends (Ctrl-C) it
// asks the server to cancel the job and waits for it to stop.
func follow(e *env, c *client, j *api.Job, label string) (*api.Job, error) {
	tty := isTerminal(e.stderr) && !e.json
	var bar *progressbar.ProgressBar
	lastLine := time.Time{}
	cancelled := false
	ctx := context.WithoutCancel(e.ctx)
	interval := 200 * time.Millisecond
	for {
		if !cancelled && e.ctx.Err() != nil {
			cancelled = true
			if bar != nil {
				bar.Clear()
			}
			fmt.Fprintf(e.stderr, "Cancelling job %s…\n", j.ID)
			cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := c.call(cctx, "POST", "/api/v1/jobs/"+j.ID+"/cancel", nil, nil, j)
			cancel()
			var ae *apiError
			if err != nil && !(errors.As(err, &ae) && ae.Code == "job_ended") {
				return j, fmt.Errorf("cancel job %s: %w", j.ID, err)
			}
		}
		if j.State.Ended() {
			break
		}
		if tty && j.Total != nil {
			if bar == nil {
				bar = progressbar.NewOptions64(*j.Total, progressbar.OptionSetWriter(e.stderr),
					progressbar.OptionSetDescription("import "+label), progressbar.OptionShowCount(), progressbar.OptionShowIts(),
					progressbar.OptionSetItsString("positions"), progressbar.OptionSetPredictTime(true),
					progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionFullWidth())
			}
			bar.Set64(j.Processed)
		} else if !tty && !e.json && time.Since(lastLine) >= 2*time.Second {
			lastLine = time.Now()
			fmt.Fprintf(e.stderr, "job %s: %s %d%% (%s)\n", j.ID, j.State, j.Progress, counts(j))
		}
		select {
		case <-time.After(interval):
		case <-e.ctx.Done():
			if cancelled {
				time.Sleep(interval)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := c.call(cctx, "GET", "/api/v1/jobs/"+j.ID, nil, nil, j)
		cancel()
		if err != nil {
			return j, fmt.Errorf("job %s: %w", j.ID, err)
		}
	}
	if bar != nil {
		if j.State == "completed" {
			bar.Set64(j.Processed)
			bar.Finish()
			fmt.Fprintln(e.stderr)
		} else {
			bar.Exit()
			fmt.Fprintln(e.stderr)
		}
	}
	switch j.State {
	case "failed":
		return j, fmt.Errorf("import failed: %s", j.Error)
	case "cancelled":
		return j, fmt.Errorf("import cancelled (job %s)", j.ID)
	}
	return j, nil
}

func counts(j *api.Job) string {
	total := "?"
	if j.Total != nil {
		total = strconv.FormatInt(*j.Total, 10)
	}
	s := strconv.FormatInt(j.Processed, 10) + "/" + total + " positions"
	if j.Skipped > 0 {
		s += ", " + strconv.FormatInt(j.Skipped, 10) + " skipped"
	}
	return s
}

var jobsLsFlags struct {
	state string
	limit int
}

var jobsLs = command{name: "ls", usage: "[--state pending,running,…] [--limit N]",
	flags: func(fs *flag.FlagSet) {
		fs.StringVar(&jobsLsFlags.state, "state", "", "only jobs in these comma-separated `states`")
		fs.IntVar(&jobsLsFlags.limit, "limit", 50, "at most this many jobs (1–500)")
	},
	run: func(e *env, args []string) error {
		c, err := e.connect(args, 0, 0, "no arguments")
		if err != nil {
			return err
		}
		q := url.Values{"limit": {strconv.Itoa(jobsLsFlags.limit)}}
		if jobsLsFlags.state != "" {
			q.Set("state", jobsLsFlags.state)
		}
		var page struct {
			Jobs []api.Job `json:"jobs"`
		}
		if err := c.call(e.ctx, "GET", "/api/v1/jobs", q, nil, &page); err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, page.Jobs)
		}
		rows := make([][]string, 0, len(page.Jobs))
		for _, j := range page.Jobs {
			rows = append(rows, []string{j.ID, j.Kind, j.Device, orDash(j.FileName), string(j.State), strconv.Itoa(j.Progress) + "%",
				counts(&j), localTime(j.Created), deref(j.Track)})
		}
		return table(e.stdout, []string{"ID", "KIND", "DEVICE", "FILE", "STATE", "PROGRESS", "ITEMS", "CREATED", "TRACK"}, rows)
	}}

var jobsShowFlags struct{ wait bool }

var jobsShow = command{name: "show", usage: "ID [--wait]",
	flags: func(fs *flag.FlagSet) {
		fs.BoolVar(&jobsShowFlags.wait, "wait", false, "follow the job until it ends (Ctrl-C cancels it)")
	},
	run: func(e *env, args []string) error {
		c, err := e.connect(args, 1, 1, "a job id")
		if err != nil {
			return err
		}
		var j api.Job
		if err := c.call(e.ctx, "GET", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, nil, &j); err != nil {
			return err
		}
		var ferr error
		if jobsShowFlags.wait {
			var end *api.Job
			if end, ferr = follow(e, c, &j, j.FileName); end != nil {
				j = *end
			}
		}
		if e.json {
			if err := printJSON(e.stdout, j); err != nil {
				return err
			}
			return ferr
		}
		rows := [][]string{{"id", j.ID}, {"kind", j.Kind}, {"device", j.Device}, {"file", orDash(j.FileName)},
			{"format", j.Format}, {"size", strconv.FormatInt(j.Size, 10) + " bytes"}, {"state", string(j.State)},
			{"progress", strconv.Itoa(j.Progress) + "%"}, {"items", counts(&j)}, {"created", localTime(j.Created)}}
		if j.Started != nil {
			rows = append(rows, []string{"started", localTime(*j.Started)})
		}
		if j.Ended != nil {
			rows = append(rows, []string{"ended", localTime(*j.Ended)})
			if j.Started != nil {
				rows = append(rows, []string{"took", j.Ended.Sub(*j.Started).Round(time.Millisecond).String()})
			}
		}
		if j.Track != nil {
			rows = append(rows, []string{"track", *j.Track})
		}
		if j.Error != "" {
			rows = append(rows, []string{"error", j.Error})
		}
		if err := keyValues(e.stdout, rows); err != nil {
			return err
		}
		return ferr
	}}

var jobsCancel = command{name: "cancel", usage: "ID", run: func(e *env, args []string) error {
	c, err := e.connect(args, 1, 1, "a job id")
	if err != nil {
		return err
	}
	var j api.Job
	if err := c.call(e.ctx, "POST", "/api/v1/jobs/"+url.PathEscape(args[0])+"/cancel", nil, nil, &j); err != nil {
		return err
	}
	if e.json {
		return printJSON(e.stdout, j)
	}
	if j.State == "cancelled" {
		fmt.Fprintf(e.stderr, "Job %s cancelled.\n", j.ID)
	} else {
		fmt.Fprintf(e.stderr, "Job %s asked to stop; see trackctl jobs show %s\n", j.ID, j.ID)
	}
	return nil
}}
