package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// stalledPad is the padding in each node of the stalled scenario's room:
// with the default 10,000 elements its snapshot event is about 9.2 MB,
// within the default room budget.
const stalledPad = 850

// stalled: a room whose snapshot event is large (-elements nodes of about
// 0.9 KB each), then -conns streams that ask for it and never read. The
// server's memory is sampled while they hang (-hold, long enough for the
// write timeout to cut them off), then after the client drops them, until
// it is back within 20 MiB of where it started (at most a minute).
func (g *gen) stalled(ctx context.Context) (result, error) {
	o := g.o
	roomID, err := g.createRoom(ctx, "loadgen stalled")
	if err != nil {
		return result{}, err
	}
	pad := strings.Repeat("x", stalledPad)
	for done := 0; done < o.elements; {
		k := min(500, o.elements-done)
		ops := make([]string, k)
		for i := range ops {
			ops[i] = fmt.Sprintf(`{"op":"add_node","node":{"id":"s%d","kind":"table","label":"t","x":%d,"y":0,"data":{"pad":%q}}}`, done+i, done+i, pad)
		}
		if _, err := g.must(ctx, http.StatusOK, "POST", "/rooms/"+roomID+"/ops", opsBody("loadgen-fill", ops)); err != nil {
			return result{}, err
		}
		done += k
	}
	// 200 when a snapshot at this version was already taken (the fill
	// passed the ops threshold).
	if status, body, err := g.do(ctx, "POST", "/rooms/"+roomID+"/snapshots", nil); err != nil || (status != http.StatusCreated && status != http.StatusOK) {
		return result{}, fmt.Errorf("take a snapshot: %d %s %v", status, truncate(body, 200), err)
	}
	// One stream that reads: the size of the snapshot event, which also
	// builds it once, before the baseline.
	var eventBytes atomic.Int64
	s, err := g.subscribe(ctx, streamClient(), roomID, func(event string, data []byte, _ time.Time) {
		if event == "snapshot" {
			eventBytes.Store(int64(len(data)))
		}
	})
	if err != nil {
		return result{}, err
	}
	select {
	case <-s.opened:
	case <-s.ended:
		return result{}, fmt.Errorf("the reading stream ended: %v", s.err)
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	closeAll([]*stream{s})
	time.Sleep(time.Second)
	rss0, heap0, err := g.memory(ctx)
	if err != nil {
		return result{}, err
	}

	conns, failed := g.openStalled(ctx, roomID, o.conns)
	cut := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	defer cut()
	rssPeak, heapPeak := rss0, heap0
	var peakMiB atomic.Int64 // for the progress line, read on its goroutine
	sample := func() (float64, error) {
		rss, heap, err := g.memory(ctx)
		if err != nil {
			return 0, err
		}
		rssPeak, heapPeak = max(rssPeak, rss), max(heapPeak, heap)
		peakMiB.Store(int64(rssPeak / (1 << 20)))
		return rss, nil
	}
	start := time.Now()
	stop := g.every(ctx, start, func() string {
		return fmt.Sprintf("stalled=%d RSS peak %d MiB", len(conns), peakMiB.Load())
	})
	for time.Since(start) < o.hold {
		if _, err := sample(); err != nil {
			stop()
			return result{}, err
		}
		time.Sleep(200 * time.Millisecond)
	}
	stop()
	left, err := g.metric(ctx, "liveshare_sse_subscribers")
	if err != nil {
		return result{}, err
	}
	cut()
	cutAt := time.Now()
	back := "not within 60 s"
	var rssEnd float64
	for time.Since(cutAt) < time.Minute {
		if rssEnd, err = sample(); err != nil {
			return result{}, err
		}
		if rssEnd <= rss0+20<<20 {
			back = secs(time.Since(cutAt))
			break
		}
		time.Sleep(time.Second)
	}
	var r result
	r.add("stalled streams", "%d", o.conns)
	r.add("snapshot event", "%.1f MB", float64(eventBytes.Load())/1e6)
	r.add("RSS before", "%.0f MiB", rss0/(1<<20))
	r.add("RSS peak (growth)", "%.0f MiB (+%.0f)", rssPeak/(1<<20), (rssPeak-rss0)/(1<<20))
	r.add("heap peak growth", "+%.0f MiB", (heapPeak-heap0)/(1<<20))
	r.add("still open after hold", "%.0f", left)
	r.add("back within 20 MiB after cut", "%s", back)
	r.add("RSS at end", "%.0f MiB", rssEnd/(1<<20))
	r.add("failed", "%d", failed)
	return r, nil
}

// openStalled opens n event streams that never read: raw connections with
// a small receive buffer, so that the server's writes to them block as
// they would to a client that stopped reading. It returns those that were
// sent and how many could not be.
func (g *gen) openStalled(ctx context.Context, roomID string, n int) ([]net.Conn, int) {
	u, err := url.Parse(g.base)
	if err != nil {
		return nil, n
	}
	req := "GET /rooms/" + roomID + "/events?name=stalled HTTP/1.1\r\nHost: " + u.Host + "\r\n"
	if g.token != "" {
		req += "Authorization: Bearer " + g.token + "\r\n"
	}
	req += "\r\n"
	var d net.Dialer
	var conns []net.Conn
	failed := 0
	for range n {
		c, err := d.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			failed++
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		if _, err := c.Write([]byte(req)); err != nil {
			c.Close()
			failed++
			continue
		}
		conns = append(conns, c)
	}
	return conns, failed
}
