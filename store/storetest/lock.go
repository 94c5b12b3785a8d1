package storetest

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "modernc.org/sqlite" // the "sqlite" driver, for a session of the test's own

	"github.com/liveshare/liveshare/store"
)

// HoldLocks opens a session of its own on cfg's database, as another
// process would, begins a transaction and runs stmts in it; the
// transaction stays open, holding the locks they took, until release
// (idempotent, also run in t.Cleanup) rolls it back. On SQLite the
// transaction begins IMMEDIATE: it holds the database's write lock, which
// every writer needs, and stmts may be empty.
func HoldLocks(t testing.TB, cfg store.Config, stmts ...string) (release func()) {
	t.Helper()
	driver, dsn, begin := "postgres", cfg.DatabaseURL, "BEGIN"
	if cfg.DatabaseURL == "" {
		driver, dsn, begin = "sqlite", filepath.Join(cfg.DataDir, "liveshare.db"), "BEGIN IMMEDIATE"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("storetest: open a locking session: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		_ = db.Close()
		t.Fatalf("storetest: open a locking session: %v", err)
	}
	for _, q := range append([]string{begin}, stmts...) {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			_ = conn.Close()
			_ = db.Close()
			t.Fatalf("storetest: locking session: %s: %v", q, err)
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_, _ = conn.ExecContext(context.Background(), "ROLLBACK")
			_ = conn.Close()
			_ = db.Close()
		})
	}
	t.Cleanup(release)
	return release
}

// HoldCommitLock holds what a commit of ops to roomID waits for: on
// PostgreSQL the room's row, locked as AppendOps locks it (FOR NO KEY
// UPDATE), so only that room's commits wait; on SQLite the database's
// write lock, which the commits of every room need.
func HoldCommitLock(t testing.TB, cfg store.Config, roomID string) (release func()) {
	t.Helper()
	if cfg.DatabaseURL == "" {
		return HoldLocks(t, cfg)
	}
	if _, err := uuid.Parse(roomID); err != nil {
		t.Fatalf("storetest: room id %q: %v", roomID, err)
	}
	return HoldLocks(t, cfg, "SELECT 1 FROM rooms WHERE id = '"+roomID+"' FOR NO KEY UPDATE")
}
