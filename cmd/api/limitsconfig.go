package main

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/liveshare/liveshare/handlers"
)

// LimitSettings are the limits of DESIGN.md 9.4 and the audit retention of
// 9.5, as configured.
type LimitSettings struct {
	// rates hold each LIVESHARE_RATE_* as given; nil when not set, to
	// take the mode's default once the mode is known.
	snapshotReads, snapshotCreates, ops, connects, rooms *handlers.Rate
	streamsPerSubject                                    *int
	// MaxStreams is the process's cap; maxStreamsSet says it was given.
	MaxStreams     int
	maxStreamsSet  bool
	TrustedProxies []string
	AuditRetention time.Duration
}

// The defaults of jwt mode (9.4); open mode has none unless set.
var (
	defaultSnapshotReads     = handlers.Rate{Limit: 60, Window: time.Minute}
	defaultSnapshotCreates   = handlers.Rate{Limit: 6, Window: time.Minute}
	defaultOps               = handlers.Rate{Limit: 1200, Window: time.Minute}
	defaultConnects          = handlers.Rate{Limit: 120, Window: time.Minute}
	defaultRooms             = handlers.Rate{Limit: 60, Window: time.Hour}
	defaultStreamsPerSubject = 64
)

const defaultMaxStreams = 20000

// limitSettings are the settings of 9.4 and 9.5, added to ParseConfig's.
func limitSettings(c *LimitSettings) []setting {
	rate := func(env, flag, def, what string, dst **handlers.Rate) setting {
		return setting{env, flag, "", fmt.Sprintf("%s per subject, as N/s, N/min, N/h or N/<Go duration>; 0 is off; empty: %s in jwt mode, off in open mode", what, def), func(s string) error {
			if s == "" {
				*dst = nil
				return nil
			}
			r, err := parseRate(s)
			*dst = &r
			return err
		}}
	}
	return []setting{
		rate("LIVESHARE_RATE_SNAPSHOT_READS", "rate-snapshot-reads", "60/min", "snapshot reads (latest, by id, list)", &c.snapshotReads),
		rate("LIVESHARE_RATE_SNAPSHOT_CREATES", "rate-snapshot-creates", "6/min", "manual snapshots, per room", &c.snapshotCreates),
		rate("LIVESHARE_RATE_OPS", "rate-ops", "1200/min", "op posts", &c.ops),
		rate("LIVESHARE_RATE_CONNECTS", "rate-connects", "120/min", "event stream connects", &c.connects),
		rate("LIVESHARE_RATE_ROOMS", "rate-rooms", "60/h", "rooms created", &c.rooms),
		{"LIVESHARE_MAX_STREAMS_PER_SUBJECT", "max-streams-per-subject", "", "open event streams of one subject; 0 is no cap; empty: 64 in jwt mode, no cap in open mode", func(s string) error {
			c.streamsPerSubject = nil
			if s == "" {
				return nil
			}
			v, err := intIn(s, 0, 1<<30)
			n := int(v)
			c.streamsPerSubject = &n
			return err
		}},
		{"LIVESHARE_MAX_STREAMS", "max-streams", "", "open event streams of the process (503 too_many_streams past it); 0 is no cap; empty: 20000, lowered to what the file descriptor limit allows", func(s string) error {
			c.MaxStreams, c.maxStreamsSet = defaultMaxStreams, s != ""
			if s == "" {
				return nil
			}
			v, err := intIn(s, 0, 1<<30)
			c.MaxStreams = int(v)
			return err
		}},
		{"LIVESHARE_TRUSTED_PROXIES", "trusted-proxies", "", "comma-separated addresses or CIDR prefixes of reverse proxies whose X-Forwarded-For names the client; empty: the header is ignored", func(s string) error {
			c.TrustedProxies = nil
			for _, p := range strings.Split(s, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				prefix, err := netip.ParsePrefix(p)
				if err != nil {
					addr, aerr := netip.ParseAddr(p)
					if aerr != nil {
						return fmt.Errorf("%q is not an address or CIDR prefix such as 10.0.0.0/8", p)
					}
					prefix = netip.PrefixFrom(addr.Unmap(), addr.Unmap().BitLen())
				}
				c.TrustedProxies = append(c.TrustedProxies, prefix.Masked().String())
			}
			return nil
		}},
		{"LIVESHARE_AUDIT_RETENTION", "audit-retention", "2160h", "how long audit rows are kept (Go duration); 0 keeps them forever", func(s string) error {
			if s == "0" {
				c.AuditRetention = 0
				return nil
			}
			return durationIn(&c.AuditRetention, time.Hour)(s)
		}},
	}
}

// parseRate reads "N/s", "N/min", "N/h" or "N/<Go duration>"; "0" is off.
func parseRate(s string) (handlers.Rate, error) {
	if s == "0" {
		return handlers.Rate{}, nil
	}
	n, per, ok := strings.Cut(s, "/")
	limit, err := strconv.Atoi(n)
	if !ok || err != nil || limit < 0 || limit > 1<<30 {
		return handlers.Rate{}, errors.New("must be N/s, N/min, N/h or N/<Go duration> such as 30/10s, or 0 for off")
	}
	var window time.Duration
	switch per {
	case "s":
		window = time.Second
	case "min", "m":
		window = time.Minute
	case "h":
		window = time.Hour
	default:
		if window, err = time.ParseDuration(per); err != nil || window < time.Second {
			return handlers.Rate{}, errors.New("the window must be s, min, h or a Go duration of at least 1s")
		}
	}
	if limit == 0 {
		return handlers.Rate{}, nil
	}
	return handlers.Rate{Limit: limit, Window: window}, nil
}

// fdReserve is how many file descriptors the stream cap leaves to
// everything else: the listener, the database's connections and files,
// /healthz, /readyz, writes and metrics while every stream is open.
const fdReserve = 512

// handlerLimits returns the limits of mode. The process's stream cap is
// checked against the file descriptors the process may open (Go raises the
// soft limit to the hard one at start): given explicitly beyond them it is
// an error naming the setting; the default is lowered to fit, and lowered
// says so.
func (c *LimitSettings) handlerLimits(mode string) (l handlers.Limits, lowered bool, err error) {
	pick := func(set *handlers.Rate, def handlers.Rate) handlers.Rate {
		switch {
		case set != nil:
			return *set
		case mode == handlers.ModeJWT:
			return def
		}
		return handlers.Rate{}
	}
	l = handlers.Limits{
		SnapshotReads: pick(c.snapshotReads, defaultSnapshotReads), SnapshotCreates: pick(c.snapshotCreates, defaultSnapshotCreates),
		Ops: pick(c.ops, defaultOps), Connects: pick(c.connects, defaultConnects), Rooms: pick(c.rooms, defaultRooms),
		MaxStreams: c.MaxStreams, TrustedProxies: c.TrustedProxies,
	}
	switch {
	case c.streamsPerSubject != nil:
		l.MaxStreamsPerSubject = *c.streamsPerSubject
	case mode == handlers.ModeJWT:
		l.MaxStreamsPerSubject = defaultStreamsPerSubject
	}
	nofile, ok := openFileLimit()
	if !ok || (l.MaxStreams == 0 && c.maxStreamsSet) {
		return l, false, nil // no limit known, or no cap asked for
	}
	room := nofile - fdReserve
	if l.MaxStreams == 0 || l.MaxStreams > room {
		if c.maxStreamsSet {
			return l, false, fmt.Errorf("invalid LIVESHARE_MAX_STREAMS (-max-streams) %q: the process may open %d file descriptors, which leaves room for %d streams beside the %d kept for everything else; raise the limit (ulimit -n, LimitNOFILE=) or lower the cap",
				strconv.Itoa(c.MaxStreams), nofile, max(0, room), fdReserve)
		}
		if room < 1 {
			return l, false, fmt.Errorf("the process may open only %d file descriptors; LiveShare needs more than %d (ulimit -n, LimitNOFILE=)", nofile, fdReserve)
		}
		l.MaxStreams, lowered = room, true
	}
	return l, lowered, nil
}
