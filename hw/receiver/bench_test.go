package receiver

import (
	"testing"
	"time"

	"trackgate/hw/gpssim"
	"trackgate/hw/nmeaframe"
	"trackgate/internal/epoch"
)

// stream renders n epochs of profile p at rate Hz, moving, as a receiver
// writes them.
func stream(p gpssim.Profile, n int, rate float64) []byte {
	var out []byte
	t0 := time.Date(2026, 11, 21, 8, 35, 59, 0, time.UTC)
	for i := range n {
		out = gpssim.AppendEpoch(out, p, gpssim.Fix{
			Time: t0.Add(time.Duration(float64(i) / rate * float64(time.Second))), Valid: true,
			Lat: 52.37 + float64(i)*1e-5, Lon: 4.89 + float64(i)*2e-5, Alt: 4.2, Geoid: 46, Speed: 13.9, Course: 63.4,
			HDOP: 0.6, PDOP: 1.1, VDOP: 0.9, Sats: 12, SatsInView: 30,
		})
	}
	return out
}

// BenchmarkPipeline measures framing, parsing and epoch assembly on a mixed
// multi-GNSS stream (u-blox M8: RMC, VTG, GGA, 4 GSA, 8 GSV, GLL per
// epoch), on one core. sentences/s is the figure to compare with gpsd.
func BenchmarkPipeline(b *testing.B) {
	data := stream(gpssim.UBlox, 500, 10)
	f := nmeaframe.New(false, 0)
	a := epoch.New(epoch.Options{})
	fixes := 0
	emit := func(e *epoch.Epoch) {
		if e.Valid {
			fixes++
		}
	}
	add := func(line []byte) { _ = a.AddLine(line, emit) }
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		f.Feed(data, add)
	}
	a.Flush(emit)
	b.StopTimer()
	st := f.Stats()
	if st.BadChecksum+st.GarbageBytes != 0 || fixes == 0 {
		b.Fatalf("stream not clean: %+v, %d fixes", st, fixes)
	}
	b.ReportMetric(float64(st.Sentences)/b.Elapsed().Seconds(), "sentences/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(st.Sentences), "ns/sentence")
}
