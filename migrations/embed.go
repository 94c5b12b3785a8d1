// Package migrations holds the SQL schema of LiveShare, one numbered goose
// migration per file and per dialect, embedded in the binary so that the store
// can apply them at start.
//
// Both directories must keep the same version numbers: the store refuses a
// database whose schema is newer than the newest migration embedded here.
package migrations

import (
	"embed"
	"io/fs"
)

//go:embed postgres/*.sql
var postgresFiles embed.FS

//go:embed sqlite/*.sql
var sqliteFiles embed.FS

// Postgres and SQLite are the migrations of each dialect, rooted at their
// directory, as goose.NewProvider expects them.
var (
	Postgres = mustSub(postgresFiles, "postgres")
	SQLite   = mustSub(sqliteFiles, "sqlite")
)

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		// Only an invalid dir name can fail here, which is a programming error.
		panic(err)
	}
	return sub
}
