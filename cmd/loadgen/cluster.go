package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serverEnv is this process's environment without LiveShare's settings,
// plus extra: every server loadgen starts is configured by loadgen alone.
func serverEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LIVESHARE_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// clusterOp is what a subscriber reads of each op in an ops event.
type clusterEvent struct {
	Ops []struct {
		Seq      int64  `json:"seq"`
		ClientID string `json:"client_id"`
	} `json:"ops"`
}

// clusterSub is one subscriber's record: every seq it got, how often, and
// the delivery delays of ops written on another instance and on its own.
type clusterSub struct {
	instance    int
	seen        map[int64]int
	cross, same latencies
}

// cluster: N instances on one PostgreSQL; W writers and S subscribers of
// one room spread over them. Every subscriber must get every op exactly
// once; the delay from a write on one instance to its delivery by another
// is the cluster's cost. After every tenth ack a reader on the next
// instance checks that its GET /graph is not older than that ack.
func (g *gen) cluster(ctx context.Context) (result, error) {
	o := g.o
	if !strings.HasPrefix(o.databaseURL, "postgres") {
		return result{}, errors.New("-database-url must name a PostgreSQL database: instances share one")
	}
	dir, err := os.MkdirTemp("", "liveshare-loadgen-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	bin, err := g.serverBinary(ctx, dir)
	if err != nil {
		return result{}, err
	}
	insts := make([]*gen, o.instances)
	for i := range insts {
		srv, err := startServer(ctx, bin, serverEnv(
			"LIVESHARE_ADDR=127.0.0.1:0",
			"LIVESHARE_DATA_DIR="+filepath.Join(dir, "data"+strconv.Itoa(i)),
			"DATABASE_URL="+o.databaseURL,
			"LIVESHARE_LOG_FORMAT=text",
		))
		if err != nil {
			return result{}, fmt.Errorf("instance %d: %w", i, err)
		}
		defer srv.stop()
		gi := *g
		gi.base = "http://" + srv.addr
		if err := localOnly(gi.base); err != nil {
			return result{}, err
		}
		insts[i] = &gi
	}
	fmt.Fprintf(g.log, "[cluster] %d instances on %s\n", o.instances, o.databaseURL)

	roomID, err := insts[0].createRoom(ctx, "loadgen cluster")
	if err != nil {
		return result{}, err
	}
	v0, err := insts[0].fill(ctx, roomID, "n", o.writers)
	if err != nil {
		return result{}, err
	}

	subs := make([]*clusterSub, o.subscribers)
	var delivered atomic.Int64
	var streams []*stream
	var failed int
	for i := range o.instances {
		var mine []int
		for s := i; s < len(subs); s += o.instances {
			subs[s] = &clusterSub{instance: i, seen: make(map[int64]int)}
			mine = append(mine, s)
		}
		opened, bad := insts[i].openMany(ctx, roomID, len(mine), func(k int) func(string, []byte, time.Time) {
			sub := subs[mine[k]]
			return func(event string, data []byte, at time.Time) {
				if event != "ops" {
					return
				}
				var ev clusterEvent
				if json.Unmarshal(data, &ev) != nil {
					return
				}
				for _, op := range ev.Ops {
					sub.seen[op.Seq]++
					if op.Seq <= v0 {
						continue // the fill, replayed to a stream that starts before any snapshot
					}
					delivered.Add(1)
					from, sent, ok := parseClusterClient(op.ClientID)
					if !ok {
						continue
					}
					d := at.Sub(time.Unix(0, sent))
					if from == sub.instance {
						sub.same = append(sub.same, d)
					} else {
						sub.cross = append(sub.cross, d)
					}
				}
			}
		})
		streams = append(streams, opened...)
		failed += bad
	}
	defer closeAll(streams)
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}

	var c counters
	var stale, reads atomic.Int64
	start := time.Now()
	until := start.Add(o.duration)
	stop := g.every(ctx, start, func() string {
		return fmt.Sprintf("%s delivered=%d stale=%d", c.line(start), delivered.Load(), stale.Load())
	})
	var wg sync.WaitGroup
	for w := range o.writers {
		inst := w % o.instances
		node := "n" + strconv.Itoa(w)
		wg.Go(func() {
			gi, next := insts[inst], insts[(inst+1)%o.instances]
			tick := time.NewTicker(time.Duration(float64(time.Second) / o.rate))
			defer tick.Stop()
			for k := 0; time.Now().Before(until); k++ {
				select {
				case <-tick.C:
				case <-ctx.Done():
					return
				}
				client := fmt.Sprintf("lgc%d-%d", inst, time.Now().UnixNano())
				status, data, err := gi.do(ctx, "POST", "/rooms/"+roomID+"/ops", opsBody(client, []string{moveNode(node, k)}))
				c.requests.Add(1)
				if err != nil || status != http.StatusOK {
					if ctx.Err() == nil {
						c.errors.Add(1)
						fmt.Fprintf(g.log, "[cluster] write on instance %d: %d %v %s\n", inst, status, err, truncate(data, 200))
					}
					continue
				}
				c.ops.Add(1)
				if k%10 != 0 {
					continue
				}
				acked, err := versionOf(data)
				if err != nil {
					c.errors.Add(1)
					continue
				}
				got, err := next.graphVersion(ctx, roomID)
				if err != nil {
					if ctx.Err() == nil {
						c.errors.Add(1)
					}
					continue
				}
				reads.Add(1)
				if got < acked {
					stale.Add(1)
				}
			}
		})
	}
	wg.Wait()
	writing := time.Since(start)
	final, err := insts[0].graphVersion(ctx, roomID)
	if err != nil {
		return result{}, err
	}
	want := (final - v0) * int64(len(streams))
	for grace := time.Now().Add(5 * time.Second); delivered.Load() < want && time.Now().Before(grace) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	closeAll(streams)
	streams = nil
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	var cross, same latencies
	var lost, dup int64
	for _, s := range subs {
		if s == nil {
			continue
		}
		cross, same = append(cross, s.cross...), append(same, s.same...)
		for seq := v0 + 1; seq <= final; seq++ {
			switch n := s.seen[seq]; {
			case n == 0:
				if lost < 20 {
					fmt.Fprintf(g.log, "[cluster] a subscriber on instance %d lacks seq %d (room at %d)\n", s.instance, seq, final)
				}
				lost++
			case n > 1:
				dup += int64(n - 1)
			}
		}
	}
	var r result
	r.add("instances", "%d", o.instances)
	r.add("writers × req/s", "%d × %g", o.writers, o.rate)
	r.add("subscribers", "%d", o.subscribers)
	r.add("ops/s", "%.0f", float64(c.ops.Load())/writing.Seconds())
	r.add("cross-instance delay p50 / p99", "%s / %s", ms(cross.pct(.5)), ms(cross.pct(.99)))
	r.add("same-instance delay p50 / p99", "%s / %s", ms(same.pct(.5)), ms(same.pct(.99)))
	r.add("lost", "%d", lost+int64(failed))
	r.add("duplicated", "%d", dup)
	r.add("stale reads", "%d of %d", stale.Load(), reads.Load())
	r.add("errors", "%d", c.errors.Load())
	return r, nil
}

// parseClusterClient reads the writer's instance and send time from a
// client id "lgc<instance>-<unix nanoseconds>".
func parseClusterClient(id string) (instance int, sent int64, ok bool) {
	rest, found := strings.CutPrefix(id, "lgc")
	if !found {
		return 0, 0, false
	}
	inst, ns, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	i, err1 := strconv.Atoi(inst)
	t, err2 := strconv.ParseInt(ns, 10, 64)
	return i, t, err1 == nil && err2 == nil
}

func versionOf(data []byte) (int64, error) {
	var r struct {
		Version int64 `json:"version"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return 0, fmt.Errorf("decode version: %w", err)
	}
	return r.Version, nil
}

// graphVersion reads the room's version through GET /graph.
func (g *gen) graphVersion(ctx context.Context, roomID string) (int64, error) {
	data, err := g.must(ctx, http.StatusOK, "GET", "/rooms/"+roomID+"/graph", nil)
	if err != nil {
		return 0, err
	}
	return versionOf(data)
}
