package handlers

import (
	"net/http"
	"strings"
	"time"
)

type sessionResponse struct {
	Mode        string     `json:"mode"`
	Subject     string     `json:"subject"`
	Name        string     `json:"name"`
	Admin       bool       `json:"admin"`
	CreateRooms bool       `json:"create_rooms"`
	ExpiresAt   *time.Time `json:"expires_at"`
}

// createSession turns the bearer token of the request into the session
// cookie, so that the page's EventSource, which cannot send headers, is
// authenticated too. Only a token in the Authorization header is taken:
// renewing a session from its own cookie would make it last forever.
func (a *API) createSession(w http.ResponseWriter, r *http.Request) {
	c := callerFrom(r.Context())
	if !a.auth.jwt() {
		w.WriteHeader(http.StatusNoContent) // open mode: nothing to remember
		return
	}
	if c.viaCookie {
		unauthenticated(w, r, caller{})
		return
	}
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: strings.TrimSpace(tok), Path: "/",
		Expires: c.p.Expires, MaxAge: max(1, int(time.Until(c.p.Expires).Seconds())),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secureCookie(r),
	})
	auditOK(r, nil)
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) secureCookie(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(a.auth.PublicOrigin, "https://")
}

func (a *API) getSession(w http.ResponseWriter, r *http.Request) {
	p := callerFrom(r.Context()).p
	resp := sessionResponse{Mode: ModeOpen, Subject: p.Subject, Name: p.Name, Admin: p.Admin, CreateRooms: p.CreateRooms}
	if a.auth.jwt() {
		resp.Mode = ModeJWT
		exp := p.Expires.UTC()
		resp.ExpiresAt = &exp
	}
	writeJSON(w, r, http.StatusOK, resp)
}

// deleteSession signs out: it needs no valid token, so that a session
// whose token expired can still be cleared.
func (a *API) deleteSession(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: a.secureCookie(r),
	})
	auditOK(r, nil)
	w.WriteHeader(http.StatusNoContent)
}
