// Command nmeadecode turns a log of NMEA 0183 (files, or standard input) into
// the fixes the gateway would publish: one JSON object per epoch, in order,
// the wire contract's position for a valid fix and {"time":…,"fix":"none"}
// for an epoch without a solution. Framing and assembly counters go to
// standard error at the end. It is the gateway's pipeline without the
// serial port, for checking receiver logs (against gpsd, say).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"

	"trackgate/hw/nmeaframe"
	"trackgate/internal/config"
	"trackgate/internal/epoch"
)

func main() { config.Main(run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nmeadecode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lax := fs.Bool("nmea-lax", false, "accept sentences without a checksum")
	all := fs.Bool("all", false, "also print epochs without a solution")
	if err := config.Parse(fs, "nmeadecode [flags] [FILE...]", args, nil); err != nil {
		return err
	}
	out := bufio.NewWriter(stdout)
	f := nmeaframe.New(*lax, 0)
	a := epoch.New(epoch.Options{})
	var buf []byte
	var werr error
	emit := func(e *epoch.Epoch) {
		if !e.Valid && !*all {
			return
		}
		buf = append(e.Position.AppendJSON(buf[:0]), '\n')
		if _, err := out.Write(buf); err != nil && werr == nil {
			werr = err
		}
	}
	add := func(line []byte) { _ = a.AddLine(line, emit) }
	decode := func(r io.Reader) error {
		chunk := make([]byte, 64<<10)
		for ctx.Err() == nil {
			n, err := r.Read(chunk)
			f.Feed(chunk[:n], add)
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
		}
		return ctx.Err()
	}
	files := fs.Args()
	if len(files) == 0 {
		files = []string{"-"}
	}
	for _, name := range files {
		var err error
		if name == "-" {
			err = decode(os.Stdin)
		} else {
			var fh *os.File
			if fh, err = os.Open(name); err == nil {
				err = decode(fh)
				fh.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		f.Feed([]byte("\n"), add) // a last sentence without its line end
	}
	a.Flush(emit)
	if err := out.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if werr != nil {
		return fmt.Errorf("write: %w", werr)
	}
	counters, _ := json.Marshal(struct {
		Framing  nmeaframe.Stats `json:"framing"`
		Assembly epoch.Stats     `json:"assembly"`
	}{f.Stats(), a.Stats()})
	fmt.Fprintf(stderr, "%s\n", counters)
	return nil
}
