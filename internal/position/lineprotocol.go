package position

import "strconv"

// Measurement is the InfluxDB measurement positions are stored in.
const Measurement = "position"

// AppendLineProtocol appends p as one InfluxDB line-protocol line (with its
// newline) of measurement "position", tag device, the fields present, and the
// fix time in nanoseconds. The same device and time always make the same
// series and timestamp, so writing a position twice stores it once.
func (p *Position) AppendLineProtocol(dst []byte, device string) []byte {
	dst = append(dst, Measurement...)
	dst = append(dst, ",device="...)
	dst = appendTagValue(dst, device)
	sep := byte(' ')
	for _, f := range floatFields {
		if p.Has(f.bit) {
			dst = append(dst, sep)
			dst = append(dst, f.name...)
			dst = append(dst, '=')
			dst = appendFloat(dst, *f.ptr(p))
			sep = ','
		}
	}
	if p.Has(FieldSats) {
		dst = append(dst, sep)
		dst = append(dst, "sats="...)
		dst = strconv.AppendInt(dst, int64(p.Sats), 10)
		dst = append(dst, 'i')
		sep = ','
	}
	if p.Has(FieldFix) {
		dst = append(dst, sep)
		dst = append(dst, `fix="`...)
		for i := 0; i < len(p.Fix); i++ {
			if c := p.Fix[i]; c == '"' || c == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, p.Fix[i])
		}
		dst = append(dst, '"')
	}
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, p.Time.UnixNano(), 10)
	return append(dst, '\n')
}

// appendTagValue escapes the characters line protocol gives meaning to in a tag value.
func appendTagValue(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ',', '=', ' ', '\\':
			dst = append(dst, '\\', c)
		case '\n', '\r':
			// Line protocol cannot carry these in a tag; device ids never hold them.
			dst = append(dst, '_')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}
