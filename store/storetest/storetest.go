// Package storetest gives tests an isolated, throw-away store in each dialect:
// a SQLite file in t.TempDir(), or a fresh PostgreSQL schema in the database
// named by TEST_DATABASE_URL, dropped when the test ends.
package storetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // the "postgres" driver, for creating and dropping schemas

	"github.com/liveshare/liveshare/store"
)

// EnvDatabaseURL names the PostgreSQL database the postgres dialect runs in.
const EnvDatabaseURL = "TEST_DATABASE_URL"

// Dialects runs fn once per dialect as subtests "sqlite" and "postgres", each
// with a fresh Config. The postgres subtest runs only when TEST_DATABASE_URL
// is set, and otherwise is skipped, saying so.
func Dialects(t *testing.T, fn func(t *testing.T, cfg store.Config)) {
	t.Helper()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			fn(t, Config(t, dialect))
		})
	}
}

// Config returns a fresh, isolated store.Config: for "sqlite" a database file
// in t.TempDir(); for "postgres" a new schema in TEST_DATABASE_URL's database,
// selected by the URL's search_path, dropped (CASCADE) in t.Cleanup. Without
// TEST_DATABASE_URL the postgres dialect skips the test.
func Config(t testing.TB, dialect string) store.Config {
	t.Helper()
	switch dialect {
	case "sqlite":
		return store.Config{DataDir: t.TempDir()}
	case "postgres":
		return postgresConfig(t)
	default:
		t.Fatalf("storetest: unknown dialect %q", dialect)
		return store.Config{}
	}
}

// Open opens a store on Config(t, dialect) and closes it in t.Cleanup.
func Open(t testing.TB, dialect string) *store.Store {
	t.Helper()
	cfg := Config(t, dialect)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("storetest: open %s store: %v", dialect, err)
	}
	// Registered after Config's cleanup, so it runs before the schema is dropped.
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("storetest: close %s store: %v", dialect, err)
		}
	})
	return s
}

func postgresConfig(t testing.TB) store.Config {
	t.Helper()
	base := os.Getenv(EnvDatabaseURL)
	if base == "" {
		t.Skip(EnvDatabaseURL + " not set: PostgreSQL suite skipped")
	}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("storetest: parse %s: %v", EnvDatabaseURL, err)
	}
	schema := schemaName(t.Name())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := sql.Open("postgres", base)
	if err != nil {
		t.Fatalf("storetest: open %s: %v", EnvDatabaseURL, err)
	}
	// schema is made of [a-z0-9_] only, so quoting it is enough.
	if _, err := admin.ExecContext(ctx, `CREATE SCHEMA "`+schema+`"`); err != nil {
		_ = admin.Close()
		t.Fatalf("storetest: create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		defer admin.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, `DROP SCHEMA "`+schema+`" CASCADE`); err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
		}
	})

	// lib/pq sends parameters it does not know as run-time parameters.
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return store.Config{DatabaseURL: u.String()}
}

// schemaName is a valid, unquoted-safe PostgreSQL identifier (≤ 63 bytes)
// from the test name plus a random suffix.
func schemaName(testName string) string {
	var b strings.Builder
	b.WriteString("lstest_")
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 45 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var suffix [6]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		panic(fmt.Sprintf("storetest: random: %v", err))
	}
	b.WriteByte('_')
	b.WriteString(hex.EncodeToString(suffix[:]))
	return b.String()
}
