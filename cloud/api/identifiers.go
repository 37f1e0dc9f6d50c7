package api

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"trackgate/cloud/problem"
	"trackgate/cloud/store"
)

// speedUnits are the units a device's OsmAnd speed parameter may be in;
// "" is the bridge's default.
var speedUnits = []string{"", "knots", "mps", "kmh", "mph"}

// Identifier limits: protocol ids are IMEIs (15 digits), OsmAnd ids and
// the like.
const (
	maxIdentifier  = 64
	maxIdentifiers = 16
)

// checkIdentifiers validates a device's identifiers: at most
// maxIdentifiers, each 1 to maxIdentifier printable ASCII characters
// without spaces, none starting with a reserved prefix, no duplicates.
func checkIdentifiers(idents []string) error {
	if len(idents) > maxIdentifiers {
		return fmt.Errorf("at most %d", maxIdentifiers)
	}
	seen := make(map[string]bool, len(idents))
	for _, id := range idents {
		if id == "" || len(id) > maxIdentifier {
			return fmt.Errorf("%q: want 1 to %d characters", id, maxIdentifier)
		}
		for _, c := range []byte(id) {
			if c <= ' ' || c > '~' {
				return fmt.Errorf("%q: want printable ASCII without spaces", id)
			}
		}
		if strings.HasPrefix(id, "usr:") || strings.HasPrefix(id, "svc:") {
			return fmt.Errorf("%q: usr: and svc: are reserved", id)
		}
		if seen[id] {
			return fmt.Errorf("%q is listed twice", id)
		}
		seen[id] = true
	}
	return nil
}

// newDeviceSecret serves POST /api/v1/devices/{id}/secret: it gives the
// device a new protocol secret, shown this once (the cloud keeps its
// SHA-256), in place of any it had.
func (s *Server) newDeviceSecret(w http.ResponseWriter, r *http.Request, d *store.Device) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		s.failed(w, r, "device secret", err)
		return
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(secret))
	if err := s.st.SetDeviceSecret(r.Context(), d.ID, hex.EncodeToString(sum[:])); err != nil {
		s.failed(w, r, "device secret", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]string{"device": d.ID, "secret": secret})
}

// removeDeviceSecret serves DELETE /api/v1/devices/{id}/secret: the
// device takes positions without a secret again.
func (s *Server) removeDeviceSecret(w http.ResponseWriter, r *http.Request, d *store.Device) {
	if err := s.st.SetDeviceSecret(r.Context(), d.ID, ""); err != nil {
		s.failed(w, r, "device secret", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Resolved is a device as the firmware-bridge sees it: GET
// /api/v1/identifiers/{ident}.
type Resolved struct {
	// Identifier is the identifier asked for.
	Identifier string `json:"identifier"`
	// Device is the id of the device it names: positions are published
	// under it.
	Device string `json:"device"`
	// Owner is the device owner's user name.
	Owner string `json:"owner"`
	// SecretSHA256 is the hex SHA-256 of the device's protocol secret, ""
	// when it has none.
	SecretSHA256 string `json:"secret_sha256"`
	// SpeedUnit is the unit of its OsmAnd speed parameter, "" for the
	// bridge's default.
	SpeedUnit string `json:"speed_unit"`
}

// resolveIdentifier serves GET /api/v1/identifiers/{ident} to a service
// with the devices:resolve scope: the device whose id or identifier ident
// is, or 404.
func (s *Server) resolveIdentifier(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.cfg.Auth.APIService(w, r, ScopeDevicesResolve); !ok {
		return
	}
	ident := r.PathValue("ident")
	d, err := s.st.DeviceByIdentifier(r.Context(), ident)
	if errors.Is(err, store.ErrNotFound) {
		problem.Write(w, problem.NotFound, "no device has identifier "+ident, nil)
		return
	}
	if err != nil {
		s.failed(w, r, "identifier lookup", err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, Resolved{Identifier: ident, Device: d.ID, Owner: d.Owner, SecretSHA256: d.SecretHash, SpeedUnit: d.SpeedUnit})
}
