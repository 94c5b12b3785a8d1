package main_test

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/store/storetest"
)

// BenchmarkIdleSubscriberMemory measures the resident memory the built
// binary spends per idle SSE subscriber: RSS with 2,000 idle streams open in
// one room, minus RSS before, over 2,000. Only the server process is measured.
func BenchmarkIdleSubscriberMemory(b *testing.B) {
	const subs = 2000
	for b.Loop() {
		srv := startServer(b, storetest.Config(b, "sqlite"))
		rm := srv.createRoom("idle")
		time.Sleep(200 * time.Millisecond)
		before := rss(b, srv.cmd.Process.Pid)
		transport := &http.Transport{}
		client := &http.Client{Transport: transport}
		var closers []func()
		for range subs {
			resp, err := client.Get(srv.URL + "/rooms/" + rm.ID + "/events")
			if err != nil {
				b.Fatal(err)
			}
			closers = append(closers, func() { resp.Body.Close() })
			go func() { // read like an idle browser tab does
				r := bufio.NewReader(resp.Body)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
				}
			}()
		}
		for deadline := time.Now().Add(60 * time.Second); ; {
			var room struct {
				Subscribers int `json:"subscribers"`
			}
			srv.must("GET", "/rooms/"+rm.ID, nil).decode(b, &room)
			if room.Subscribers == subs {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d subscribers after 60s", room.Subscribers, subs)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(5 * time.Second) // the presence storm settles
		after := rss(b, srv.cmd.Process.Pid)
		b.ReportMetric(float64(after-before)/subs, "B/subscriber")
		b.ReportMetric(float64(after)/(1<<20), "MiB-rss")
		for _, c := range closers {
			c()
		}
		transport.CloseIdleConnections()
		srv.kill()
	}
}

// rss reads a process's resident set size in bytes.
func rss(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb * 1024
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
