package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/internal/testbuild"
	"github.com/liveshare/liveshare/store/storetest"
)

// serverBinary is the server the scenarios run: the build cmd/api's tests
// share (linked again only when a source changed), with the module's files
// tracked so that go test's cache sees a change to the server.
func serverBinary(t *testing.T) string {
	t.Helper()
	bin, err := testbuild.Binary(testbuild.ServerPackage)
	if err != nil {
		t.Fatal(err)
	}
	root, err := testbuild.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := testbuild.TrackSources(root); err != nil {
		t.Fatalf("track the module's sources for the test cache: %v", err)
	}
	return bin
}

// TestScenarios runs every scenario end to end, with tiny parameters,
// against the built server on SQLite.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	dir := t.TempDir()
	bin := serverBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := append(os.Environ(), "LIVESHARE_ADDR=127.0.0.1:0", "DATABASE_URL=", "LIVESHARE_DATA_DIR="+filepath.Join(dir, "data"))
	srv, err := startServer(ctx, bin, env)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	url := "http://" + srv.addr

	for _, tc := range []struct {
		name string
		args []string
		want []string // columns of the table
	}{
		{"ingest", []string{"-writers", "2", "-batch", "3", "-rooms", "2"}, []string{"ops/s", "ack p99"}},
		{"fanout", []string{"-subscribers", "5", "-rate", "50"}, []string{"delay p99", "| 5 |"}},
		{"connections", []string{"-conns", "20", "-hold", "10ms"}, []string{"RSS per conn", "| 20 |"}},
		{"stalled", []string{"-conns", "3", "-elements", "50", "-hold", "300ms"}, []string{"RSS peak (growth)", "| 3 |"}},
		{"snapshot", []string{"-elements", "200", "-writers", "2"}, []string{"while snapshotting"}},
		{"recovery", []string{"-elements", "300", "-ops", "50", "-server-bin", bin}, []string{"| 350 ✓ |"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, log bytes.Buffer
			args := append([]string{"-scenario", tc.name, "-url", url, "-duration", "300ms", "-label", "sqlite", "-progress", "100ms"}, tc.args...)
			if err := run(ctx, args, &out, &log); err != nil {
				t.Fatalf("%v\nlog:\n%s", err, log.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "| db |") || !strings.HasPrefix(lines[2], "| sqlite |") {
				t.Fatalf("not a one-row markdown table:\n%s", out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("table lacks %q:\n%s", w, out.String())
				}
			}
			if !strings.HasSuffix(lines[2], " 0 |") && tc.name != "recovery" {
				t.Errorf("errors in the run:\n%s\nlog:\n%s", out.String(), log.String())
			}
		})
	}
}

// TestClusterScenario runs -scenario cluster with two instances on a fresh
// PostgreSQL schema: every subscriber gets every op once, no read is stale.
func TestClusterScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	cfg := storetest.Config(t, "postgres")
	var out, log bytes.Buffer
	args := []string{"-scenario", "cluster", "-instances", "2", "-writers", "2", "-rate", "50", "-subscribers", "6",
		"-duration", "1s", "-label", "postgres", "-progress", "0", "-database-url", cfg.DatabaseURL,
		"-server-bin", serverBinary(t)}
	if err := run(context.Background(), args, &out, &log); err != nil {
		t.Fatalf("%v\nlog:\n%s", err, log.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[2], "| postgres | 2 | 2 × 50 | 6 |") {
		t.Fatalf("not the one-row table of a 2-instance run:\n%s\nlog:\n%s", out.String(), log.String())
	}
	// lost | duplicated | stale reads | errors
	if !regexp.MustCompile(`\| 0 \| 0 \| 0 of \d+ \| 0 \|$`).MatchString(lines[2]) {
		t.Errorf("ops lost, duplicated, stale reads or errors:\n%s\nlog:\n%s", out.String(), log.String())
	}
}

func TestClusterNeedsPostgreSQL(t *testing.T) {
	err := run(context.Background(), []string{"-scenario", "cluster", "-database-url", ""}, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("cluster without a PostgreSQL URL: %v", err)
	}
}

func TestOnlyLocalTraffic(t *testing.T) {
	for _, u := range []string{"http://example.com", "http://10.0.0.1:8080", "ftp://127.0.0.1"} {
		if err := run(context.Background(), []string{"-url", u}, &bytes.Buffer{}, &bytes.Buffer{}); err == nil {
			t.Errorf("-url %s accepted", u)
		}
	}
	for _, u := range []string{"http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"} {
		if err := localOnly(u); err != nil {
			t.Errorf("-url %s refused: %v", u, err)
		}
	}
}
