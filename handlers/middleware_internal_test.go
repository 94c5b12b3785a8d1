package handlers

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// TestPeerAddressAsChi checks that the address recorded for a request
// without trusted proxies is the one chi's ClientIPFromRemoteAddr and
// GetClientIP gave before (or, when they give none, the host of
// RemoteAddr), which rate limits and audit rows key on.
func TestPeerAddressAsChi(t *testing.T) {
	for _, remote := range []string{
		"127.0.0.1:40000", "10.1.2.3:1", "[::1]:8080", "[::ffff:192.0.2.7]:443", "[2001:db8::1]:5",
		"[fe80::1%eth0]:9", "192.0.2.9", "::1", "not an address", "host:80", "", "[::1", "1.2.3.4:",
	} {
		var chi string
		middleware.ClientIPFromRemoteAddr(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			chi = middleware.GetClientIP(r.Context())
		})).ServeHTTP(httptest.NewRecorder(), &http.Request{RemoteAddr: remote})
		if chi == "" {
			chi = hostOf(remote)
		}
		if got := peerAddress(remote); got != chi {
			t.Errorf("RemoteAddr %q: address %q, chi's %q", remote, got, chi)
		}
	}
}

// TestValidRequestIDAsPattern checks validRequestID against the pattern
// it replaces.
func TestValidRequestIDAsPattern(t *testing.T) {
	pattern := regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)
	for _, id := range []string{
		"", "a", "trace-ops-1", "A.b:c_d-9", "with space", "é", "a\n", "a/b", "a,b",
		strings.Repeat("x", 128), strings.Repeat("x", 129), "\x00", "abc\xff",
	} {
		if got, want := validRequestID(id), pattern.MatchString(id); got != want {
			t.Errorf("validRequestID(%q) = %v, the pattern says %v", id, got, want)
		}
	}
}

// TestRoomIDParamCanonical checks that a room id in upper case names the
// room by its canonical (lower-case) id, and a lower-case one is kept.
func TestRoomIDParamCanonical(t *testing.T) {
	const id = "0f8fad5b-d9cb-469f-a165-70867728950e"
	for _, raw := range []string{id, strings.ToUpper(id), "0F8FAD5B-d9cb-469f-A165-70867728950e"} {
		var got string
		r := chi.NewRouter()
		r.Use(requestContext(nil))
		r.With(roomIDParam).Get("/rooms/{roomID}", func(w http.ResponseWriter, r *http.Request) { got = roomIDFrom(r) })
		r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/rooms/"+raw, nil))
		if got != id {
			t.Errorf("room id %q recorded as %q, want %q", raw, got, id)
		}
	}
}
