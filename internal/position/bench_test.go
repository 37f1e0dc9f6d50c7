package position

import (
	"strings"
	"testing"
)

func BenchmarkAccept(b *testing.B) {
	payload := []byte(acceptCases[0].payload)
	dst := make([]Position, 0, 1)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		var errs []*Error
		dst, errs = Accept(payload, now, dst[:0])
		if len(errs) != 0 || len(dst) != 1 {
			b.Fatal(errs)
		}
	}
}

func BenchmarkAcceptBatch100(b *testing.B) {
	payload := []byte("[" + strings.TrimSuffix(strings.Repeat(acceptCases[0].payload+",", 100), ",") + "]")
	dst := make([]Position, 0, 100)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst, _ = Accept(payload, now, dst[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*100), "ns/position")
}

func BenchmarkAppendLineProtocol(b *testing.B) {
	p := acceptCases[0].want[0]
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendLineProtocol(buf[:0], "device-0001")
	}
}
