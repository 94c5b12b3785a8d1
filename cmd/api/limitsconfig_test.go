package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/liveshare/liveshare/handlers"
)

// The limits of DESIGN.md 9.4: defaults in jwt mode, none in open mode
// unless set, 0 turns one off, and a set one counts in open mode too.
func TestLimitDefaultsByMode(t *testing.T) {
	const secret = "LIVESHARE_JWT_SECRET=0123456789abcdef0123456789abcdef"
	perMin := func(n int) handlers.Rate { return handlers.Rate{Limit: n, Window: time.Minute} }
	for _, c := range []struct {
		name string
		env  []string
		want handlers.Limits
	}{
		{"jwt defaults", []string{secret}, handlers.Limits{SnapshotReads: perMin(60), SnapshotCreates: perMin(6), Ops: perMin(1200),
			Connects: perMin(120), Rooms: handlers.Rate{Limit: 60, Window: time.Hour}, MaxStreamsPerSubject: 64, MaxStreams: 20000}},
		{"open mode: none", nil, handlers.Limits{MaxStreams: 20000}},
		{"jwt, 0 turns one off", []string{secret, "LIVESHARE_RATE_OPS=0", "LIVESHARE_MAX_STREAMS_PER_SUBJECT=0"},
			handlers.Limits{SnapshotReads: perMin(60), SnapshotCreates: perMin(6), Connects: perMin(120),
				Rooms: handlers.Rate{Limit: 60, Window: time.Hour}, MaxStreams: 20000}},
		{"open mode, set", []string{"LIVESHARE_RATE_OPS=30/10s", "LIVESHARE_MAX_STREAMS_PER_SUBJECT=8", "LIVESHARE_TRUSTED_PROXIES=10.0.0.0/8, 192.0.2.1"},
			handlers.Limits{Ops: handlers.Rate{Limit: 30, Window: 10 * time.Second}, MaxStreamsPerSubject: 8, MaxStreams: 20000,
				TrustedProxies: []string{"10.0.0.0/8", "192.0.2.1/32"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := map[string]string{}
			for _, kv := range c.env {
				k, v, _ := strings.Cut(kv, "=")
				env[k] = v
			}
			cfg, err := ParseConfig(nil, func(k string) string { return env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := cfg.Limits.handlerLimits(cfg.Auth.Mode)
			if err != nil {
				t.Fatal(err)
			}
			if n, ok := openFileLimit(); ok && n-fdReserve < 20000 {
				c.want.MaxStreams = n - fdReserve // lowered to what this machine allows
			}
			if got.String() != c.want.String() {
				t.Errorf("limits\n got %s\nwant %s", got.String(), c.want.String())
			}
		})
	}
}
