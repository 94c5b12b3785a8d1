package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/liveshare/liveshare/store"
)

// runRekey is `liveshare rekey`: it re-seals every stored snapshot and op
// payload under the current key of LIVESHARE_ENCRYPTION_KEYS (plain rows
// included), in committed batches, and then retires the keys no row uses,
// so that they can be dropped from the ring. Stopped at any point, it is
// run again and resumes.
//
// On PostgreSQL it runs beside the serving instances. The embedded SQLite
// database belongs to one process (the data directory's lock), so there
// rekey runs while the server is stopped, and says so when it is not; a
// SQLite server does the same work itself in the background while it
// serves (App.resealInBackground).
func runRekey(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		cfg   store.Config
		batch int64
	)
	settings := []setting{
		{"DATABASE_URL", "database-url", "", "postgres://… uses PostgreSQL; empty uses the embedded SQLite file", func(s string) error {
			if s != "" && !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
				return errors.New("must be a postgres:// or postgresql:// URL, or empty for the embedded database")
			}
			cfg.DatabaseURL = s
			return nil
		}},
		{"LIVESHARE_DATA_DIR", "data-dir", "./data", "where the embedded database lives", func(s string) error {
			if s == "" {
				return errors.New("must not be empty")
			}
			cfg.DataDir = s
			return nil
		}},
		encryptionKeysSetting(&cfg.Keys),
		{"LIVESHARE_REKEY_BATCH", "batch", "500", "op rows re-sealed per transaction", func(s string) error {
			var err error
			batch, err = intIn(s, 1, 100000)
			return err
		}},
	}
	fs := flag.NewFlagSet("liveshare rekey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	values := defineSettings(fs, settings, getenv)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("rekey: unexpected argument %q", fs.Arg(0))
	}
	for i, s := range settings {
		if err := s.parse(*values[i]); err != nil {
			return fmt.Errorf("invalid %s (-%s) %q: %v", s.env, s.flag, redact(s.env, *values[i]), err)
		}
	}
	if cfg.Keys == nil {
		return errors.New("rekey: LIVESHARE_ENCRYPTION_KEYS is not set: list the new key first, then the keys in use")
	}
	if cfg.DatabaseURL == "" {
		// Rekey never creates a database: a wrong directory is a mistake.
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "liveshare.db")); err != nil {
			return fmt.Errorf("rekey: no embedded database in LIVESHARE_DATA_DIR %s: %w", cfg.DataDir, err)
		}
		release, err := store.LockDataDir(cfg.DataDir)
		if errors.Is(err, store.ErrDataDirInUse) {
			return fmt.Errorf("rekey: a LiveShare server is using %s: the embedded database serves one process, stop the server, run rekey, start it again; or restart the server with the new key listed first: it re-seals in the background while serving (on PostgreSQL rekey runs beside the servers)", cfg.DataDir)
		}
		if err != nil {
			return fmt.Errorf("rekey: %w", err)
		}
		defer release()
	}
	st, err := store.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("rekey: open database: %w", err)
	}
	defer st.Close()

	res, err := st.Rekey(ctx, int(batch), func(p store.RekeyProgress) {
		// One line per commit: what is done stays done if the run stops.
		fmt.Fprintf(stdout, "rekey: committed: %d ops, %d snapshots re-sealed under key %s\n", p.Ops, p.Snapshots, cfg.Keys.Current())
	})
	if err != nil {
		return fmt.Errorf("rekey: %w (run it again to resume)", err)
	}
	fmt.Fprintf(stdout, "rekey: done: %d ops, %d snapshots re-sealed under key %s\n", res.Ops, res.Snapshots, cfg.Keys.Current())
	if res.Remaining > 0 {
		return fmt.Errorf("rekey: %d rows are still not under key %s (%d do not open; the rest were written meanwhile under an older key, or are snapshots being stored): no key retired; check that every instance lists %s first, and run rekey again",
			res.Remaining, cfg.Keys.Current(), res.Unopenable, cfg.Keys.Current())
	}
	if len(res.Retired) > 0 {
		fmt.Fprintf(stdout, "rekey: no row uses key ids %s any more: they can be dropped from LIVESHARE_ENCRYPTION_KEYS\n", strings.Join(res.Retired, ", "))
	}
	return nil
}
