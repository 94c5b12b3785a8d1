package storetest_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// The schema Config makes is the one a connection on its URL works in: lib/pq
// must pass search_path to the server as a run-time parameter.
func TestPostgresConfigSelectsSchema(t *testing.T) {
	cfg := storetest.Config(t, "postgres")
	db, err := sql.Open("postgres", cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var schema sql.NullString
	if err := db.QueryRowContext(context.Background(), `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	if !schema.Valid || len(schema.String) < len("lstest_") || schema.String[:len("lstest_")] != "lstest_" {
		t.Fatalf("current_schema() = %v, want the test's lstest_… schema", schema)
	}
}

func TestDialects(t *testing.T) {
	var ran []string
	storetest.Dialects(t, func(t *testing.T, cfg store.Config) {
		ran = append(ran, t.Name())
		s, err := store.Open(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	if len(ran) == 0 {
		t.Fatal("no dialect ran")
	}
}

func TestOpen(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			s := storetest.Open(t, dialect)
			if got, want := s.Dialect(), dialect; got != want {
				t.Errorf("Dialect() = %q, want %q", got, want)
			}
		})
	}
}
