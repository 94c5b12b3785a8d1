package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// refuseAuditRows makes the database refuse every audit row of action, as
// a full disk or a broken table would: a trigger on SQLite, a constraint on
// PostgreSQL.
func refuseAuditRows(t *testing.T, s *store.Store, cfg store.Config, action string) {
	t.Helper()
	db := rawDB(t, cfg)
	stmt := `CREATE TRIGGER refuse_audit_` + action + ` BEFORE INSERT ON audit_log WHEN NEW.action = '` + action +
		`' BEGIN SELECT RAISE(ABORT, 'audit refused by the test'); END`
	if s.Dialect() == "postgres" {
		stmt = `ALTER TABLE audit_log ADD CONSTRAINT refuse_audit_` + action + ` CHECK (action <> '` + action + `') NOT VALID`
	}
	if _, err := db.Exec(stmt); err != nil {
		t.Fatalf("refuse audit rows: %v", err)
	}
}

func mustListAudit(t *testing.T, s *store.Store, f store.AuditFilter) ([]store.AuditEntry, string) {
	t.Helper()
	rows, next, err := s.ListAudit(context.Background(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return rows, next
}

func TestAuditListPrune(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		a, b := mustCreateRoom(t, s, "a"), mustCreateRoom(t, s, "b")
		base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		v := int64(7)
		var entries []store.AuditEntry
		for i := range 7 {
			e := store.AuditEntry{At: base.Add(time.Duration(i) * time.Minute), Subject: "alice", Address: "10.0.0.1",
				Action: store.AuditSnapshotRead, RoomID: a.ID, Outcome: store.OutcomeOK, RequestID: "r"}
			if i%2 == 1 {
				e.Action, e.RoomID, e.Version = store.AuditSnapshotLatest, b.ID, &v
			}
			entries = append(entries, e)
		}
		// Two rows at one instant: the id orders them.
		entries = append(entries, store.AuditEntry{At: entries[6].At, Action: store.AuditRoomCreate, Outcome: store.OutcomeDenied})
		if err := s.InsertAudit(ctx, entries); err != nil {
			t.Fatal(err)
		}

		// Pages of 3, newest first, every row once.
		var seen []store.AuditEntry
		cursor := ""
		for page := 0; page < 5; page++ {
			rows, next := mustListAudit(t, s, store.AuditFilter{Limit: 3, Cursor: cursor})
			seen = append(seen, rows...)
			if next == "" {
				break
			}
			cursor = next
		}
		if got, want := len(seen), len(entries); got != want {
			t.Fatalf("paged through %d rows, want %d", got, want)
		}
		for i := 1; i < len(seen); i++ {
			p, c := seen[i-1], seen[i]
			if c.At.After(p.At) || (c.At.Equal(p.At) && c.ID >= p.ID) {
				t.Errorf("row %d (%v, %d) is not older than row %d (%v, %d)", i, c.At, c.ID, i-1, p.At, p.ID)
			}
		}
		if seen[0].Action != store.AuditRoomCreate || seen[0].RoomID != "" || seen[0].Version != nil {
			t.Errorf("newest row %+v, want the room_create without room", seen[0])
		}

		rows, _ := mustListAudit(t, s, store.AuditFilter{RoomID: b.ID})
		if len(rows) != 3 {
			t.Fatalf("room b has %d rows, want 3", len(rows))
		}
		for _, r := range rows {
			if r.RoomID != b.ID || r.Action != store.AuditSnapshotLatest || r.Version == nil || *r.Version != 7 ||
				r.Subject != "alice" || r.Address != "10.0.0.1" || r.RequestID != "r" {
				t.Errorf("row of room b: %+v", r)
			}
		}
		rows, _ = mustListAudit(t, s, store.AuditFilter{RoomID: a.ID, Action: store.AuditSnapshotLatest})
		if len(rows) != 0 {
			t.Errorf("room a has %d snapshot_latest rows, want 0", len(rows))
		}
		rows, _ = mustListAudit(t, s, store.AuditFilter{Action: store.AuditSnapshotRead})
		if len(rows) != 4 {
			t.Errorf("%d snapshot_read rows, want 4", len(rows))
		}
		// Not base64; "12:3" (a room cursor's shape); "a1" (no id).
		for _, bad := range []string{"x!", "MTI6Mw", "YTE"} {
			if _, _, err := s.ListAudit(ctx, store.AuditFilter{Cursor: bad}); !errors.Is(err, store.ErrInvalidCursor) {
				t.Errorf("cursor %q: %v, want ErrInvalidCursor", bad, err)
			}
		}

		// Retention: rows before the cut go, the others stay.
		n, err := s.PruneAudit(ctx, base.Add(3*time.Minute))
		if err != nil || n != 3 {
			t.Fatalf("PruneAudit = %d, %v; want 3 rows", n, err)
		}
		if rows, _ := mustListAudit(t, s, store.AuditFilter{Limit: 100}); len(rows) != len(entries)-3 {
			t.Errorf("%d rows after pruning, want %d", len(rows), len(entries)-3)
		}
	})
}

// A change whose audit row cannot be written does not happen: the row and
// the change share one transaction.
func TestAuditInTheChangesTransaction(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		rm := mustCreateRoom(t, s, "kept")
		if _, err := s.SetMember(ctx, rm.ID, "bob", "viewer", nil); err != nil {
			t.Fatal(err)
		}
		mustAppend(t, s, store.Append{RoomID: rm.ID, Writes: []store.AppendWrite{{Ops: makeOps("n", 2)}}, ElementCount: 2})
		audit := func(action string) *store.AuditEntry {
			return &store.AuditEntry{Subject: "alice", Address: "10.0.0.9", Action: action, Outcome: store.OutcomeOK, RequestID: "req-" + action}
		}
		snap := store.NewSnapshot{RoomID: rm.ID, Version: 2, ElementCount: 2, Trigger: "clear", Format: 1, Data: []byte("state")}
		restore := store.Append{RoomID: rm.ID, ExpectedVersion: 2, ElementCount: 2,
			Writes: []store.AppendWrite{{Ops: makeOps("reset", 1), Audit: audit(store.AuditSnapshotRestore)}}}

		for _, action := range []string{store.AuditMemberSet, store.AuditMemberRemove, store.AuditRoomRename,
			store.AuditSnapshotsClear, store.AuditSnapshotRestore, store.AuditRoomDelete} {
			refuseAuditRows(t, s, cfg, action)
		}
		if _, err := s.SetMember(ctx, rm.ID, "bob", "owner", audit(store.AuditMemberSet)); err == nil {
			t.Error("SetMember succeeded without its audit row")
		}
		if err := s.RemoveMember(ctx, rm.ID, "bob", audit(store.AuditMemberRemove)); err == nil {
			t.Error("RemoveMember succeeded without its audit row")
		}
		if _, err := s.RenameRoom(ctx, rm.ID, "renamed", audit(store.AuditRoomRename)); err == nil {
			t.Error("RenameRoom succeeded without its audit row")
		}
		clear := snap
		clear.Audit = audit(store.AuditSnapshotsClear)
		if _, _, err := s.ClearSnapshots(ctx, clear); err == nil {
			t.Error("ClearSnapshots succeeded without its audit row")
		}
		if _, err := s.AppendOps(ctx, restore); err == nil {
			t.Error("a restore was appended without its audit row")
		}
		if err := s.DeleteRoom(ctx, rm.ID, audit(store.AuditRoomDelete)); err == nil {
			t.Error("DeleteRoom succeeded without its audit row")
		}

		got, err := s.GetRoom(ctx, rm.ID)
		if err != nil || got.Name != "kept" || got.Version != 2 {
			t.Fatalf("room after refused changes: %+v, %v; want it unchanged at version 2", got, err)
		}
		if acc, err := s.RoomAccess(ctx, rm.ID); err != nil || acc.Members["bob"] != "viewer" {
			t.Errorf("members after refused changes: %+v, %v", acc, err)
		}
		if snaps, err := s.ListSnapshots(ctx, rm.ID); err != nil || len(snaps) != 0 {
			t.Errorf("snapshots after a refused clear: %v, %v", snaps, err)
		}
		if rows, _ := mustListAudit(t, s, store.AuditFilter{}); len(rows) != 0 {
			t.Errorf("audit rows of refused changes: %+v", rows)
		}
	})
}

// Each change records its row, with what only the store knows (the room,
// the restored version, the new snapshot).
func TestAuditRowsOfChanges(t *testing.T) {
	t.Parallel()
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ctx := context.Background()
		s := mustOpen(t, cfg)
		rm := mustCreateRoom(t, s, "room")
		audit := func(action string) *store.AuditEntry {
			return &store.AuditEntry{Subject: "alice", Address: "10.0.0.9", Action: action, Outcome: store.OutcomeOK, RequestID: "req-" + action}
		}
		mustAppend(t, s, store.Append{RoomID: rm.ID, Writes: []store.AppendWrite{{Ops: makeOps("n", 2)}}, ElementCount: 2})
		if _, err := s.SetMember(ctx, rm.ID, "bob", "viewer", audit(store.AuditMemberSet)); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveMember(ctx, rm.ID, "bob", audit(store.AuditMemberRemove)); err != nil {
			t.Fatal(err)
		}
		if r, err := s.RenameRoom(ctx, rm.ID, "renamed", audit(store.AuditRoomRename)); err != nil || r.Name != "renamed" || r.Version != 2 {
			t.Fatalf("RenameRoom = %+v, %v", r, err)
		}
		meta, _, err := s.ClearSnapshots(ctx, store.NewSnapshot{RoomID: rm.ID, Version: 2, ElementCount: 2, Trigger: "clear",
			Format: 1, Data: []byte("state"), Audit: audit(store.AuditSnapshotsClear)})
		if err != nil {
			t.Fatal(err)
		}
		restore := audit(store.AuditSnapshotRestore)
		restore.SnapshotID = meta.ID
		// A group of two writes, the audited one second: its row names the
		// version after its own op.
		mustAppend(t, s, store.Append{RoomID: rm.ID, ExpectedVersion: 2, ElementCount: 2,
			Writes: []store.AppendWrite{{Ops: makeOps("x", 2)}, {Ops: makeOps("reset", 1), Audit: restore}}})
		if err := s.DeleteRoom(ctx, rm.ID, audit(store.AuditRoomDelete)); err != nil {
			t.Fatal(err)
		}

		rows, _ := mustListAudit(t, s, store.AuditFilter{RoomID: rm.ID, Limit: 100})
		byAction := map[string]store.AuditEntry{}
		for _, r := range rows {
			if r.Subject != "alice" || r.Address != "10.0.0.9" || r.Outcome != store.OutcomeOK || r.RequestID != "req-"+r.Action || r.RoomID != rm.ID {
				t.Errorf("row %+v", r)
			}
			byAction[r.Action] = r
		}
		if len(byAction) != 6 {
			t.Fatalf("rows of %d actions, want 6: %+v", len(byAction), rows)
		}
		if c := byAction[store.AuditSnapshotsClear]; c.SnapshotID != meta.ID || c.Version == nil || *c.Version != 2 || c.Bytes == nil || *c.Bytes != 5 {
			t.Errorf("clear row %+v, want snapshot %s at version 2 of 5 bytes", c, meta.ID)
		}
		if r := byAction[store.AuditSnapshotRestore]; r.SnapshotID != meta.ID || r.Version == nil || *r.Version != 5 {
			t.Errorf("restore row %+v, want snapshot %s and version 5", r, meta.ID)
		}
	})
}
