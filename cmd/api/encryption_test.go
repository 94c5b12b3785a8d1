package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store"
	"github.com/liveshare/liveshare/store/storetest"
)

// End-to-end tests of encryption at rest (DESIGN.md 9.6) against the built
// binary, on each database.

// atRestSecret is in every label and data of the rooms these tests make.
const atRestSecret = "QUARTERLY-PAYROLL-7731"

func encKey(t *testing.T, id string) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(k)
}

// secretNodes is a batch of n add_node ops from index from, each holding
// the secret in its label and data.
func secretNodes(from, n int) []map[string]any {
	ops := make([]map[string]any, n)
	for i := range ops {
		id := fmt.Sprintf("n%d", from+i)
		ops[i] = map[string]any{"op": "add_node", "node": map[string]any{"id": id, "kind": "table",
			"label": atRestSecret + " " + id, "x": 1, "y": 2, "data": map[string]any{"owner": atRestSecret}}}
	}
	return ops
}

// dbBytes is what the database keeps of cfg's data: the SQLite files, or a
// pg_dump of the test's schema.
func dbBytes(t *testing.T, cfg store.Config) []byte {
	t.Helper()
	if cfg.DatabaseURL == "" {
		files, _ := filepath.Glob(filepath.Join(cfg.DataDir, "liveshare.db*"))
		var all []byte
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		if len(all) == 0 {
			t.Fatal("no database files")
		}
		return all
	}
	u, err := url.Parse(cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	schema := u.Query().Get("search_path")
	out, err := exec.Command("pg_dump", "-n", schema, os.Getenv(storetest.EnvDatabaseURL)).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	return out
}

// rawQuery runs a query with ? placeholders on cfg's database and scans
// its one row into dest.
func rawQuery(t *testing.T, cfg store.Config, query string, args []any, dest ...any) {
	t.Helper()
	driver, dsn := "sqlite", filepath.Join(cfg.DataDir, "liveshare.db")
	if cfg.DatabaseURL != "" {
		driver, dsn = "postgres", cfg.DatabaseURL
		for i := 1; strings.Contains(query, "?"); i++ {
			query = strings.Replace(query, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRowContext(context.Background(), query, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// startRefused runs the binary on cfg with env and returns its output,
// failing the test when it starts.
func startRefused(t *testing.T, cfg store.Config, env ...string) string {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = append(os.Environ(), "LIVESHARE_ADDR=127.0.0.1:0", "DATABASE_URL="+cfg.DatabaseURL, "LIVESHARE_DATA_DIR="+cfg.DataDir)
	cmd.Env = append(cmd.Env, env...)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { // ends when the process does, or is killed below
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("the process started with %v:\n%s", env, out)
	}
	if err == nil {
		t.Fatalf("the process exited cleanly with %v:\n%s", env, out)
	}
	return strings.TrimSpace(string(out))
}

// TestEncryptedAtRest: with keys, the stored bytes hold no label or data in
// clear, reads and downloads are plain, a tampered snapshot falls back to
// the one before, a tampered op answers 503, and the database refuses to
// start without its key.
func TestEncryptedAtRest(t *testing.T) {
	databases(t, func(t *testing.T, cfg store.Config) {
		k1 := encKey(t, "k1")
		srv := startServer(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k1)
		if !strings.Contains(srv.logs.String(), "encryption=\"key k1\"") {
			t.Errorf("the start line does not name the current key:\n%s", srv.logs.String())
		}
		rm := srv.createRoom("name in clear")
		srv.snapPost(rm.ID, secretNodes(0, 5))
		older := srv.snapTake(rm.ID)
		srv.snapPost(rm.ID, secretNodes(5, 5))
		newest := srv.snapTake(rm.ID)
		srv.snapPost(rm.ID, secretNodes(10, 5))
		want := srv.snapGraph(rm.ID)

		// Reads answer plain JSON; the download is the plain codec format.
		r := srv.must("GET", fmt.Sprintf("/rooms/%s/ops?since=%d", rm.ID, newest.Version), nil)
		if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(atRestSecret)) {
			t.Fatalf("GET ops: %d %s", r.Status, r.Body)
		}
		dl := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/"+newest.ID, nil, "Accept", "application/octet-stream")
		if dl.Status != http.StatusOK {
			t.Fatalf("download: %d %s", dl.Status, dl.Body)
		}
		state, version, err := snapshot.Decode(dl.Body)
		if err != nil || version != newest.Version || len(state.Nodes) != 10 {
			t.Fatalf("download decodes to %d nodes at version %d, %v; want the plain codec of 10 nodes at %d", len(state.Nodes), version, err, newest.Version)
		}
		if int64(len(dl.Body)) != newest.SizeBytes {
			t.Errorf("download is %d bytes, size_bytes says %d", len(dl.Body), newest.SizeBytes)
		}
		srv.kill()

		stored := dbBytes(t, cfg)
		if !bytes.Contains(stored, []byte("name in clear")) {
			t.Fatal("the room's name is not in the stored bytes: the dump missed the data")
		}
		if bytes.Contains(stored, []byte(atRestSecret)) {
			t.Error("a label or data is stored in clear")
		}

		// Without its key the database does not start, in one line.
		for _, env := range []string{"LIVESHARE_ENCRYPTION_KEYS=", "LIVESHARE_ENCRYPTION_KEYS=" + encKey(t, "k9")} {
			out := startRefused(t, cfg, env)
			if lines := strings.Split(out, "\n"); len(lines) != 1 || !strings.Contains(out, "key ids k1,") {
				t.Errorf("start with %q: %q, want one line naming k1", strings.SplitN(env, ":", 2)[0], out)
			}
		}

		// The newest snapshot altered: the room loads from the one before.
		flipStored(t, cfg, `SELECT data FROM snapshots WHERE id = ?`, `UPDATE snapshots SET data = ? WHERE id = ?`, newest.ID)
		srv = startServer(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k1)
		if got := srv.snapGraph(rm.ID); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("graph after the newest snapshot was altered:\n%v\nwant\n%v", got, want)
		}
		// The server's log reaches the test through a pipe: the line may
		// come a moment after the answer.
		logged := func(parts ...string) bool {
			logs := srv.logs.String()
			for _, p := range parts {
				if !strings.Contains(logs, p) {
					return false
				}
			}
			return true
		}
		waitFor(t, 5*time.Second, "a log line naming the rejected snapshot "+newest.ID, func() bool {
			return logged("stored snapshot rejected", "snapshot_id="+newest.ID, "reason=unsealable")
		})
		r = srv.must("GET", "/rooms/"+rm.ID+"/snapshots/"+newest.ID, nil)
		snapProblem(t, "GET the altered snapshot", r, http.StatusUnprocessableEntity, "snapshot_corrupt")
		if got := srv.snapGet(rm.ID, older.ID); got.Version != older.Version {
			t.Errorf("GET the older snapshot: version %d", got.Version)
		}

		// An op after the older snapshot altered: the room cannot load.
		srv.kill()
		flipStored(t, cfg, `SELECT sealed FROM ops WHERE room_id = ? AND seq = 12`, `UPDATE ops SET sealed = ? WHERE room_id = ? AND seq = 12`, rm.ID)
		srv = startServer(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k1)
		r = srv.must("GET", "/rooms/"+rm.ID+"/graph", nil)
		snapProblem(t, "GET graph with an altered op", r, http.StatusServiceUnavailable, "room_unrecoverable")
		waitFor(t, 5*time.Second, "a log line saying why the room failed (sealed data does not open)", func() bool {
			return logged("sealed data does not open")
		})
	})
}

// flipStored reads a blob, flips a byte in its middle and writes it back,
// with the server stopped.
func flipStored(t *testing.T, cfg store.Config, read, write string, args ...any) {
	t.Helper()
	var blob []byte
	rawQuery(t, cfg, read, args, &blob)
	blob[len(blob)/2] ^= 0x40
	driver, dsn := "sqlite", filepath.Join(cfg.DataDir, "liveshare.db")
	if cfg.DatabaseURL != "" {
		driver, dsn = "postgres", cfg.DatabaseURL
		for i := 1; strings.Contains(write, "?"); i++ {
			write = strings.Replace(write, "?", fmt.Sprintf("$%d", i), 1)
		}
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(write, append([]any{blob}, args...)...); err != nil {
		t.Fatalf("%s: %v", write, err)
	}
}

// rekeyCmd is `liveshare rekey` on cfg's database with the given ring.
func rekeyCmd(cfg store.Config, ring string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"rekey"}, args...)...)
	cmd.Env = append(os.Environ(), "DATABASE_URL="+cfg.DatabaseURL, "LIVESHARE_DATA_DIR="+cfg.DataDir, "LIVESHARE_ENCRYPTION_KEYS="+ring)
	return cmd
}

// TestRekeyKilledAndResumed: rekey is killed (SIGKILL) after it committed
// its first batches, run again to the end, and then the new key alone opens
// every op and snapshot. On PostgreSQL a server runs and takes writes all
// along; the embedded database is rekeyed with its server stopped.
func TestRekeyKilledAndResumed(t *testing.T) {
	databases(t, func(t *testing.T, cfg store.Config) {
		k1, k2 := encKey(t, "k1"), encKey(t, "k2")
		srv := startServer(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k1)
		var rooms []roomJSON
		for i := range 2 {
			rm := srv.createRoom(fmt.Sprintf("room %d", i))
			rooms = append(rooms, rm)
			for b := range 10 {
				srv.snapPost(rm.ID, secretNodes(b*100, 100))
				if b == 4 || b == 9 {
					srv.snapTake(rm.ID)
				}
			}
		}
		pg := cfg.DatabaseURL != ""
		if pg {
			// Every instance lists the new key first before rekey starts.
			srv.kill()
			srv = startServer(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k2+","+k1)
		} else {
			out, err := rekeyCmd(cfg, k2+","+k1).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "stop the server") {
				t.Errorf("rekey beside a running server on SQLite: %v %q, want a refusal saying to stop the server", err, out)
			}
			srv.kill()
		}

		// First run: killed once it has committed a few batches.
		cmd := rekeyCmd(cfg, k2+","+k1, "-batch", "1")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		committed := 0
		for committed < 3 && sc.Scan() {
			if strings.HasPrefix(sc.Text(), "rekey: committed:") {
				committed++
			}
		}
		if pg { // a write while rekey runs, sealed under k2
			srv.snapPost(rooms[0].ID, secretNodes(5000, 3))
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if committed < 3 {
			t.Fatalf("rekey ended before committing 3 batches")
		}
		var underK1, underK2 int64
		rawQuery(t, cfg, `SELECT count(*) FROM ops WHERE key_id = ?`, []any{"k1"}, &underK1)
		rawQuery(t, cfg, `SELECT count(*) FROM ops WHERE key_id = ?`, []any{"k2"}, &underK2)
		if underK1 == 0 || underK2 == 0 {
			t.Fatalf("after the kill %d ops are under k1 and %d under k2; want rekey stopped halfway (raise the op count)", underK1, underK2)
		}

		// Second run: to the end; it resumes and retires k1.
		out, err := rekeyCmd(cfg, k2+","+k1).CombinedOutput()
		if err != nil {
			t.Fatalf("rekey again: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "key ids k1 any more") {
			t.Errorf("rekey output does not say k1 can be dropped:\n%s", out)
		}
		rawQuery(t, cfg, `SELECT count(*) FROM ops WHERE key_id <> ?`, []any{"k2"}, &underK1)
		if underK1 != 0 {
			t.Errorf("%d ops are not under k2 after rekey", underK1)
		}

		// The new key alone: every op and snapshot opens.
		srv.kill()
		srv = startServer(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k2)
		for i, rm := range rooms {
			want := 1000
			if pg && i == 0 {
				want += 3
			}
			if g := srv.snapGraph(rm.ID); len(g.Nodes) != want {
				t.Errorf("room %d: %d nodes, want %d", i, len(g.Nodes), want)
			}
			list := srv.snapList(rm.ID)
			if len(list) == 0 {
				t.Fatalf("room %d has no snapshots", i)
			}
			for _, m := range list {
				if r := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/"+m.ID, nil, "Accept", "application/octet-stream"); r.Status != http.StatusOK {
					t.Errorf("snapshot %s: %d %s", m.ID, r.Status, r.Body)
				}
			}
			r := srv.must("GET", fmt.Sprintf("/rooms/%s/ops?since=%d&limit=1000", rm.ID, list[len(list)-1].Version), nil)
			if r.Status != http.StatusOK {
				t.Errorf("room %d ops: %d %s", i, r.Status, r.Body)
			}
		}
		if strings.Contains(srv.logs.String(), "stored snapshot rejected") {
			t.Errorf("a snapshot was rejected after rekey:\n%s", srv.logs.String())
		}
		srv.kill()
		if bytes.Contains(dbBytes(t, cfg), []byte(atRestSecret)) {
			t.Error("a label or data is stored in clear after rekey")
		}
		out2 := startRefused(t, cfg, "LIVESHARE_ENCRYPTION_KEYS="+k1)
		if !strings.Contains(out2, "key ids k2,") {
			t.Errorf("start with the retired key alone: %q, want it to name k2", out2)
		}
	})
}

// TestEncryptionSettingsRefused: bad key rings stop the server and rekey
// with one line naming the setting, never quoting a key.
func TestEncryptionSettingsRefused(t *testing.T) {
	trackSources(t)
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, v := range []string{"k1", "k1:" + short, "k1:***", ":" + short, "k1:" + short + ",k1:" + short} {
		for _, sub := range [][]string{nil, {"rekey"}} {
			cmd := exec.Command(binary, sub...)
			cmd.Env = append(os.Environ(), "LIVESHARE_DATA_DIR="+t.TempDir(), "LIVESHARE_ADDR=127.0.0.1:0", "LIVESHARE_ENCRYPTION_KEYS="+v)
			out, err := cmd.CombinedOutput()
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if err == nil || len(lines) != 1 || !strings.Contains(lines[0], "LIVESHARE_ENCRYPTION_KEYS") {
				t.Errorf("%v with %q: %v %q, want one line naming LIVESHARE_ENCRYPTION_KEYS", sub, v, err, out)
			}
			if strings.Contains(string(out), short) {
				t.Errorf("%v with %q: the error quotes the key: %q", sub, v, out)
			}
		}
	}
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"rekey"}, "", "LIVESHARE_ENCRYPTION_KEYS is not set"},
		{[]string{"rekey", "extra"}, encKey(t, "k1"), "unexpected argument"},
		{[]string{"rekey", "-batch", "0"}, encKey(t, "k1"), "LIVESHARE_REKEY_BATCH"},
		{[]string{"rekey"}, encKey(t, "k1"), "no embedded database"},
	} {
		cmd := exec.Command(binary, c.args...)
		cmd.Env = append(os.Environ(), "LIVESHARE_DATA_DIR="+filepath.Join(dir, "missing"), "LIVESHARE_ENCRYPTION_KEYS="+c.env)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: %v %q, want an error saying %q", c.args, err, out, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); err == nil {
		t.Error("rekey created a data directory")
	}
}

// TestSQLiteServerReseals: the embedded database belongs to one process,
// so there the server itself re-seals in the background what is not under
// its current key: plain rows once keys are set, and an older key's rows
// once a new key is listed first. After that the new key alone opens
// everything.
func TestSQLiteServerReseals(t *testing.T) {
	t.Parallel()
	cfg := store.Config{DataDir: t.TempDir()}
	k1, k2 := encKey(t, "k1"), encKey(t, "k2")
	srv := startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h")
	rm := srv.createRoom("plain at first")
	for b := range 5 {
		srv.snapPost(rm.ID, secretNodes(b*100, 100))
	}
	srv.snapTake(rm.ID)
	srv.snapPost(rm.ID, secretNodes(500, 100))
	srv.kill()

	notUnder := func(key string) (ops, snaps int64) {
		rawQuery(t, cfg, `SELECT count(*) FROM ops WHERE key_id IS NULL OR key_id <> ?`, []any{key}, &ops)
		rawQuery(t, cfg, `SELECT count(*) FROM snapshots WHERE key_id IS NULL OR key_id <> ?`, []any{key}, &snaps)
		return ops, snaps
	}
	for _, step := range []struct{ ring, current string }{{k1, "k1"}, {k2 + "," + k1, "k2"}} {
		srv = startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h", "LIVESHARE_ENCRYPTION_KEYS="+step.ring)
		// The room serves while the rows are re-sealed.
		if g := srv.snapGraph(rm.ID); len(g.Nodes) != 600 {
			t.Fatalf("under %s: %d nodes, want 600", step.current, len(g.Nodes))
		}
		deadline := time.Now().Add(time.Minute)
		for !strings.Contains(srv.logs.String(), `msg="re-sealed under the current key" key=`+step.current) {
			if time.Now().After(deadline) {
				t.Fatalf("no re-sealing under %s logged within a minute:\n%s", step.current, srv.logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		srv.kill()
		if ops, snaps := notUnder(step.current); ops != 0 || snaps != 0 {
			t.Fatalf("after the server re-sealed under %s: %d ops and %d snapshots are not under it", step.current, ops, snaps)
		}
	}

	srv = startServer(t, cfg, "LIVESHARE_SNAPSHOT_INTERVAL=1h", "LIVESHARE_ENCRYPTION_KEYS="+k2)
	if g := srv.snapGraph(rm.ID); len(g.Nodes) != 600 {
		t.Errorf("under k2 alone: %d nodes, want 600", len(g.Nodes))
	}
	for _, m := range srv.snapList(rm.ID) {
		if r := srv.must("GET", "/rooms/"+rm.ID+"/snapshots/"+m.ID, nil); r.Status != http.StatusOK {
			t.Errorf("snapshot %s under k2 alone: %d %s", m.ID, r.Status, r.Body)
		}
	}
	if strings.Contains(srv.logs.String(), "stored snapshot rejected") {
		t.Errorf("a snapshot was rejected after the server re-sealed:\n%s", srv.logs.String())
	}
}
