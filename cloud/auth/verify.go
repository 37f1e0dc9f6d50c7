package auth

import (
	"errors"
	"net/http"
	"net/url"

	"trackgate/cloud/store"
)

// scopeText says what a scope allows, for the consent page.
var scopeText = map[string]string{
	ScopeOpenID:          "know who you are",
	ScopeTracksRead:      "read your tracks",
	ScopeTracksWrite:     "record, change and delete your tracks",
	ScopeDevicesRead:     "list your devices",
	ScopeDevicesWrite:    "register and remove your devices",
	ScopeRevocationsRead: "read the list of revoked tokens",
	ScopeGateway:         "forward your devices' positions and status to the cloud",
}

// devicePage serves GET /device: the verification page of the device grant
// (RFC 8628 §3.3). It needs a complete sign-in, then the user code (from
// the form or verification_uri_complete), then shows what is asked for.
func (s *Server) devicePage(w http.ResponseWriter, r *http.Request) {
	ss := s.session(r)
	if !complete(ss) {
		seeOther(w, r, loginURL(r.URL.RequestURI(), false))
		return
	}
	page := pageData{Title: "Connect a device", User: ss.User, CSRF: ss.CSRF}
	typed := r.URL.Query().Get("user_code")
	if typed == "" {
		s.render(w, http.StatusOK, "device", page)
		return
	}
	page.UserCode = typed
	d, status, msg := s.pendingDeviceCode(r, ss, typed)
	if d == nil {
		page.Error = msg
		s.render(w, status, "device", page)
		return
	}
	client, err := s.st.Client(r.Context(), d.ClientID)
	if err != nil {
		s.failPage(w, "client lookup", err)
		return
	}
	page.Title, page.Client, page.UserCode = "Allow access?", client.Name, formatUserCode(d.UserCode)
	for _, sc := range d.Scopes {
		if text, ok := scopeText[sc]; ok {
			page.Scopes = append(page.Scopes, text)
		} else {
			page.Scopes = append(page.Scopes, sc)
		}
	}
	s.render(w, http.StatusOK, "device_confirm", page)
}

// pendingDeviceCode looks up a typed user code, counting failures against
// the address and session; it returns the pending authorization, or nil
// with the status and message to show.
func (s *Server) pendingDeviceCode(r *http.Request, ss *store.Session, typed string) (*store.DeviceCode, int, string) {
	now, keys := s.now(), []limit{{s.userCodes, clientAddr(r)}, {s.userCodes, ss.IDHash}}
	// Counted before the lookup (see take), given back when it finds one.
	if msg := s.take(now, keys...); msg != "" {
		return nil, http.StatusTooManyRequests, msg
	}
	var d *store.DeviceCode
	var err error
	if code := normalUserCode(typed); code != "" {
		d, err = s.st.DeviceCodeByUserCode(r.Context(), code)
	} else {
		err = store.ErrNotFound
	}
	switch {
	case err == nil && d.Status == store.DevicePending && now.Before(d.ExpiresAt):
		giveBack(keys...)
		return d, http.StatusOK, ""
	case err == nil || errors.Is(err, store.ErrNotFound):
		return nil, http.StatusBadRequest, "That code is unknown, expired or already used. Check it, or start again on your device."
	}
	giveBack(keys...)
	s.log.Error("user code lookup", "err", err)
	return nil, http.StatusInternalServerError, failMessage
}

// deviceDecide serves POST /device: the user allows or denies.
func (s *Server) deviceDecide(w http.ResponseWriter, r *http.Request) {
	ss := s.session(r)
	if !complete(ss) {
		seeOther(w, r, loginURL("/device?"+url.Values{"user_code": {r.PostFormValue("user_code")}}.Encode(), false))
		return
	}
	if !sessionCSRFMatches(ss, r) {
		s.errorPage(w, http.StatusForbidden, "The form expired; enter the code again.")
		return
	}
	page := pageData{Title: "Connect a device", User: ss.User, CSRF: ss.CSRF, UserCode: r.PostFormValue("user_code")}
	d, status, msg := s.pendingDeviceCode(r, ss, page.UserCode)
	if d == nil {
		page.Error = msg
		s.render(w, status, "device", page)
		return
	}
	var g *store.Grant
	approve := r.PostFormValue("action") == "approve"
	if approve {
		now := s.now()
		g = &store.Grant{ID: newID(), ClientID: d.ClientID, UserID: ss.UserID, Scopes: d.Scopes, AMR: ss.AMR,
			AuthTime: ss.AuthTime, ExpiresAt: now.Add(s.cfg.RefreshMax)}
	}
	if err := s.st.DecideDeviceCode(r.Context(), d.UserCode, g); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			page.Error = "That code is no longer waiting: start again on your device."
			s.render(w, http.StatusBadRequest, "device", page)
			return
		}
		s.failPage(w, "decide device code", err)
		return
	}
	s.log.Info("device authorization decided", "user", ss.User, "client", d.ClientID, "approved", approve)
	msg = "Access denied. You can close this page."
	if approve {
		msg = "Done: your device is connected. You can close this page."
	}
	s.render(w, http.StatusOK, "message", pageData{Title: "Connect a device", Message: msg})
}
