package client_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/liveshare/liveshare/client"
	"github.com/liveshare/liveshare/handlers"
	"github.com/liveshare/liveshare/room"
	"github.com/liveshare/liveshare/snapshot"
	"github.com/liveshare/liveshare/store/storetest"
)

// TestGeneratedClientIsUpToDate regenerates the client from openapi.yaml
// into a temporary directory and compares it with the committed code.
func TestGeneratedClientIsUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the generator")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "client.gen.go")
	cfg, err := os.ReadFile("oapi-codegen.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("output: client.gen.go"), []byte("output: "+out), 1)
	if !bytes.Contains(cfg, []byte(out)) {
		t.Fatal("oapi-codegen.yaml does not say output: client.gen.go")
	}
	cfgPath := filepath.Join(dir, "oapi-codegen.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "tool", "oapi-codegen", "-config", cfgPath, "../openapi.yaml")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("run oapi-codegen: %v", err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("client.gen.go")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("client/client.gen.go is not what openapi.yaml generates: run `go generate ./client` and commit the result")
	}
}

// TestClientCreatesRoomAndPostsOps uses the generated client against the
// real API over a real store.
func TestClientCreatesRoomAndPostsOps(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	snaps := snapshot.NewRegistry(st, snapshot.Config{Interval: time.Hour, Keep: 3, MaxBytes: 10 << 20})
	rooms := room.NewManager(st, room.Options{Snapshots: snaps})
	done := make(chan struct{})
	srv := httptest.NewServer(handlers.New(handlers.Config{Store: st, Rooms: rooms, Snapshots: snaps,
		Streams: handlers.StreamConfig{Done: done}}))
	t.Cleanup(func() { close(done); srv.Close() })

	ctx := context.Background()
	c, err := client.NewClientWithResponses(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	name := "from the generated client"
	created, err := c.CreateRoomWithResponse(ctx, client.CreateRoomRequest{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	if created.StatusCode() != http.StatusCreated || created.JSON201 == nil {
		t.Fatalf("create room: %d %s", created.StatusCode(), created.Body)
	}
	roomID := created.JSON201.Id
	if created.JSON201.Name != name || created.JSON201.Version != 0 {
		t.Fatalf("created room %+v", created.JSON201)
	}

	x := 120.5
	var addUsers, addOrders, addEdge client.Op
	must(t, addUsers.FromAddNodeOp(client.AddNodeOp{Op: client.AddNode, Node: client.NodeInput{
		Id: "users", X: &x, Data: &client.Data{"columns": []any{map[string]any{"name": "id", "type": "uuid"}}}}}))
	must(t, addOrders.FromAddNodeOp(client.AddNodeOp{Op: client.AddNode, Node: client.NodeInput{Id: "orders"}}))
	must(t, addEdge.FromAddEdgeOp(client.AddEdgeOp{Op: client.AddEdge, Edge: client.EdgeInput{Id: "orders_user_fk", Source: "orders", Target: "users"}}))
	key := client.IdempotencyKey("first-batch")
	clientID := "tab-1"
	posted, err := c.PostOpsWithResponse(ctx, roomID, &client.PostOpsParams{IdempotencyKey: &key},
		client.PostOpsRequest{ClientId: &clientID, Ops: []client.Op{addUsers, addOrders, addEdge}})
	if err != nil {
		t.Fatal(err)
	}
	if posted.StatusCode() != http.StatusOK || posted.JSON200 == nil || posted.JSON200.Version != 3 || posted.JSON200.Applied != 3 {
		t.Fatalf("post ops: %d %s", posted.StatusCode(), posted.Body)
	}

	// A conflict comes back as the documented problem.
	base := int64(1)
	var remove client.Op
	must(t, remove.FromRemoveNodeOp(client.RemoveNodeOp{Op: client.RemoveNode, Id: "users"}))
	conflict, err := c.PostOpsWithResponse(ctx, roomID, nil, client.PostOpsRequest{BaseVersion: &base, Ops: []client.Op{remove}})
	if err != nil {
		t.Fatal(err)
	}
	if conflict.StatusCode() != http.StatusConflict || conflict.ApplicationproblemJSON409 == nil ||
		conflict.ApplicationproblemJSON409.CurrentVersion != 3 {
		t.Fatalf("conflict: %d %s", conflict.StatusCode(), conflict.Body)
	}

	g, err := c.GetGraphWithResponse(ctx, roomID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if g.StatusCode() != http.StatusOK || g.JSON200 == nil || g.JSON200.Version != 3 || len(g.JSON200.Nodes) != 2 || len(g.JSON200.Edges) != 1 {
		t.Fatalf("graph: %d %s", g.StatusCode(), g.Body)
	}
	if n := g.JSON200.Nodes[1]; n.Id != "users" || n.X != x || n.Data["columns"] == nil {
		t.Errorf("node users came back as %+v", n)
	}

	// A request without a body says no type: LiveShare refuses it, unless
	// JSONBodies says JSON.
	bare, err := c.CreateSnapshotWithResponse(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	if bare.StatusCode() != http.StatusUnsupportedMediaType {
		t.Errorf("snapshot without a type: %d %s", bare.StatusCode(), bare.Body)
	}
	typed, err := client.NewClientWithResponses(srv.URL, client.WithRequestEditorFn(client.JSONBodies))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := typed.CreateSnapshotWithResponse(ctx, roomID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.StatusCode() != http.StatusCreated || snap.JSON201 == nil || snap.JSON201.Version != 3 {
		t.Errorf("snapshot with JSONBodies: %d %s", snap.StatusCode(), snap.Body)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
