package influx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"trackgate/internal/position"
)

// parseAll runs the chunk parser over r and returns copies of the rows.
func parseAll(r io.Reader) ([]position.Position, int, error) {
	var rows []position.Position
	d := newChunkReader(r)
	err := d.run(func(p *position.Position) error {
		rows = append(rows, *p)
		return nil
	})
	return rows, d.chunks, err
}

// chunkedReader returns at most n bytes per Read.
type chunkedReader struct {
	r io.Reader
	n int
}

func (c chunkedReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

var fuzzSeeds = []string{
	`{"results":[{"statement_id":0}]}`,
	`{"results":[{"statement_id":0,"series":[{"name":"position","columns":["time","alt","batt","fix","lat","lon","sats"],"values":[[1700000000000000000,null,null,null,0.5,2,null],[1700201600000000000,3,1e-7,"3d",1.5,2,1]],"partial":true}],"partial":true}]}
{"results":[{"statement_id":0,"series":[{"name":"position","columns":["time","alt","batt","fix","lat","lon","sats"],"values":[[1701814400000000000,null,null,null,9.5,2,null]]}]}]}
`,
	`{"results":[{"statement_id":0,"series":[{"name":"position","columns":["time","acc","alt","batt","course","device","fix","geoid","hdop","lat","lon","pdop","sats","speed","vdop"],"values":[[1700000000123456789,4.5,-10.25,87,359.999,"a\"b\\c","rtk",47.1,0.9,52.123456789012345,-4.9,1.4,12,0,1.1]]}]}]}`,
	`{"results":[{"statement_id":0,"series":[{"name":"position","columns":["time","lat","lon"],"values":[["2023-11-14T22:13:20.123456789Z",1,2]]}]}]}`,
	`{"results":[{"statement_id":0,"error":"database not found: nodb"}]}`,
	`{"error":"error parsing query: found zz, expected identifier at line 1, char 43"}`,
	`{"results":[{"statement_id":0,"series":[{"name":"p","tags":{"device":"x"},"columns":["time","fix"],"values":[[1,"\u00e9\ud83d\ude00\/\b\f\n\r\t"]]}],"messages":[{"level":"warning","text":"x"}]}]}`,
	`{"results":[{"statement_id":0,"series":[{"columns":["time","lat"],"values":[[1,2],[3]]}]}]}`,
	`{"results":[{"series":[{"values":[[1]],"columns":["time"]}]}]}`,
	`{"results":[{"series":[{"columns":["time","sats"],"values":[[-5,1e1],[9223372036854775807,-0]]}]}]}`,
	`{"results":[{"series":[{"columns":["time","lat"],"values":[[1,1e999]]}]}]}`,
	`{"results":[{"series":[{"columns":["time","lat"],"values":[[1,01]]}]}]}`,
	`{"results":[{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]}`,
	`{"results":[]}{"results":[]}  `,
	`{"results":[{"statement_id":0}]}garbage`,
	"",
	"   \n",
	`{"results":[{"series":[{"columns":["time"],"values":[[1]]`,
	`{"results":[{"series":[{"columns":["time","lat"],"values":[[1,true]]}]}]}`,
	`{"results":[{"statement_id":0,"error":null,"series":[{"columns":["time","lat"],"values":[[1,"2"]]}]}]}`,
}

// FuzzChunkParser feeds arbitrary bytes to the chunk parser as InfluxDB's
// answer: it must never panic, must give the same rows and error whatever
// the sizes of the reads, must accept only valid JSON, and must agree with a
// decoder built on encoding/json whenever both accept the answer.
func FuzzChunkParser(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, chunks, err := parseAll(bytes.NewReader(data))
		if err != nil {
			var se *ServerError
			if !errors.Is(err, ErrMalformed) && !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is neither ErrMalformed nor a *ServerError", err, err)
			}
		}
		for i, p := range rows {
			if !p.Has(position.FieldTime) {
				t.Fatalf("row %d without time: %+v", i, p)
			}
		}
		sizes := []int{1, 7}
		if len(data) > 1<<14 { // a large input read a byte at a time makes the fuzzer crawl
			sizes = []int{7, 4093}
		}
		for _, n := range sizes {
			rows2, chunks2, err2 := parseAll(chunkedReader{bytes.NewReader(data), n})
			if fmt.Sprint(err) != fmt.Sprint(err2) || chunks != chunks2 || !reflect.DeepEqual(rows, rows2) {
				t.Fatalf("reads of %d bytes: %d rows, %d chunks, error %v; in one read: %d rows, %d chunks, error %v",
					n, len(rows2), chunks2, err2, len(rows), chunks, err)
			}
		}
		if err != nil {
			return
		}
		// Accepted: it must be a sequence of JSON objects.
		dec := json.NewDecoder(bytes.NewReader(data))
		for {
			var v map[string]json.RawMessage
			if err := dec.Decode(&v); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("accepted what encoding/json refuses: %v", err)
			}
		}
		want, rerr := decodeReference(data)
		if rerr != nil {
			return
		}
		if len(want) != len(rows) {
			t.Fatalf("%d rows, reference %d", len(rows), len(want))
		}
		for i := range rows {
			got := rows[i]
			got.Fix = position.Fix(validUTF8(string(got.Fix)))
			if !reflect.DeepEqual(got, want[i]) {
				t.Fatalf("row %d:\n got %+v\nwant %+v", i, got, want[i])
			}
		}
	})
}

// validUTF8 replaces each byte that is not part of valid UTF-8 with U+FFFD,
// as encoding/json does.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b []byte
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		b = utf8.AppendRune(b, r)
		s = s[n:]
	}
	return string(b)
}

// decodeReference decodes an answer with encoding/json into generic values
// (exact keys, unlike struct decoding), in memory, for FuzzChunkParser.
func decodeReference(data []byte) ([]position.Position, error) {
	var rows []position.Position
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		var chunk map[string]any
		if err := dec.Decode(&chunk); err == io.EOF {
			return rows, nil
		} else if err != nil {
			return nil, err
		}
		if s, ok := chunk["error"].(string); ok {
			return nil, errors.New(s)
		}
		results, _ := chunk["results"].([]any)
		for _, r := range results {
			res, ok := r.(map[string]any)
			if !ok {
				return nil, errors.New("result not an object")
			}
			if s, ok := res["error"].(string); ok {
				return nil, errors.New(s)
			}
			series, _ := res["series"].([]any)
			for _, s := range series {
				ser, ok := s.(map[string]any)
				if !ok {
					return nil, errors.New("series not an object")
				}
				cols, _ := ser["columns"].([]any)
				values, _ := ser["values"].([]any)
				for _, v := range values {
					row, ok := v.([]any)
					if !ok || len(row) != len(cols) {
						return nil, errors.New("bad row")
					}
					p, err := referenceRow(cols, row)
					if err != nil {
						return nil, err
					}
					rows = append(rows, p)
				}
			}
		}
	}
}

func referenceRow(cols, row []any) (position.Position, error) {
	var p position.Position
	for i, c := range cols {
		name, ok := c.(string)
		if !ok {
			return p, errors.New("column name not a string")
		}
		v := row[i]
		if v == nil {
			if name == "time" {
				return p, errors.New("null time")
			}
			continue
		}
		num, isNum := v.(json.Number)
		str, isStr := v.(string)
		switch name {
		case "time":
			switch {
			case isNum:
				n, err := strconv.ParseInt(string(num), 10, 64)
				if err != nil {
					return p, err
				}
				p.Time = time.Unix(0, n).UTC()
			case isStr:
				t, err := time.Parse(time.RFC3339Nano, str)
				if err != nil {
					return p, err
				}
				p.Time = t.UTC()
			default:
				return p, errors.New("bad time")
			}
			p.Set |= position.FieldTime
		case "fix":
			if !isStr {
				return p, errors.New("bad fix")
			}
			p.Fix, p.Set = position.Fix(str), p.Set|position.FieldFix
		case "sats":
			if !isNum {
				return p, errors.New("bad sats")
			}
			n, err := strconv.ParseInt(string(num), 10, 0)
			if err != nil {
				f, ferr := num.Float64()
				if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<31 {
					return p, errors.New("bad sats")
				}
				n = int64(f)
			}
			p.Sats, p.Set = int(n), p.Set|position.FieldSats
		case "lat", "lon", "alt", "geoid", "speed", "course", "hdop", "pdop", "vdop", "acc", "batt":
			if !isNum {
				return p, errors.New("bad " + name)
			}
			f, err := num.Float64()
			if err != nil {
				return p, err
			}
			ptr, bit := referenceFloat(&p, name)
			*ptr, p.Set = f, p.Set|bit
		}
	}
	if !p.Has(position.FieldTime) {
		return p, errors.New("no time")
	}
	return p, nil
}

// referenceFloat returns the float field of p named name, and its bit.
func referenceFloat(p *position.Position, name string) (*float64, position.Fields) {
	switch name {
	case "lat":
		return &p.Lat, position.FieldLat
	case "lon":
		return &p.Lon, position.FieldLon
	case "alt":
		return &p.Alt, position.FieldAlt
	case "geoid":
		return &p.Geoid, position.FieldGeoid
	case "speed":
		return &p.Speed, position.FieldSpeed
	case "course":
		return &p.Course, position.FieldCourse
	case "hdop":
		return &p.HDOP, position.FieldHDOP
	case "pdop":
		return &p.PDOP, position.FieldPDOP
	case "vdop":
		return &p.VDOP, position.FieldVDOP
	case "acc":
		return &p.Acc, position.FieldAcc
	}
	return &p.Batt, position.FieldBatt
}
