// Package store persists rooms, their op logs, snapshots and idempotency keys, in
// PostgreSQL (lib/pq) or in an embedded SQLite file (modernc.org/sqlite),
// behind one API.
//
// The database is the sequencer: AppendOps locks the room row (PostgreSQL:
// SELECT … FOR NO KEY UPDATE; SQLite: every transaction begins IMMEDIATE) before it
// checks the room's version and writes the next sequence numbers, so several
// LiveShare instances may share one PostgreSQL database without ever giving
// two ops the same seq or leaving a gap. A nil error from AppendOps means the
// transaction committed (SQLite runs with synchronous=FULL, so it survives a
// kill -9 or power loss as well).
//
// Times returned by the store are UTC with microsecond precision, the
// precision of PostgreSQL's timestamptz; SQLite stores them as INTEGER unix
// microseconds.
//
// Encryption at rest (Config.Keys) is the store's alone: op payloads and
// snapshot bytes are sealed on their way in and opened on their way out
// (seal.go), so callers only ever see plain bytes. A new read of ops.op,
// ops.sealed or snapshot data goes through OpsSince, GetSnapshot or their
// helpers (snapshotData, sealer.open), never straight to the columns.
//
// A Store is safe for concurrent use.
package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/liveshare/liveshare/migrations"
)

var (
	// ErrNotFound: the room does not exist.
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyKeyUsed: AppendOps was given an idempotency key that was
	// already used on the room (another writer won the race); nothing was
	// applied. IdempotentResult returns the first result.
	ErrIdempotencyKeyUsed = errors.New("idempotency key already used")
	// ErrInvalidCursor: ListRooms was given a cursor it did not make.
	ErrInvalidCursor = errors.New("invalid cursor")
)

// VersionMismatchError is returned by AppendOps when the room's version in the
// database is not the expected one; nothing was applied.
type VersionMismatchError struct {
	Current int64 // the room's version in the database
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("version mismatch: room is at version %d", e.Current)
}

// Room is a room's row.
type Room struct {
	ID           string
	Name         string
	Version      int64 // seq of the room's last op, 0 when it has none
	ElementCount int64 // nodes + edges after the last op
	// PrunedThrough: every op with seq <= PrunedThrough has been deleted from
	// the log (InsertSnapshot prunes it); the ops after it are all kept. 0
	// when nothing was pruned; it never decreases.
	PrunedThrough int64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// OpRecord is one op of a room's log.
type OpRecord struct {
	Seq       int64
	Op        json.RawMessage
	ClientID  string
	CreatedAt time.Time
}

// Config selects the database.
type Config struct {
	// DatabaseURL is a postgres:// or postgresql:// URL to use PostgreSQL;
	// empty uses the SQLite file DataDir/liveshare.db.
	DatabaseURL string
	// DataDir holds the SQLite file; it is created (0o750) if missing.
	DataDir string
	// Keys seal every op payload and snapshot stored from now on, and open
	// those sealed before; nil stores them plain (and still reads plain
	// rows). Open refuses a database that has rows sealed with keys Keys
	// lacks.
	Keys *Keyring
	// Now is the clock the store stamps rows with and keeps checkpoints
	// by (Retention); nil means time.Now. Tests pass a clock of their own
	// so that days of history take no time.
	Now func() time.Time
}

const (
	dialectPostgres = "postgres"
	dialectSQLite   = "sqlite"

	// sqliteFile is the name of the database file in Config.DataDir.
	sqliteFile = "liveshare.db"

	// idempotencyTTL is how long an idempotency key answers with its result.
	idempotencyTTL = 24 * time.Hour
)

// Store is the LiveShare database. Make one with Open.
type Store struct {
	db      *sqlx.DB
	dialect string
	// migrations is kept to report the schema version in Ready.
	migrations *goose.Provider
	// schemaVersion is the newest embedded migration: the version the
	// database must be at.
	schemaVersion int64
	// now is the clock; tests replace it.
	now func() time.Time

	// writeGate (SQLite only) lets one write transaction at a time reach
	// the database. SQLite has one write lock, and a connection that finds
	// it taken sleeps in growing steps (up to 100 ms each) before trying
	// again; queued here, the next writer starts the moment the last one
	// ends. The data directory's flock makes this process the only writer.
	writeGate chan struct{}

	// writesFailing is set while the last write failed because the
	// database could not take it (IsUnavailable): Ready then probes with
	// a write of its own, so that /readyz says whether writes can succeed.
	writesFailing atomic.Bool

	// Statements of the hot paths, prepared once (per connection, by
	// database/sql), so that each costs one round trip.
	appendStmt *sqlx.Stmt // PostgreSQL only: a whole group commit
	// appendBatchStmt is PostgreSQL's statement for the group commits of
	// several rooms (sharedCommits).
	appendBatchStmt *sqlx.Stmt
	notifyStmt      *sqlx.Stmt // PostgreSQL only: notifications to other instances
	versionStmt     *sqlx.Stmt
	// sqliteStmts are the statements of SQLite's group commit, prepared
	// when first used (sqliteStmt).
	sqliteMu    sync.Mutex
	sqliteStmts map[int]*sqlx.Stmt
	// batch gathers group commits of different rooms into one
	// transaction (sharedCommits).
	batch sharedCommits

	// keys seal and open payloads (nil: nothing is sealed).
	keys *Keyring

	// url and channel are PostgreSQL's: the database URL, for the
	// listening connection, and the notification channel.
	url, channel string
}

// Open connects to the database chosen by cfg, checks it answers, applies the
// embedded migrations that it lacks (a no-op when it has them all) and refuses
// a database whose schema is newer than this binary knows.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	s, err := connect(cfg)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.db.PingContext(ctx); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open store: ping %s database: %w", s.dialect, err)
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.keys = cfg.Keys
	if err := s.checkKeys(ctx); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.prepare(ctx); err != nil {
		_ = s.db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

func (s *Store) prepare(ctx context.Context) error {
	var err error
	if s.dialect == dialectPostgres {
		if err := s.readChannel(ctx); err != nil {
			return err
		}
		if s.appendStmt, err = s.db.PreparexContext(ctx, appendPostgresQuery); err != nil {
			return fmt.Errorf("prepare the group commit: %w", err)
		}
		if s.appendBatchStmt, err = s.db.PreparexContext(ctx, appendBatchQuery); err != nil {
			return fmt.Errorf("prepare the shared group commit: %w", err)
		}
		if s.notifyStmt, err = s.db.PreparexContext(ctx, notifyQuery); err != nil {
			return fmt.Errorf("prepare the notification: %w", err)
		}
	}
	if s.versionStmt, err = s.db.PreparexContext(ctx, s.db.Rebind(`SELECT version, pruned_through FROM rooms WHERE id = ?`)); err != nil {
		return fmt.Errorf("prepare the version read: %w", err)
	}
	return nil
}

func connect(cfg Config) (*Store, error) {
	s := &Store{now: cfg.Now}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case cfg.DatabaseURL == "":
		db, err := openSQLite(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		s.db, s.dialect = db, dialectSQLite
		s.writeGate = make(chan struct{}, 1)
	case strings.HasPrefix(cfg.DatabaseURL, "postgres://"), strings.HasPrefix(cfg.DatabaseURL, "postgresql://"):
		db, err := sqlx.Open("postgres", cfg.DatabaseURL)
		if err != nil {
			// The error may quote the URL; do not repeat it, it may hold a password.
			return nil, fmt.Errorf("invalid database URL: %w", err)
		}
		// Enough for the request load of one instance; several instances
		// share the server's max_connections (100 by default).
		db.SetMaxOpenConns(20)
		db.SetMaxIdleConns(10)
		db.SetConnMaxIdleTime(5 * time.Minute)
		db.SetConnMaxLifetime(time.Hour)
		s.db, s.dialect, s.url = db, dialectPostgres, cfg.DatabaseURL
	default:
		return nil, errors.New("unsupported database URL: want postgres:// or postgresql://, or empty for the embedded database")
	}
	return s, nil
}

func openSQLite(dataDir string) (*sqlx.DB, error) {
	if dataDir == "" {
		return nil, errors.New("no data directory for the embedded database")
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(dataDir, sqliteFile))
	if err != nil {
		return nil, fmt.Errorf("locate database file: %w", err)
	}
	q := url.Values{}
	// Applied to every connection the pool opens.
	q.Add("_pragma", "busy_timeout(10000)") // wait for the write lock instead of failing
	q.Add("_pragma", "foreign_keys(1)")     // ON DELETE CASCADE
	q.Add("_pragma", "journal_mode(WAL)")   // readers do not block the writer
	q.Add("_pragma", "synchronous(FULL)")   // a commit survives kill -9 and power loss
	// Every transaction takes the write lock at BEGIN, which is what makes
	// AppendOps' read-check-write atomic, and avoids the SQLITE_BUSY a
	// deferred transaction gets when it upgrades from reading to writing.
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	sqlDB, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// SQLite has one writer at a time; a few connections let reads proceed
	// beside it (WAL) and busy_timeout queues the writers.
	sqlDB.SetMaxOpenConns(4)
	sqlDB.SetMaxIdleConns(4)
	sqlDB.SetConnMaxIdleTime(0)
	// sqlx binds '?' for the "sqlite3" driver name; modernc registers "sqlite".
	return sqlx.NewDb(sqlDB, "sqlite3"), nil
}

func (s *Store) migrate(ctx context.Context) error {
	fsys, dialect := migrations.SQLite, goose.DialectSQLite3
	opts := []goose.ProviderOption{goose.WithDisableGlobalRegistry(true)}
	if s.dialect == dialectPostgres {
		fsys, dialect = migrations.Postgres, goose.DialectPostgres
		// Instances starting together on one database take turns. The lock is
		// per schema, so separate schemas (tests) do not wait for each other.
		var schema sql.NullString
		if err := s.db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
			return fmt.Errorf("read current schema: %w", err)
		}
		if !schema.Valid {
			return errors.New("no schema to migrate: the search_path names no existing schema")
		}
		h := fnv.New64a()
		h.Write([]byte("liveshare migrations:" + schema.String))
		locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(int64(h.Sum64())), lock.WithLockTimeout(1, 300))
		if err != nil {
			return fmt.Errorf("migration lock: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	}
	p, err := goose.NewProvider(dialect, s.db.DB, fsys, opts...)
	if err != nil {
		return fmt.Errorf("load migrations: %w", err)
	}
	sources := p.ListSources()
	s.migrations, s.schemaVersion = p, sources[len(sources)-1].Version

	// Checked before Up as well as after: goose would fail on a newer
	// database with a less helpful error.
	if err := s.checkNotNewer(ctx); err != nil {
		return err
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return s.checkSchema(ctx)
}

// schemaVersionInDB is the highest migration version recorded in the database.
func (s *Store) schemaVersionInDB(ctx context.Context) (int64, error) {
	current, _, err := s.migrations.GetVersions(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return current, nil
}

func (s *Store) checkNotNewer(ctx context.Context) error {
	current, err := s.schemaVersionInDB(ctx)
	if err != nil {
		return err
	}
	if current > s.schemaVersion {
		return fmt.Errorf("database schema version %d is newer than this binary knows (%d): upgrade LiveShare", current, s.schemaVersion)
	}
	return nil
}

// checkSchema reports whether the database is exactly at schemaVersion.
func (s *Store) checkSchema(ctx context.Context) error {
	if err := s.checkNotNewer(ctx); err != nil {
		return err
	}
	current, err := s.schemaVersionInDB(ctx)
	if err != nil {
		return err
	}
	if current != s.schemaVersion {
		return fmt.Errorf("database schema version %d, want %d: migrations not applied", current, s.schemaVersion)
	}
	return nil
}

// Dialect is "postgres" or "sqlite".
func (s *Store) Dialect() string { return s.dialect }

// Close closes the prepared statements and the database connections.
func (s *Store) Close() error {
	s.batch.wg.Wait()
	var errs []error
	stmts := []*sqlx.Stmt{s.appendStmt, s.appendBatchStmt, s.notifyStmt, s.versionStmt}
	s.sqliteMu.Lock()
	for _, stmt := range s.sqliteStmts {
		stmts = append(stmts, stmt)
	}
	s.sqliteStmts = nil
	s.sqliteMu.Unlock()
	for _, stmt := range stmts {
		if stmt != nil {
			errs = append(errs, stmt.Close())
		}
	}
	return errors.Join(append(errs, s.db.Close())...)
}

// Ready reports whether the database answers and its schema is at the version
// this binary expects (for /readyz).
func (s *Store) Ready(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("store not ready: ping: %w", err)
	}
	if err := s.checkSchema(ctx); err != nil {
		return fmt.Errorf("store not ready: %w", err)
	}
	if s.writesFailing.Load() {
		if err := s.probeWrite(ctx); err != nil {
			return fmt.Errorf("store not ready: writes fail: %w", err)
		}
	}
	return nil
}

// noteWrite records whether a write succeeded, for Ready.
func (s *Store) noteWrite(err error) {
	switch {
	case err == nil:
		s.writesFailing.Store(false)
	case IsUnavailable(err):
		s.writesFailing.Store(true)
	}
}

// probeWrite commits a write that leaves nothing behind (a row added to
// instances and removed again in one transaction): it needs what any write
// needs — a writable database with room for its log.
func (s *Store) probeWrite(ctx context.Context) error {
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		insert := `INSERT INTO instances (id, started_at, seen_at) VALUES (?, 0, 0)`
		if s.dialect == dialectPostgres {
			insert = `INSERT INTO instances (id, started_at, seen_at) VALUES (?, now(), now())`
		}
		if _, err := tx.ExecContext(ctx, tx.Rebind(insert), "readiness-probe"); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, tx.Rebind(`DELETE FROM instances WHERE id = ?`), "readiness-probe")
		return err
	})
	s.noteWrite(err)
	return err
}

// awaitWrite waits for this process's turn to write (SQLite; PostgreSQL
// needs no turn) and returns what ends it.
func (s *Store) awaitWrite(ctx context.Context) (release func(), err error) {
	if s.writeGate == nil {
		return func() {}, nil
	}
	select {
	case s.writeGate <- struct{}{}:
		return func() { <-s.writeGate }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the write lock: %w", ctx.Err())
	}
}

// execWrite runs one writing statement outside a transaction, in its turn.
func (s *Store) execWrite(ctx context.Context, query string, args ...any) (sql.Result, error) {
	release, err := s.awaitWrite(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	return s.db.ExecContext(ctx, s.db.Rebind(query), args...)
}

// transact runs fn in a transaction and commits it; it rolls back when fn
// returns an error or panics.
func (s *Store) transact(ctx context.Context, fn func(tx *sqlx.Tx) error) (err error) {
	release, err := s.awaitWrite(ctx)
	if err != nil {
		return err
	}
	defer release()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// clock returns the current time as the database stores it.
func (s *Store) clock() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

// timeArg is t as a query argument of the dialect's timestamp columns.
func (s *Store) timeArg(t time.Time) any {
	if s.dialect == dialectSQLite {
		return t.UnixMicro()
	}
	return t
}

// timeDest scans a timestamp column of either dialect into *t, in UTC.
func timeDest(t *time.Time) sql.Scanner { return timeScanner{t} }

type timeScanner struct{ t *time.Time }

func (d timeScanner) Scan(src any) error {
	switch v := src.(type) {
	case time.Time:
		*d.t = v.UTC()
	case int64:
		*d.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("scan timestamp: unsupported type %T", src)
	}
	return nil
}

// canonicalID returns the room id as stored (lowercase hyphenated UUID), and
// false when id is no UUID, so no room can have it.
func canonicalID(id string) (string, bool) {
	u, err := uuid.Parse(id)
	if err != nil {
		return "", false
	}
	return u.String(), true
}

// isUniqueViolation matches the database's error code, never its message.
func isUniqueViolation(err error) bool {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return pqErr.Code == pqerror.UniqueViolation
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		code := sqliteErr.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || code == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}
