package epoch

import (
	"bytes"
	"testing"
	"time"

	"trackgate/internal/position"
)

// FuzzAssemble feeds arbitrary lines to an Assembler. It must never panic,
// and every epoch it hands on must hold only what the wire contract allows:
// a valid epoch has a position that passes validation (apart from its time,
// which comes from the receiver), a void one carries no position.
func FuzzAssemble(f *testing.F) {
	for _, s := range []string{
		"$GNRMC,083559.00,A,5222.23184,N,00453.71112,E,0.004,77.52,211126,,,A,V\n$GNGGA,083559.00,5222.23184,N,00453.71112,E,1,12,0.58,4.2,M,46.0,M,,\n",
		"$GPGGA,235959.50,5222.2318,N,00453.7111,E,2,08,0.9,-3.5,M,46.0,M,1.2,0001\n$GPZDA,235959.50,21,11,2026,00,00\n$GPGGA,000000.50,5222.2318,N,00453.7111,E,4,08,0.9,,M,,M,,\n",
		"$GNGNS,014035.00,4332.69262,S,17235.48549,E,RR,13,0.9,25.63,11.24,,*70\n$GNGSA,A,3,65,66,75,,,,,,,,,,1.05,0.58,0.88,2\n",
		"$GPGSV,2,1,08,01,40,083,46,03,60,120,44,08,22,300,40,11,55,180,45\n$GPVTG,90.5,T,,M,10.000,N,18.520,K,A\n$GPGLL,5222.2318,N,00453.7111,E,083559.00,V,N\n",
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		a := New(Options{Now: func() time.Time { return now }})
		emit := func(e *Epoch) {
			p := &e.Position
			if !e.Valid {
				if p.Set&(position.FieldLat|position.FieldLon) != 0 {
					t.Fatalf("void epoch with a position: %+v", p)
				}
				return
			}
			q := *p
			q.Time = now // the receiver's clock is not ours to judge here
			if err := q.Validate(now); err != nil {
				t.Fatalf("valid epoch fails validation: %v: %+v", err, p)
			}
		}
		for _, line := range bytes.Split(data, []byte("\n")) {
			_ = a.AddLine(line, emit)
		}
		a.Flush(emit)
		st := a.Stats()
		if st.Fixes > st.Epochs || st.Reopened > st.Epochs {
			t.Fatalf("stats %+v", st)
		}
	})
}
