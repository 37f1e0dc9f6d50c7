package enrol

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// apiScope is the scope of the API token that registers devices.
const apiScope = "devices:read devices:write"

// RegisterDevices makes sure that each device id in ids is registered to
// the owner: it lists the owner's devices and registers the missing ones
// (named after their id). The device token the cloud answers a
// registration with is discarded: the gateway publishes for its devices
// with its own broker token. An id registered to someone else is an error
// naming it. It returns the ids it registered, those registered before an
// error too.
func (s *Store) RegisterDevices(ctx context.Context, ids []string) (added []string, err error) {
	tok, err := s.Token(ctx, apiScope)
	if err != nil {
		return nil, fmt.Errorf("register devices: %w", err)
	}
	var list struct {
		Devices []struct {
			ID string `json:"id"`
		} `json:"devices"`
	}
	if err := s.call(ctx, tok.AccessToken, "GET", nil, http.StatusOK, &list); err != nil {
		return nil, fmt.Errorf("list the devices: %w", err)
	}
	have := make(map[string]bool, len(list.Devices)+len(ids))
	for _, d := range list.Devices {
		have[d.ID] = true
	}
	for _, id := range ids {
		if have[id] {
			continue
		}
		body, err := json.Marshal(map[string]string{"id": id, "name": id})
		if err != nil {
			return added, err
		}
		if err := s.call(ctx, tok.AccessToken, "POST", body, http.StatusCreated, nil); err != nil {
			if se, ok := errors.AsType[*statusError](err); ok && se.status == http.StatusConflict {
				return added, fmt.Errorf("register device %s: the id belongs to another account: give the device another id", id)
			}
			return added, fmt.Errorf("register device %s: %w", id, err)
		}
		have[id] = true
		added = append(added, id)
	}
	return added, nil
}

// statusError is an answer of the API with an unexpected status.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string { return e.msg }

// call sends body (JSON, or nothing when nil) with method to the cloud's
// /api/v1/devices with bearer token tok, wants status want, and decodes the
// answer into out unless out is nil, when the answer is discarded.
func (s *Store) call(ctx context.Context, tok, method string, body []byte, want int, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.rec.Cloud+"/api/v1/devices", rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		var p struct {
			Detail string `json:"detail"`
		}
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p) // a body that is not a problem leaves p empty
		msg := "the cloud answered " + resp.Status
		if p.Detail != "" {
			msg += ": " + p.Detail
		}
		return &statusError{status: resp.StatusCode, msg: msg}
	}
	if out == nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // a device token, say: never kept
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out); err != nil {
		return fmt.Errorf("the cloud's answer: %w", err)
	}
	return nil
}
