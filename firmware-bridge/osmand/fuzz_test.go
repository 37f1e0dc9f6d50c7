package osmand

import (
	"errors"
	"testing"
)

// FuzzDecodeQuery decodes any query string, and any body under no content
// type or a form's, checking the invariants of Decode.
func FuzzDecodeQuery(f *testing.F) {
	for _, tc := range decodeCases {
		if tc.file == "" && len(tc.body) <= 4<<10 { // the oversize case only slows mutation down
			f.Add(tc.query, false, []byte(tc.body))
		}
	}
	f.Fuzz(func(t *testing.T, query string, form bool, body []byte) {
		contentType := ""
		if form {
			contentType = "application/x-www-form-urlencoded"
		}
		checkDecode(t, query, contentType, body)
	})
}

// FuzzDecodeJSON decodes any JSON body, with the query an id may come from.
func FuzzDecodeJSON(f *testing.F) {
	for _, tc := range decodeCases {
		if body := tc.payload(f); len(body) > 0 && len(body) <= 4<<10 && (body[0] == '{' || body[0] == '[') {
			f.Add(tc.query, body)
		}
	}
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		checkDecode(t, query, "application/json", body)
	})
}

// checkDecode checks that Decode returns reports or an *Error naming a
// parameter, never both, and only reports whose position is valid whatever
// the device's speed unit: NaN, infinities and values out of range are
// errors or left out.
func checkDecode(t *testing.T, query, contentType string, body []byte) {
	reports, err := Decode(query, contentType, body, now, cest)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Param == "" || e.Msg == "" || reports != nil {
			t.Fatalf("Decode(%q, %q) = %+v, %#v", query, body, reports, err)
		}
		return
	}
	if len(reports) == 0 {
		t.Fatalf("Decode(%q, %q): no reports and no error", query, body)
	}
	for _, r := range reports {
		if r.ID == "" {
			t.Fatalf("Decode(%q, %q): a report without an id: %+v", query, body, r)
		}
		for _, u := range units {
			if p := r.WithSpeed(u); p.Validate(now) != nil {
				t.Fatalf("Decode(%q, %q): WithSpeed(%s) = %+v: %v", query, body, u, p, p.Validate(now))
			}
		}
	}
}
