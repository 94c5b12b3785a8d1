package handlers_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveshare/liveshare/auth"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

type auditRow struct {
	ID         int64   `json:"id"`
	Subject    string  `json:"subject"`
	Address    string  `json:"address"`
	Action     string  `json:"action"`
	RoomID     *string `json:"room_id"`
	SnapshotID *string `json:"snapshot_id"`
	Version    *int64  `json:"version"`
	Bytes      *int64  `json:"bytes"`
	Outcome    string  `json:"outcome"`
	RequestID  string  `json:"request_id"`
	Detail     string  `json:"detail"`
}

type auditPage struct {
	Entries    []auditRow `json:"entries"`
	NextCursor *string    `json:"next_cursor"`
}

// openStore opens a store on a fresh database of dialect and returns its
// config too, for tampering with the database underneath.
func openStore(t *testing.T, dialect string) (*store.Store, store.Config) {
	t.Helper()
	cfg := storetest.Config(t, dialect)
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, cfg
}

// Every action of DESIGN.md 9.5 is recorded with its subject, address,
// outcome and request id: done, denied and limited.
func TestAuditRecordsEveryAction(t *testing.T) {
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		st, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		srv := newTestServer(t, st, serverOptions{auth: jwtConfig(t),
			limits: handlers.Limits{SnapshotReads: handlers.Rate{Limit: 3, Window: time.Hour}}})
		alice := mint(t, "alice", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
		bob := mint(t, "bob", time.Hour, nil)
		admin := mint(t, "root", time.Hour, func(c *auth.Claims) { c.Admin = true })

		// want: request id → the row it must leave.
		type want struct{ action, outcome, subject string }
		wants := map[string]want{}
		n := 0
		do := func(tok, method, path, body string, status int, action, outcome string) string {
			t.Helper()
			n++
			id := "req-" + action + "-" + outcome + "-" + string(rune('a'+n))
			h := []string{"X-Request-Id", id, "Content-Type", "application/json"}
			if tok != "" {
				h = append(h, "Authorization", "Bearer "+tok)
			}
			resp, rbody := call(t, method, srv.URL+path, body, h...)
			if resp.StatusCode != status {
				t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, rbody, status)
			}
			if action != "" {
				sub := map[string]string{alice: "alice", bob: "bob", admin: "root", "": ""}[tok]
				wants[id] = want{action, outcome, sub}
			}
			return rbody
		}

		do(alice, "POST", "/session", "", 204, store.AuditSessionCreate, store.OutcomeOK)
		var created struct{ ID string }
		_ = json.Unmarshal([]byte(do(alice, "POST", "/rooms", `{"name":"audited"}`, 201, store.AuditRoomCreate, store.OutcomeOK)), &created)
		room := "/rooms/" + created.ID
		do(bob, "POST", "/rooms", `{}`, 403, store.AuditRoomCreate, store.OutcomeDenied)
		do(alice, "POST", room+"/ops", addNodes("a", "b"), 200, "", "")
		var snap struct{ ID string }
		_ = json.Unmarshal([]byte(do(alice, "POST", room+"/snapshots", "", 201, store.AuditSnapshotCreate, store.OutcomeOK)), &snap)
		do(alice, "GET", room+"/snapshots", "", 200, store.AuditSnapshotList, store.OutcomeOK)
		do(alice, "GET", room+"/snapshots/latest", "", 200, store.AuditSnapshotLatest, store.OutcomeOK)
		do(alice, "GET", room+"/snapshots/"+snap.ID, "", 200, store.AuditSnapshotRead, store.OutcomeOK)
		do(alice, "GET", room+"/snapshots/latest", "", 429, store.AuditSnapshotLatest, store.OutcomeLimited)
		do(bob, "GET", room+"/snapshots/"+snap.ID, "", 404, store.AuditSnapshotRead, store.OutcomeDenied)
		do("", "GET", room+"/snapshots", "", 401, store.AuditSnapshotList, store.OutcomeDenied)
		do(alice, "POST", room+"/snapshots/"+snap.ID+"/restore", "", 200, store.AuditSnapshotRestore, store.OutcomeOK)
		do(alice, "DELETE", room+"/snapshots", "", 204, store.AuditSnapshotsClear, store.OutcomeOK)
		do(alice, "PATCH", room, `{"name":"renamed"}`, 200, store.AuditRoomRename, store.OutcomeOK)
		do(alice, "PUT", room+"/members/bob", `{"role":"viewer"}`, 204, store.AuditMemberSet, store.OutcomeOK)
		do(bob, "PUT", room+"/members/bob", `{"role":"owner"}`, 403, store.AuditMemberSet, store.OutcomeDenied)
		do(alice, "DELETE", room+"/members/bob", "", 204, store.AuditMemberRemove, store.OutcomeOK)

		// The room's owner reads its log, a page at a time, filtered.
		var page auditPage
		_ = json.Unmarshal([]byte(do(alice, "GET", room+"/audit?limit=2", "", 200, "", "")), &page)
		if len(page.Entries) != 2 || page.NextCursor == nil || page.Entries[0].Action != store.AuditMemberRemove {
			t.Fatalf("first page of the room's log: %+v", page)
		}
		var restores auditPage
		_ = json.Unmarshal([]byte(do(alice, "GET", room+"/audit?action=snapshot_restore", "", 200, "", "")), &restores)
		if len(restores.Entries) != 1 || restores.Entries[0].SnapshotID == nil || *restores.Entries[0].SnapshotID != snap.ID ||
			restores.Entries[0].Version == nil || *restores.Entries[0].Version != 3 || restores.Entries[0].Bytes == nil {
			t.Errorf("restores: %+v, want one of snapshot %s making version 3", restores.Entries, snap.ID)
		}
		do(alice, "DELETE", room, "", 204, store.AuditRoomDelete, store.OutcomeOK)

		// Everything, as the admin sees it.
		got := map[string]auditRow{}
		cursor := ""
		for range 20 {
			var p auditPage
			_ = json.Unmarshal([]byte(do(admin, "GET", "/audit?limit=7"+cursor, "", 200, "", "")), &p)
			for _, e := range p.Entries {
				got[e.RequestID] = e
			}
			if p.NextCursor == nil {
				break
			}
			cursor = "&cursor=" + *p.NextCursor
		}
		seen := map[string]bool{}
		for id, w := range wants {
			e, ok := got[id]
			if !ok {
				t.Errorf("no row of %s (%s %s)", id, w.action, w.outcome)
				continue
			}
			if e.Action != w.action || e.Outcome != w.outcome || e.Subject != w.subject || e.Address != "127.0.0.1" {
				t.Errorf("row of %s: %+v, want %s %s by %q from 127.0.0.1", id, e, w.action, w.outcome, w.subject)
			}
			if w.action != store.AuditSessionCreate && (w.action != store.AuditRoomCreate || w.outcome == store.OutcomeOK) {
				if e.RoomID == nil || *e.RoomID != created.ID {
					t.Errorf("row of %s names room %v, want %s", id, e.RoomID, created.ID)
				}
			}
			seen[w.action+" "+w.outcome] = true
		}
		for _, a := range store.AuditActions {
			if !seen[a+" ok"] {
				t.Errorf("action %s never recorded as ok", a)
			}
		}
		if len(got) != len(wants) {
			t.Errorf("%d rows, want %d: reads of the log itself or bad requests were recorded", len(got), len(wants))
		}
	})
}

// Bad input on the audit endpoints: a 4xx problem naming what is wrong.
func TestAuditBadInput(t *testing.T) {
	srv := newTestServer(t, storetest.Open(t, "sqlite"), serverOptions{auth: jwtConfig(t)})
	alice := mint(t, "alice", time.Hour, func(c *auth.Claims) { c.CreateRooms = true })
	admin := mint(t, "root", time.Hour, func(c *auth.Claims) { c.Admin = true })
	resp, body := call(t, "POST", srv.URL+"/rooms", `{}`, authz(alice)...)
	var rm struct{ ID string }
	if err := json.Unmarshal([]byte(body), &rm); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	for _, c := range []struct {
		tok, path string
		status    int
		code      string
	}{
		{admin, "/audit?limit=0", 400, "invalid_parameter"},
		{admin, "/audit?limit=101", 400, "invalid_parameter"},
		{admin, "/audit?limit=x", 400, "invalid_parameter"},
		{admin, "/audit?action=snapshot_eat", 400, "invalid_parameter"},
		{admin, "/audit?cursor=%21%21", 400, "invalid_cursor"},
		{alice, "/audit", 403, "forbidden"},
		{"", "/audit", 401, "unauthenticated"},
		{alice, "/rooms/" + rm.ID + "/audit?action=nope", 400, "invalid_parameter"},
		{alice, "/rooms/" + rm.ID + "/audit?cursor=zz", 400, "invalid_cursor"},
		{alice, "/rooms/not-a-room/audit", 400, "invalid_room_id"},
		{mint(t, "bob", time.Hour, nil), "/rooms/" + rm.ID + "/audit", 404, "room_not_found"},
		{mint(t, "vera", time.Hour, func(c *auth.Claims) { c.Rooms = map[string]string{rm.ID: "editor"} }), "/rooms/" + rm.ID + "/audit", 403, "forbidden"},
	} {
		var h []string
		if c.tok != "" {
			h = authz(c.tok)
		}
		resp, body := call(t, "GET", srv.URL+c.path, "", h...)
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" || problemCode(t, body) != c.code {
			t.Errorf("GET %s: %d %s, want %d %s", c.path, resp.StatusCode, body, c.status, c.code)
		}
	}
}

// A restore whose audit row cannot be written does not happen: no reset
// op, no new version, no event; and the room's other writers go on.
func TestRestoreWithoutAuditRow(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			st, cfg := openStore(t, dialect)
			srv := newTestServer(t, st, serverOptions{})
			room := srv.createRoom()
			if _, err := srv.post(room, addNodes("a")); err != nil {
				t.Fatal(err)
			}
			resp, body := call(t, "POST", srv.URL+"/rooms/"+room+"/snapshots", "", "Content-Type", "application/json")
			var snap struct{ ID string }
			if err := json.Unmarshal([]byte(body), &snap); err != nil || resp.StatusCode != 201 {
				t.Fatalf("snapshot: %d %s", resp.StatusCode, body)
			}
			if _, err := srv.post(room, addNodes("b")); err != nil {
				t.Fatal(err)
			}

			// The fault: the database refuses restore rows.
			driver, dsn := "postgres", cfg.DatabaseURL
			stmt := `ALTER TABLE audit_log ADD CONSTRAINT refuse_restores CHECK (action <> 'snapshot_restore') NOT VALID`
			if dialect == "sqlite" {
				driver, dsn = "sqlite", filepath.Join(cfg.DataDir, "liveshare.db")
				stmt = `CREATE TRIGGER refuse_restores BEFORE INSERT ON audit_log WHEN NEW.action = 'snapshot_restore'
				        BEGIN SELECT RAISE(ABORT, 'refused by the test'); END`
			}
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(stmt); err != nil {
				t.Fatal(err)
			}

			sub, _ := subscribe(t, srv.URL, room, "2", "")
			defer sub.Close()
			resp, body = call(t, "POST", srv.URL+"/rooms/"+room+"/snapshots/"+snap.ID+"/restore", "", "Content-Type", "application/json")
			if resp.StatusCode < 500 {
				t.Fatalf("restore without its audit row: %d %s, want a 5xx", resp.StatusCode, body)
			}
			if v := roomVersion(t, srv, room); v != 2 {
				t.Errorf("room at version %d after the refused restore, want 2", v)
			}
			// The snapshot at version 1 pruned op 1; op 2 must be the last.
			ops, err := st.OpsSince(context.Background(), room, 1, 100)
			if err != nil || len(ops) != 1 || ops[0].Seq != 2 {
				t.Errorf("op log after the refused restore: %+v, %v; want op 2 alone", ops, err)
			}
			// The next write is the room's third op: the refused restore left
			// nothing in memory either, and its subscriber sees no reset.
			if v, err := srv.post(room, addNodes("c")); err != nil || v != 3 {
				t.Fatalf("a write after the refused restore: version %d, %v; want 3", v, err)
			}
			for {
				ev := sub.next(t, 10*time.Second)
				if ev.Name == "reset" {
					t.Fatalf("the subscriber got a reset of the refused restore: %+v", ev)
				}
				if ev.Name == "ops" {
					if ev.ID != "3" {
						t.Errorf("the subscriber's next ops event: %s, want 3", ev.ID)
					}
					break
				}
			}
			if rows, _, err := st.ListAudit(context.Background(), store.AuditFilter{Action: store.AuditSnapshotRestore}); err != nil || len(rows) != 0 {
				t.Errorf("restore rows: %+v, %v", rows, err)
			}
		})
	}
}
