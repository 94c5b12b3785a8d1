package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// counters are what writers have done so far, for the progress line.
type counters struct {
	requests, ops, errors atomic.Int64
}

func (c *counters) line(start time.Time) string {
	el := time.Since(start).Seconds()
	return fmt.Sprintf("requests=%d ops=%d (%.0f ops/s) errors=%d", c.requests.Load(), c.ops.Load(), float64(c.ops.Load())/el, c.errors.Load())
}

// writeLoop posts the bodies body(k) to room(k), k = 0, 1, …, until until
// or ctx ends, one request at a time, pacing them at rate per second when
// rate > 0. It returns the ack latencies of the successful requests.
func (g *gen) writeLoop(ctx context.Context, until time.Time, rate float64, c *counters, opsPer int,
	room func(k int) string, body func(k int) []byte) latencies {
	var lat latencies
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	for k := 0; ctx.Err() == nil && time.Now().Before(until); k++ {
		if tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				return lat
			}
		}
		b := body(k)
		start := time.Now()
		status, _, err := g.do(ctx, "POST", "/rooms/"+room(k)+"/ops", b)
		d := time.Since(start)
		c.requests.Add(1)
		if err != nil || status != http.StatusOK {
			if ctx.Err() == nil {
				c.errors.Add(1)
			}
			continue
		}
		c.ops.Add(int64(opsPer))
		lat = append(lat, d)
	}
	return lat
}

// ingest: W writers post batches of B ops into R rooms for T.
func (g *gen) ingest(ctx context.Context) (result, error) {
	o := g.o
	rooms := make([]string, o.rooms)
	for i := range rooms {
		id, err := g.createRoom(ctx, "loadgen ingest")
		if err != nil {
			return result{}, err
		}
		if _, err := g.fill(ctx, id, "w", o.writers); err != nil {
			return result{}, err
		}
		rooms[i] = id
	}
	var c counters
	start := time.Now()
	until := start.Add(o.duration)
	stop := g.every(ctx, start, func() string { return c.line(start) })
	all := make([]latencies, o.writers)
	var wg sync.WaitGroup
	for w := range o.writers {
		node := "w" + strconv.Itoa(w)
		wg.Go(func() {
			all[w] = g.writeLoop(ctx, until, 0, &c, o.batch,
				func(k int) string { return rooms[(w+k*o.writers)%len(rooms)] },
				func(k int) []byte {
					ops := make([]string, o.batch)
					for j := range ops {
						ops[j] = moveNode(node, k*o.batch+j)
					}
					return opsBody("loadgen", ops)
				})
		})
	}
	wg.Wait()
	stop()
	elapsed := time.Since(start)
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	var lat latencies
	for _, l := range all {
		lat = append(lat, l...)
	}
	var r result
	r.add("writers × ops", "%d × %d", o.writers, o.batch)
	r.add("rooms", "%d", o.rooms)
	r.add("seconds", "%.0f", elapsed.Seconds())
	r.add("requests/s", "%.0f", float64(len(lat))/elapsed.Seconds())
	r.add("ops/s", "%.0f", float64(c.ops.Load())/elapsed.Seconds())
	r.add("ack p50", "%s", ms(lat.pct(.5)))
	r.add("ack p99", "%s", ms(lat.pct(.99)))
	r.add("ack max", "%s", ms(lat.max()))
	r.add("errors", "%d", c.errors.Load())
	return r, nil
}

// streamClient is for event streams: one connection each, no pooling limit.
func streamClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: -1}}
}

// openMany opens n streams to the room, at most 64 connecting at once, and
// waits until each got its first event. It returns the streams that opened
// and how many failed.
func (g *gen) openMany(ctx context.Context, roomID string, n int, onData func(i int) func(string, []byte, time.Time)) ([]*stream, int) {
	client := streamClient()
	streams := make([]*stream, n)
	var failed atomic.Int64
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var opened atomic.Int64
	start := time.Now()
	stop := g.every(ctx, start, func() string { return fmt.Sprintf("streams open=%d/%d failed=%d", opened.Load(), n, failed.Load()) })
	defer stop()
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var fn func(string, []byte, time.Time)
			if onData != nil {
				fn = onData(i)
			}
			s, err := g.subscribe(ctx, client, roomID, fn)
			if err != nil {
				failed.Add(1)
				return
			}
			select {
			case <-s.opened:
				streams[i] = s
				opened.Add(1)
			case <-s.ended:
				failed.Add(1)
			case <-ctx.Done():
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	var ok []*stream
	for _, s := range streams {
		if s != nil {
			ok = append(ok, s)
		}
	}
	return ok, int(failed.Load())
}

// closeAll ends the streams and waits for their goroutines.
func closeAll(streams []*stream) {
	for _, s := range streams {
		s.body.Close()
	}
	for _, s := range streams {
		<-s.ended
	}
}

// sentPrefix marks the client ids fanout writers send: "lg" and the send
// time in unix nanoseconds, echoed in every event carrying the op.
var sentPrefix = []byte(`"client_id":"lg`)

// fanout: S subscribers in one room, W writers; the delay from a writer's
// send to each subscriber's receipt.
func (g *gen) fanout(ctx context.Context) (result, error) {
	o := g.o
	roomID, err := g.createRoom(ctx, "loadgen fanout")
	if err != nil {
		return result{}, err
	}
	if _, err := g.fill(ctx, roomID, "n", o.writers); err != nil {
		return result{}, err
	}
	type recv struct {
		delays latencies
		n      int64
	}
	recvs := make([]recv, o.subscribers)
	var delivered atomic.Int64
	const maxSamples = 200000 // per subscriber
	connectStart := time.Now()
	streams, failed := g.openMany(ctx, roomID, o.subscribers, func(i int) func(string, []byte, time.Time) {
		return func(event string, data []byte, at time.Time) {
			if event != "ops" {
				return
			}
			for {
				j := bytes.Index(data, sentPrefix)
				if j < 0 {
					return
				}
				data = data[j+len(sentPrefix):]
				end := bytes.IndexByte(data, '"')
				if end < 0 {
					return
				}
				sent, err := strconv.ParseInt(string(data[:end]), 10, 64)
				if err != nil {
					continue
				}
				r := &recvs[i]
				r.n++
				if len(r.delays) < maxSamples {
					r.delays = append(r.delays, at.Sub(time.Unix(0, sent)))
				}
				delivered.Add(1)
			}
		}
	})
	connect := time.Since(connectStart)
	defer closeAll(streams)
	if ctx.Err() != nil {
		return result{}, ctx.Err()
	}
	if len(streams) == 0 {
		return result{}, errors.New("no subscriber could connect")
	}

	var c counters
	start := time.Now()
	until := start.Add(o.duration)
	stop := g.every(ctx, start, func() string {
		return fmt.Sprintf("%s delivered=%d", c.line(start), delivered.Load())
	})
	var wg sync.WaitGroup
	for w := range o.writers {
		node := "n" + strconv.Itoa(w)
		wg.Go(func() {
			g.writeLoop(ctx, until, o.rate, &c, 1,
				func(int) string { return roomID },
				func(k int) []byte {
					return opsBody("lg"+strconv.FormatInt(time.Now().UnixNano(), 10), []string{moveNode(node, k)})
				})
		})
	}
	wg.Wait()
	writing := time.Since(start)
	// Let the last events arrive: until every subscriber has every op, or 5s.
	want := c.ops.Load() * int64(len(streams))
	for grace := time.Now().Add(5 * time.Second); delivered.Load() < want && time.Now().Before(grace) && ctx.Err() == nil; {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	lost := 0
	for _, s := range streams {
		select {
		case <-s.ended:
			lost++
		default:
		}
	}
	closeAll(streams)
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	var lat latencies
	for _, r := range recvs {
		lat = append(lat, r.delays...)
	}
	var r result
	r.add("subscribers", "%d", o.subscribers)
	r.add("writers × req/s", "%d × %g", o.writers, o.rate)
	r.add("connect all", "%s", secs(connect))
	r.add("ops sent", "%d", c.ops.Load())
	r.add("deliveries/s", "%.0f", float64(delivered.Load())/writing.Seconds())
	r.add("delay p50", "%s", ms(lat.pct(.5)))
	r.add("delay p99", "%s", ms(lat.pct(.99)))
	r.add("delay max", "%s", ms(lat.max()))
	r.add("missing", "%d", max(want-delivered.Load(), 0))
	r.add("lost", "%d", lost+failed)
	r.add("errors", "%d", c.errors.Load())
	return r, nil
}

// connections: C idle streams held open; the server's resident memory per
// connection and the time to open them all.
func (g *gen) connections(ctx context.Context) (result, error) {
	o := g.o
	roomID, err := g.createRoom(ctx, "loadgen connections")
	if err != nil {
		return result{}, err
	}
	rss0, heap0, err := g.memory(ctx)
	if err != nil {
		return result{}, err
	}
	start := time.Now()
	streams, failed := g.openMany(ctx, roomID, o.conns, nil)
	open := time.Since(start)
	defer closeAll(streams)
	select {
	case <-time.After(o.hold):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	rss1, heap1, err := g.memory(ctx)
	if err != nil {
		return result{}, err
	}
	subs, err := g.metric(ctx, "liveshare_sse_subscribers")
	if err != nil {
		return result{}, err
	}
	n := float64(max(len(streams), 1))
	var r result
	r.add("connections", "%d", o.conns)
	r.add("open all", "%s", secs(open))
	r.add("server subscribers", "%.0f", subs)
	r.add("RSS before → after", "%.0f → %.0f MiB", rss0/(1<<20), rss1/(1<<20))
	r.add("RSS per conn", "%.1f KiB", (rss1-rss0)/n/1024)
	r.add("heap per conn", "%.1f KiB", (heap1-heap0)/n/1024)
	r.add("failed", "%d", failed)
	return r, nil
}

// snapshot: a room of E elements with W writers, first alone, then while
// snapshots are forced one after another; the writers' ack latency in each.
func (g *gen) snapshot(ctx context.Context) (result, error) {
	o := g.o
	roomID, err := g.createRoom(ctx, "loadgen snapshot")
	if err != nil {
		return result{}, err
	}
	fillStart := time.Now()
	if _, err := g.fill(ctx, roomID, "e", o.elements); err != nil {
		return result{}, err
	}
	fmt.Fprintf(g.log, "[snapshot] filled %d elements in %s\n", o.elements, secs(time.Since(fillStart)))
	// A first snapshot, so that the baseline phase is not followed by one
	// that also covers the fill.
	if _, err := g.must(ctx, http.StatusCreated, "POST", "/rooms/"+roomID+"/snapshots", nil); err != nil {
		return result{}, err
	}
	auto0, err := g.metric(ctx, "liveshare_snapshot_attempts_total")
	if err != nil {
		return result{}, err
	}
	phase := func(during func(ctx context.Context)) (latencies, int64) {
		var c counters
		start := time.Now()
		until := start.Add(o.duration)
		stop := g.every(ctx, start, func() string { return c.line(start) })
		defer stop()
		pctx, cancel := context.WithCancel(ctx)
		var bg sync.WaitGroup
		if during != nil {
			bg.Go(func() { during(pctx) })
		}
		all := make([]latencies, o.writers)
		var wg sync.WaitGroup
		for w := range o.writers {
			node := "e" + strconv.Itoa(w%o.elements)
			wg.Go(func() {
				all[w] = g.writeLoop(ctx, until, 0, &c, o.batch, func(int) string { return roomID },
					func(k int) []byte {
						ops := make([]string, o.batch)
						for j := range ops {
							ops[j] = moveNode(node, k*o.batch+j)
						}
						return opsBody("loadgen", ops)
					})
			})
		}
		wg.Wait()
		cancel()
		bg.Wait()
		var lat latencies
		for _, l := range all {
			lat = append(lat, l...)
		}
		return lat, c.errors.Load()
	}
	fmt.Fprintf(g.log, "[snapshot] phase 1: writers alone for %s\n", o.duration)
	base, errs1 := phase(nil)
	auto1, err := g.metric(ctx, "liveshare_snapshot_attempts_total")
	if err != nil {
		return result{}, err
	}
	fmt.Fprintf(g.log, "[snapshot] phase 2: writers while snapshots are forced for %s\n", o.duration)
	var snaps latencies
	var snapErrs int
	during, errs2 := phase(func(ctx context.Context) {
		for ctx.Err() == nil {
			start := time.Now()
			status, body, err := g.do(ctx, "POST", "/rooms/"+roomID+"/snapshots", nil)
			if ctx.Err() != nil {
				return
			}
			switch {
			case err != nil || (status != http.StatusCreated && status != http.StatusOK):
				fmt.Fprintf(g.log, "[snapshot] POST /snapshots: %d %v %s\n", status, err, body)
				snapErrs++
			case status == http.StatusCreated:
				snaps = append(snaps, time.Since(start))
			}
			// 200: no writer got in since the last snapshot, so the server
			// answered the existing one; neither a snapshot nor an error.
		}
	})
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	var avg time.Duration
	for _, d := range snaps {
		avg += d
	}
	if len(snaps) > 0 {
		avg /= time.Duration(len(snaps))
	}
	var r result
	r.add("elements", "%d", o.elements)
	r.add("writers × ops", "%d × %d", o.writers, o.batch)
	r.add("ack p50 / p99 alone", "%s / %s", ms(base.pct(.5)), ms(base.pct(.99)))
	r.add("ack p50 / p99 while snapshotting", "%s / %s", ms(during.pct(.5)), ms(during.pct(.99)))
	r.add("ack max alone / while", "%s / %s", ms(base.max()), ms(during.max()))
	r.add("snapshots", "%d", len(snaps))
	r.add("snapshot avg", "%s", ms(avg))
	r.add("other snapshots in phase 1", "%.0f", auto1-auto0)
	r.add("errors", "%d", errs1+errs2+int64(snapErrs))
	return r, nil
}
