// Command loadgen drives a running LiveShare over real HTTP and SSE and
// prints what it measured as a markdown table. It only ever sends traffic
// to the local machine (127.0.0.1, ::1 or localhost), and every run is
// bounded in time (-timeout) and in what it opens.
//
//	go run ./cmd/loadgen -scenario ingest -writers 16 -batch 100 -rooms 100
//	go run ./cmd/loadgen -scenario fanout -subscribers 1000
//	go run ./cmd/loadgen -scenario connections -conns 10000
//	go run ./cmd/loadgen -scenario stalled -conns 300 -hold 15s
//	go run ./cmd/loadgen -scenario snapshot -elements 100000
//	go run ./cmd/loadgen -scenario recovery -elements 100000 -ops 10000
//	go run ./cmd/loadgen -scenario cluster -instances 3 -rate 33 -database-url postgres://…
//
// The recovery and cluster scenarios start (and stop) server binaries
// themselves; the others need one running at -url. docs/BENCHMARKS.md says how to run each.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// options are the command line.
type options struct {
	scenario string
	url      string
	label    string
	header   bool
	duration time.Duration
	timeout  time.Duration
	progress time.Duration

	writers     int
	batch       int
	rooms       int
	rate        float64
	subscribers int
	conns       int
	hold        time.Duration
	elements    int
	ops         int
	instances   int

	serverBin   string
	databaseURL string
}

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.scenario, "scenario", "ingest", "ingest, fanout, connections, stalled, snapshot, recovery or cluster")
	fs.StringVar(&o.url, "url", "http://127.0.0.1:8080", "the running server (local addresses only; recovery starts its own)")
	fs.StringVar(&o.label, "label", "", "the first column of the table, e.g. the database")
	fs.BoolVar(&o.header, "header", true, "print the table's header (off to append rows to an earlier table)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long writers run (ingest, fanout; each phase of snapshot)")
	fs.DurationVar(&o.timeout, "timeout", 0, "hard bound on the whole run (default: 2 × duration + 2m)")
	fs.DurationVar(&o.progress, "progress", 5*time.Second, "how often a progress line goes to stderr")
	fs.IntVar(&o.writers, "writers", 0, "concurrent writers (default: ingest 1, fanout 1, snapshot 4)")
	fs.IntVar(&o.batch, "batch", 1, "ops per request")
	fs.IntVar(&o.rooms, "rooms", 1, "rooms written to (ingest)")
	fs.Float64Var(&o.rate, "rate", 20, "requests per second per writer (fanout; 0 is as fast as possible)")
	fs.IntVar(&o.subscribers, "subscribers", 100, "subscribers in the room (fanout)")
	fs.IntVar(&o.conns, "conns", 1000, "idle event streams to hold open (connections), or streams that never read (stalled)")
	fs.DurationVar(&o.hold, "hold", 2*time.Second, "how long the connections are held before measuring (stalled: while memory is sampled)")
	fs.IntVar(&o.elements, "elements", 0, "elements in the room (default: snapshot 20000, recovery 20000, stalled 10000 of about 0.9 KB)")
	fs.IntVar(&o.ops, "ops", 2000, "ops after the last snapshot (recovery)")
	fs.IntVar(&o.instances, "instances", 2, "LiveShare processes sharing -database-url (cluster)")
	fs.StringVar(&o.serverBin, "server-bin", "", "LiveShare binary the recovery and cluster scenarios run (default: go build ./cmd/api)")
	fs.StringVar(&o.databaseURL, "database-url", "", "DATABASE_URL for the servers recovery and cluster run (recovery's default: SQLite in a temp dir)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := localOnly(o.url); err != nil {
		return o, err
	}
	if o.duration <= 0 || o.batch < 1 || o.batch > 1000 || o.rooms < 1 || o.subscribers < 0 || o.conns < 0 || o.ops < 0 || o.rate < 0 {
		return o, errors.New("-duration must be positive, -batch 1..1000, -rooms ≥ 1, counts ≥ 0")
	}
	if o.scenario == "cluster" && (o.instances < 1 || o.instances > 16 || o.rate <= 0) {
		return o, errors.New("cluster: -instances must be 1..16 and -rate positive")
	}
	if o.timeout <= 0 {
		o.timeout = 2*o.duration + 2*time.Minute
	}
	if o.writers <= 0 {
		o.writers = 1
		switch o.scenario {
		case "snapshot":
			o.writers = 4
		case "cluster":
			o.writers = o.instances
		}
	}
	if o.elements <= 0 {
		o.elements = 20000
		if o.scenario == "stalled" {
			o.elements = 10000
		}
	}
	return o, nil
}

// localOnly refuses any server that is not this machine.
func localOnly(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("-url %q is not an http URL", raw)
	}
	switch h := u.Hostname(); h {
	case "127.0.0.1", "::1", "localhost":
		return nil
	default:
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("-url %q: loadgen only sends traffic to 127.0.0.1", raw)
	}
}

// run is the program: it runs one scenario and prints its table to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	g := &gen{o: o, base: strings.TrimRight(o.url, "/"), log: stderr, client: newClient(o.writers + 8), token: os.Getenv("LIVESHARE_TOKEN")}
	var res result
	switch o.scenario {
	case "ingest":
		res, err = g.ingest(ctx)
	case "fanout":
		res, err = g.fanout(ctx)
	case "connections":
		res, err = g.connections(ctx)
	case "stalled":
		res, err = g.stalled(ctx)
	case "snapshot":
		res, err = g.snapshot(ctx)
	case "recovery":
		res, err = g.recovery(ctx)
	case "cluster":
		res, err = g.cluster(ctx)
	default:
		return fmt.Errorf("unknown -scenario %q", o.scenario)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", o.scenario, err)
	}
	res.print(stdout, o.label, o.header)
	return nil
}

// result is one row of the markdown table.
type result struct {
	cols []string
	vals []string
}

func (r *result) add(col string, format string, args ...any) {
	r.cols = append(r.cols, col)
	r.vals = append(r.vals, fmt.Sprintf(format, args...))
}

func (r result) print(w io.Writer, label string, header bool) {
	cols, vals := r.cols, r.vals
	if label != "" {
		cols = append([]string{"db"}, cols...)
		vals = append([]string{label}, vals...)
	}
	if header {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cols, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(cols)))
	}
	fmt.Fprintf(w, "| %s |\n", strings.Join(vals, " | "))
}

// gen holds what every scenario uses.
type gen struct {
	o      options
	base   string
	log    io.Writer
	client *http.Client
	// token, from LIVESHARE_TOKEN (an env var, not a flag, so it stays out
	// of ps), authenticates every request to a server in jwt mode.
	token string
}

func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:               nil, // never through a proxy: the traffic stays local
		MaxIdleConns:        conns * 2,
		MaxIdleConnsPerHost: conns * 2,
		IdleConnTimeout:     30 * time.Second,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}}
}

// latencies are measured durations; percentiles sort a copy.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

func (l latencies) max() time.Duration {
	if len(l) == 0 {
		return 0
	}
	return slices.Max(l)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

// every calls line every interval until ctx is done, and prints what it
// returns to the log: the progress line of long runs.
func (g *gen) every(ctx context.Context, start time.Time, line func() string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if g.o.progress <= 0 {
			return
		}
		t := time.NewTicker(g.o.progress)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				fmt.Fprintf(g.log, "[%s %5.0fs] %s\n", g.o.scenario, time.Since(start).Seconds(), line())
			}
		}
	}()
	return func() { cancel(); <-done }
}
