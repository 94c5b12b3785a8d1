package migrations_test

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/liveshare/liveshare/migrations"
	"github.com/liveshare/liveshare/store/storetest"
)

// Both dialects have the same migration versions.
func TestSameVersions(t *testing.T) {
	names := func(fsys fs.FS) []string {
		t.Helper()
		m, err := fs.Glob(fsys, "*.sql")
		if err != nil || len(m) == 0 {
			t.Fatalf("migrations: %v, %v", m, err)
		}
		return m
	}
	if pg, lite := names(migrations.Postgres), names(migrations.SQLite); !slices.Equal(pg, lite) {
		t.Errorf("postgres migrations %v, sqlite migrations %v", pg, lite)
	}
}

// Every migration goes down and up again cleanly.
func TestUpDownUp(t *testing.T) {
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			cfg := storetest.Config(t, dialect)
			driver, dsn, fsys, gd := "postgres", cfg.DatabaseURL, migrations.Postgres, goose.DialectPostgres
			if dialect == "sqlite" {
				driver, dsn, fsys, gd = "sqlite", "file:"+filepath.Join(cfg.DataDir, "m.db")+"?_pragma=foreign_keys(1)", migrations.SQLite, goose.DialectSQLite3
			}
			db, err := sql.Open(driver, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			p, err := goose.NewProvider(gd, db, fsys, goose.WithDisableGlobalRegistry(true))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Up(ctx); err != nil {
				t.Fatalf("up: %v", err)
			}
			if _, err := p.DownTo(ctx, 0); err != nil {
				t.Fatalf("down: %v", err)
			}
			if _, err := p.Up(ctx); err != nil {
				t.Fatalf("up again: %v", err)
			}
			if _, err := db.ExecContext(ctx, `SELECT pruned_through FROM rooms`); err != nil {
				t.Errorf("rooms.pruned_through after up-down-up: %v", err)
			}
		})
	}
}
