package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"trackgate/cloud/problem"
	"trackgate/cloud/store"
	"trackgate/cloud/tracks"
)

// MaxAutoSplit is the longest automatic split interval, in minutes (a week).
const MaxAutoSplit = 7 * 24 * 60

// Device is a device with its settings and what the cloud last heard
// from it.
type Device struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// AutoSplit is the automatic split interval in minutes; 0 when off.
	AutoSplit int       `json:"auto_split"`
	Created   time.Time `json:"created"`
	// Recording is the id of the track the device records, if any.
	Recording string `json:"recording,omitempty"`
	// Identifiers are further ids the firmware-bridge knows the device by
	// (an IMEI, an OsmAnd id), besides its own id.
	Identifiers []string `json:"identifiers"`
	// Secret reports whether the device has a protocol secret: then the
	// firmware-bridge takes its positions only with it (the OsmAnd key),
	// and never from protocols that cannot carry one (GT06, H02).
	Secret bool `json:"secret"`
	// SpeedUnit is the unit of the speed the device sends to the OsmAnd
	// port (knots, mps, kmh, mph); "" for the bridge's default (knots).
	SpeedUnit string `json:"speed_unit"`
	lastJSON
}

// lastJSON is a device's last position and status.
type lastJSON struct {
	LastSeen   *time.Time      `json:"last_seen"`   // fix time of the last position
	Position   json.RawMessage `json:"position"`    // the last position, null when none
	Status     json.RawMessage `json:"status"`      // the last status message, null when none
	StatusTime *time.Time      `json:"status_time"` // when the status arrived
}

func lastOut(st *store.DeviceState) lastJSON {
	out := lastJSON{Position: json.RawMessage("null"), Status: json.RawMessage("null")}
	if !st.LastTime.IsZero() {
		t := st.LastTime
		out.LastSeen = &t
	}
	if len(st.Position) > 0 {
		out.Position = st.Position
	}
	if len(st.Status) > 0 && json.Valid(st.Status) {
		out.Status = st.Status
		t := st.StatusTime
		out.StatusTime = &t
	}
	return out
}

// deviceOut describes d with its state and recording track.
func (s *Server) deviceOut(r *http.Request, d *store.Device) (*Device, error) {
	st, err := s.st.DeviceStateOf(r.Context(), d.ID)
	if err != nil {
		return nil, err
	}
	out := &Device{ID: d.ID, Name: d.Name, AutoSplit: int(d.AutoSplit / time.Minute), Created: d.CreatedAt.UTC(),
		Identifiers: d.Identifiers, Secret: d.SecretHash != "", SpeedUnit: d.SpeedUnit, lastJSON: lastOut(st)}
	if out.Identifiers == nil {
		out.Identifiers = []string{}
	}
	t, err := s.trk.Recording(r.Context(), d)
	if err != nil {
		return nil, err
	}
	if t != nil {
		out.Recording = t.ID
	}
	return out, nil
}

// listDevices serves GET /api/v1/devices: the user's devices, each as GET
// /api/v1/devices/{id} describes it.
func (s *Server) listDevices(w http.ResponseWriter, r *http.Request) {
	u, ok := s.caller(w, r, ScopeDevicesRead)
	if !ok {
		return
	}
	devs, err := s.st.Devices(r.Context(), u.ID)
	if err != nil {
		s.failed(w, r, "devices", err)
		return
	}
	out := make([]*Device, 0, len(devs))
	for _, d := range devs {
		j, err := s.deviceOut(r, d)
		if err != nil {
			s.failed(w, r, "device state", err)
			return
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

// getDevice serves GET /api/v1/devices/{id}.
func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, d *store.Device) {
	out, err := s.deviceOut(r, d)
	if err != nil {
		s.failed(w, r, "device state", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// patchDevice serves PATCH /api/v1/devices/{id} {"name", "auto_split",
// "identifiers", "speed_unit"}: the fields given change.
func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, d *store.Device) {
	var req struct {
		Name        *string   `json:"name"`
		AutoSplit   *int      `json:"auto_split"`
		Identifiers *[]string `json:"identifiers"`
		SpeedUnit   *string   `json:"speed_unit"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Identifiers != nil {
		if err := checkIdentifiers(*req.Identifiers); err != nil {
			problem.Write(w, problem.InvalidRequest, "identifiers: "+err.Error(), nil)
			return
		}
	}
	if req.SpeedUnit != nil && !slices.Contains(speedUnits, *req.SpeedUnit) {
		problem.Write(w, problem.InvalidRequest, fmt.Sprintf("speed_unit: want one of %q", speedUnits), nil)
		return
	}
	if req.Name != nil {
		if err := tracks.CheckName(*req.Name); err != nil {
			problem.Write(w, problem.InvalidRequest, "name: "+err.Error(), nil)
			return
		}
		d.Name = *req.Name
	}
	if req.AutoSplit != nil {
		if *req.AutoSplit < 0 || *req.AutoSplit > MaxAutoSplit {
			problem.Write(w, problem.InvalidRequest, fmt.Sprintf("auto_split: want minutes from 0 (off) to %d", MaxAutoSplit), nil)
			return
		}
		d.AutoSplit = time.Duration(*req.AutoSplit) * time.Minute
	}
	if err := s.st.SetDeviceSettings(r.Context(), d.ID, d.Name, d.AutoSplit); err != nil {
		s.failed(w, r, "device settings", err)
		return
	}
	if req.Identifiers != nil {
		err := s.st.SetDeviceIdentifiers(r.Context(), d.ID, *req.Identifiers)
		if errors.Is(err, store.ErrExists) {
			problem.Write(w, problem.Conflict, "identifiers: "+err.Error()+": each identifier belongs to one device", nil)
			return
		}
		if err != nil {
			s.failed(w, r, "device identifiers", err)
			return
		}
	}
	if req.SpeedUnit != nil {
		if err := s.st.SetDeviceSpeedUnit(r.Context(), d.ID, *req.SpeedUnit); err != nil {
			s.failed(w, r, "device speed unit", err)
			return
		}
	}
	if req.Identifiers != nil || req.SpeedUnit != nil {
		var err error
		if d, err = s.st.Device(r.Context(), d.ID); err != nil {
			s.failed(w, r, "device", err)
			return
		}
	}
	out, err := s.deviceOut(r, d)
	if err != nil {
		s.failed(w, r, "device state", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// deviceLast serves GET /api/v1/devices/{id}/last: the device's last
// position and status.
func (s *Server) deviceLast(w http.ResponseWriter, r *http.Request, d *store.Device) {
	st, err := s.st.DeviceStateOf(r.Context(), d.ID)
	if err != nil {
		s.failed(w, r, "device state", err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Device string `json:"device"`
		lastJSON
	}{d.ID, lastOut(st)})
}
