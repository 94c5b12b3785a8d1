package handlers_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/store/storetest"
)

type presenceUsers struct {
	Users []struct {
		ID         string          `json:"id"`
		Name       string          `json:"name"`
		PresenceID string          `json:"presence_id"`
		State      json.RawMessage `json:"state"`
	} `json:"users"`
}

// stateOf returns the state presence lists for the user named name ("" when
// it has none).
func stateOf(t *testing.T, data, name string) string {
	t.Helper()
	var p presenceUsers
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		t.Fatalf("presence %q: %v", data, err)
	}
	for _, u := range p.Users {
		if u.Name == name {
			return string(u.State)
		}
	}
	t.Fatalf("%s is not in %s", name, data)
	return ""
}

// TestPresenceState: a subscriber named by ?presence_id= sets its cursor,
// selection and status with PATCH; the others' streams and GET …/presence
// show it; members given replace, null removes; bad input is refused with
// a problem naming it and changes nothing; nothing reaches the op log.
func TestPresenceState(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			srv := newTestServer(t, storetest.Open(t, dialect), serverOptions{})
			roomID := srv.createRoom()
			alice, _ := subscribe(t, srv.URL, roomID, "", "?name=alice&presence_id=tab-a")
			bob, _ := subscribe(t, srv.URL, roomID, "", "?name=bob&presence_id=tab_B-2")
			// Both joined, as bob sees it.
			for {
				ev := bob.nextNamed(t, "presence", 5*time.Second)
				if strings.Contains(ev.Data, `"alice"`) && strings.Contains(ev.Data, `"bob"`) {
					if !strings.Contains(ev.Data, `"presence_id":"tab-a"`) {
						t.Fatalf("presence lacks alice's presence id: %s", ev.Data)
					}
					break
				}
			}
			url := srv.URL + "/rooms/" + roomID + "/presence/tab-a"
			patch := func(body string) (*http.Response, string) {
				time.Sleep(room.PresenceMinInterval + 5*time.Millisecond) // not throttled
				return call(t, "PATCH", url, body, "Content-Type", "application/json")
			}
			resp, body := patch(`{"cursor":{"x":10.5,"y":-3},"selection":["users","orders_fk"],"status":"editing"}`)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("patch: %d %s", resp.StatusCode, body)
			}
			want := `{"cursor":{"x":10.5,"y":-3},"selection":["users","orders_fk"],"status":"editing"}`
			for {
				ev := bob.nextNamed(t, "presence", 5*time.Second)
				if stateOf(t, ev.Data, "alice") == want {
					break
				}
			}
			getState := func() string {
				_, body := call(t, "GET", srv.URL+"/rooms/"+roomID+"/presence", "")
				return stateOf(t, body, "alice")
			}
			if got := getState(); got != want {
				t.Fatalf("GET presence: alice's state %s, want %s", got, want)
			}

			// A member given replaces, null removes, the rest stays.
			if resp, body := patch(`{"status":null,"cursor":{"x":1,"y":2}}`); resp.StatusCode != http.StatusNoContent {
				t.Fatalf("patch: %d %s", resp.StatusCode, body)
			}
			want = `{"cursor":{"x":1,"y":2},"selection":["users","orders_fk"]}`
			if got := getState(); got != want {
				t.Fatalf("after the merge: %s, want %s", got, want)
			}

			// Bad input: a problem naming it, and the state unchanged.
			long := strings.Repeat("x", 65)
			big := `{"status":"` + strings.Repeat("a", 5000) + `"}`
			for _, tc := range []struct {
				name, url, body string
				status          int
				code, detail    string
			}{
				{"malformed JSON", url, `{"cursor":`, 400, "invalid_json", ""},
				{"unknown field", url, `{"cursor":{"x":1,"y":2},"color":"red"}`, 400, "invalid_json", "color"},
				{"unknown cursor field", url, `{"cursor":{"x":1,"y":2,"z":3}}`, 400, "invalid_request", "cursor"},
				{"cursor without y", url, `{"cursor":{"x":1}}`, 400, "invalid_request", "x and y"},
				{"cursor not numbers", url, `{"cursor":{"x":"1","y":2}}`, 400, "invalid_request", "cursor"},
				{"selection not ids", url, `{"selection":["ok","no spaces"]}`, 400, "invalid_request", "selection[1]"},
				{"selection not an array", url, `{"selection":"users"}`, 400, "invalid_request", "selection"},
				{"status too long", url, `{"status":"` + long + `"}`, 400, "invalid_request", "64"},
				{"status not a string", url, `{"status":5}`, 400, "invalid_request", "status"},
				{"empty object", url, `{}`, 400, "invalid_request", "none of"},
				{"empty body", url, ``, 400, "invalid_json", ""},
				{"over 4 KiB", url, big, 413, "payload_too_large", ""},
				{"bad presence id", srv.URL + "/rooms/" + roomID + "/presence/a.b", `{"status":"x"}`, 400, "invalid_request", "a.b"},
				{"unknown presence id", srv.URL + "/rooms/" + roomID + "/presence/nobody", `{"status":"x"}`, 404, "presence_not_found", "nobody"},
				{"unknown room", srv.URL + "/rooms/00000000-0000-4000-8000-000000000000/presence/tab-a", `{"status":"x"}`, 404, "room_not_found", ""},
				{"bad room id", srv.URL + "/rooms/nope/presence/tab-a", `{"status":"x"}`, 400, "invalid_room_id", ""},
			} {
				time.Sleep(room.PresenceMinInterval + 5*time.Millisecond)
				resp, body := call(t, "PATCH", tc.url, tc.body, "Content-Type", "application/json")
				if resp.StatusCode != tc.status || resp.Header.Get("Content-Type") != "application/problem+json" ||
					problemCode(t, body) != tc.code || !strings.Contains(body, tc.detail) {
					t.Errorf("%s: %d %s %s, want %d %s naming %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Type"), body, tc.status, tc.code, tc.detail)
				}
				if got := getState(); got != want {
					t.Fatalf("%s changed the state: %s, want %s", tc.name, got, want)
				}
			}

			// Faster than the throttle: 429, with Retry-After.
			time.Sleep(room.PresenceMinInterval + 5*time.Millisecond)
			var throttled bool
			for i := range 5 {
				resp, body := call(t, "PATCH", url, `{"status":"s`+string(rune('0'+i))+`"}`, "Content-Type", "application/json")
				if resp.StatusCode == http.StatusTooManyRequests {
					if problemCode(t, body) != "rate_limited" || resp.Header.Get("Retry-After") == "" {
						t.Fatalf("throttled: %s %v", body, resp.Header)
					}
					throttled = true
					break
				}
			}
			if !throttled {
				t.Fatal("five changes at once were all accepted")
			}

			// A stream with a malformed presence id does not start.
			resp, body = call(t, "GET", srv.URL+"/rooms/"+roomID+"/events?presence_id="+long, "")
			if resp.StatusCode != 400 || problemCode(t, body) != "invalid_request" || !strings.Contains(body, "presence_id") {
				t.Fatalf("stream with a bad presence id: %d %s", resp.StatusCode, body)
			}

			// When alice's stream ends, her presence id names nobody.
			alice.Close()
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp, body := patch(`{"status":"gone?"}`)
				if resp.StatusCode == 404 && problemCode(t, body) == "presence_not_found" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after alice left: %d %s", resp.StatusCode, body)
				}
			}
			// None of it is in the op log.
			if v := roomVersion(t, srv, roomID); v != 0 {
				t.Fatalf("presence moved the room to version %d", v)
			}
		})
	}
}

// TestPresenceStateOwner: with tokens, only the subscriber's own subject
// may set its state; another caller gets the same 404 as for no such id.
func TestPresenceStateOwner(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t)})
	roomID := srv.createRoom()
	alice := mint(t, "alice", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{roomID: "viewer"} })
	mallory := mint(t, "mallory", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{roomID: "editor"} })
	h := http.Header{"Authorization": {"Bearer " + alice}}
	c := subscribeWith(t, srv.URL+"/rooms/"+roomID+"/events?presence_id=tab-a", h)
	c.nextNamed(t, "presence", 5*time.Second)
	url := srv.URL + "/rooms/" + roomID + "/presence/tab-a"
	resp, body := call(t, "PATCH", url, `{"status":"pretending"}`, "Authorization", "Bearer "+mallory, "Content-Type", "application/json")
	if resp.StatusCode != 404 || problemCode(t, body) != "presence_not_found" {
		t.Fatalf("another subject's patch: %d %s", resp.StatusCode, body)
	}
	resp, body = call(t, "PATCH", url, `{"status":"here"}`, "Authorization", "Bearer "+alice, "Content-Type", "application/json")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("a viewer's own patch: %d %s", resp.StatusCode, body)
	}
	_, body = call(t, "GET", srv.URL+"/rooms/"+roomID+"/presence", "", "Authorization", "Bearer "+alice)
	if got := stateOf(t, body, "alice"); got != `{"status":"here"}` {
		t.Fatalf("alice's state %s", got)
	}
}
