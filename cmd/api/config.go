package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/liveshare/liveshare/store"
)

// Config is the whole configuration of the service, from flags and env
// (DESIGN.md section 7): a flag beats its env var, which beats the default.
type Config struct {
	Addr             string
	DatabaseURL      string
	DataDir          string
	SnapshotInterval time.Duration
	SnapshotKeep     int
	SnapshotMaxBytes int64
	SnapshotEveryOps int64
	MaxBodyBytes     int64
	LogLevel         slog.Level
	LogFormat        string
	RoomIdleTimeout  time.Duration
	ShutdownTimeout  time.Duration
	SSEHeartbeat     time.Duration
	SSEWriteTimeout  time.Duration
	SSEQueue         int
	PprofAddr        string // empty: no pprof listener
	PollInterval     time.Duration
	// EncryptionKeys seal what is stored (DESIGN.md 9.6); nil seals nothing.
	EncryptionKeys *store.Keyring
	Auth           AuthSettings
	Limits         LimitSettings
	HistoryHourly  time.Duration // one checkpoint per hour kept this long; 0: none
	HistoryDaily   time.Duration // one checkpoint per day kept this long; 0: none
}

// setting is one configuration value: its env var, flag and default.
type setting struct {
	env, flag, def, usage string
	parse                 func(string) error
}

// ParseConfig reads the configuration from args (without the program name)
// and getenv. The error names the setting that is wrong, in one line.
func ParseConfig(args []string, getenv func(string) string, usageOut io.Writer) (Config, error) {
	var c Config
	settings := []setting{
		{"LIVESHARE_ADDR", "addr", "127.0.0.1:8080", "listen address", func(s string) error {
			if !strings.Contains(s, ":") {
				return errors.New("must be host:port")
			}
			c.Addr = s
			return nil
		}},
		{"DATABASE_URL", "database-url", "", "postgres://… uses PostgreSQL; empty uses the embedded SQLite file", func(s string) error {
			if s != "" && !strings.HasPrefix(s, "postgres://") && !strings.HasPrefix(s, "postgresql://") {
				return errors.New("must be a postgres:// or postgresql:// URL, or empty for the embedded database")
			}
			c.DatabaseURL = s
			return nil
		}},
		{"LIVESHARE_DATA_DIR", "data-dir", "./data", "where the embedded database lives", func(s string) error {
			if s == "" {
				return errors.New("must not be empty")
			}
			c.DataDir = s
			return nil
		}},
		{"LIVESHARE_SNAPSHOT_INTERVAL", "snapshot-interval", "25s", "how often changed rooms are snapshotted (Go duration)", durationIn(&c.SnapshotInterval, 100*time.Millisecond)},
		{"LIVESHARE_SNAPSHOT_KEEP", "snapshot-keep", "10", "snapshots kept per room", func(s string) error {
			v, err := intIn(s, 1, 1000)
			c.SnapshotKeep = int(v)
			return err
		}},
		{"LIVESHARE_SNAPSHOT_MAX_BYTES", "snapshot-max-bytes", "10485760", "largest snapshot stored, in bytes", func(s string) error {
			// Below 64 KiB the header and framing margins leave rooms no room.
			v, err := intIn(s, 64<<10, 1<<40)
			c.SnapshotMaxBytes = v
			return err
		}},
		{"LIVESHARE_SNAPSHOT_EVERY_OPS", "snapshot-every-ops", "10000", "ops after which a room is snapshotted at once", func(s string) error {
			v, err := intIn(s, 1, 1<<40)
			c.SnapshotEveryOps = v
			return err
		}},
		{"LIVESHARE_MAX_BODY_BYTES", "max-body-bytes", "1048576", "largest request body, in bytes", func(s string) error {
			v, err := intIn(s, 1024, 1<<34)
			c.MaxBodyBytes = v
			return err
		}},
		{"LIVESHARE_LOG_LEVEL", "log-level", "info", "debug, info, warn or error", func(s string) error {
			return c.LogLevel.UnmarshalText([]byte(s))
		}},
		{"LIVESHARE_LOG_FORMAT", "log-format", "text", "text or json", func(s string) error {
			if s != "text" && s != "json" {
				return errors.New("must be text or json")
			}
			c.LogFormat = s
			return nil
		}},
		{"LIVESHARE_ROOM_IDLE_TIMEOUT", "room-idle-timeout", "10m", "how long an unused room stays in memory (Go duration)", durationIn(&c.RoomIdleTimeout, time.Second)},
		{"LIVESHARE_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "how long a graceful shutdown may take (Go duration)", durationIn(&c.ShutdownTimeout, 100*time.Millisecond)},
		{"LIVESHARE_SSE_HEARTBEAT", "sse-heartbeat", "15s", "how often an idle event stream gets a ping comment (Go duration)", durationIn(&c.SSEHeartbeat, 10*time.Millisecond)},
		{"LIVESHARE_SSE_WRITE_TIMEOUT", "sse-write-timeout", "10s", "a subscriber that does not take a write within this (plus at most a tenth of it) is disconnected (Go duration)", durationIn(&c.SSEWriteTimeout, 10*time.Millisecond)},
		{"LIVESHARE_SSE_QUEUE", "sse-queue", "256", "events queued per subscriber before it is cut off as too slow", func(s string) error {
			v, err := intIn(s, 1, 1<<20)
			c.SSEQueue = int(v)
			return err
		}},
		{"LIVESHARE_POLL_INTERVAL", "poll-interval", "2s", "on PostgreSQL, how often the rooms held for subscribers are compared with the database, beside notifications (Go duration)", durationIn(&c.PollInterval, 10*time.Millisecond)},
		encryptionKeysSetting(&c.EncryptionKeys),
		{"LIVESHARE_HISTORY_HOURLY", "history-hourly", "24h", "keep one checkpoint per hour for this long, and the ops after it (Go duration; 0: none)", durationIn(&c.HistoryHourly, 0)},
		{"LIVESHARE_HISTORY_DAILY", "history-daily", "720h", "keep one checkpoint per day for this long, and the ops after it (Go duration; 0: none)", durationIn(&c.HistoryDaily, 0)},
		{"LIVESHARE_PPROF_ADDR", "pprof-addr", "", "serve net/http/pprof on this separate host:port; empty is off", func(s string) error {
			if s != "" && !strings.Contains(s, ":") {
				return errors.New("must be host:port, or empty for none")
			}
			c.PprofAddr = s
			return nil
		}},
	}
	settings = append(settings, authSettings(&c.Auth)...)
	settings = append(settings, limitSettings(&c.Limits)...)

	fs := flag.NewFlagSet("liveshare", flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: liveshare [flags]
       liveshare token [flags]   print a token signed with LIVESHARE_JWT_SECRET (token -h)

Every flag has an env var; a flag beats its env var, which beats the default.

`)
		fs.PrintDefaults()
	}
	values := defineSettings(fs, settings, getenv)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for i, s := range settings {
		if err := s.parse(*values[i]); err != nil {
			return Config{}, fmt.Errorf("invalid %s (-%s) %q: %v", s.env, s.flag, redact(s.env, *values[i]), err)
		}
	}
	if err := c.Auth.resolveMode(c.Addr); err != nil {
		return Config{}, err
	}
	return c, nil
}

// encryptionKeysSetting is LIVESHARE_ENCRYPTION_KEYS, shared by the server
// and rekey.
func encryptionKeysSetting(dst **store.Keyring) setting {
	return setting{"LIVESHARE_ENCRYPTION_KEYS", "encryption-keys", "",
		"kid:base64key,… (32-byte keys, the first current): seal snapshots and op payloads at rest; prefer the env var, flags show in ps",
		func(s string) error {
			k, err := store.ParseKeyring(s)
			*dst = k
			return err
		}}
}

func durationIn(dst *time.Duration, min time.Duration) func(string) error {
	return func(s string) error {
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("must be a Go duration such as 25s or 1m")
		}
		if d < min {
			return fmt.Errorf("must be at least %s", min)
		}
		*dst = d
		return nil
	}
}

func intIn(s string, lo, hi int64) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("must be an integer from %d to %d", lo, hi)
	}
	return v, nil
}

// defineSettings adds a flag per setting, its default taken from its env
// var, and returns where each value lands after Parse.
func defineSettings(fs *flag.FlagSet, settings []setting, getenv func(string) string) []*string {
	values := make([]*string, len(settings))
	for i, s := range settings {
		def := s.def
		usage := fmt.Sprintf("%s (env %s, default %q)", s.usage, s.env, s.def)
		if v := getenv(s.env); v != "" {
			def = v
			if secretSetting(s.env) {
				usage += fmt.Sprintf("; now set by %s (not shown: it may hold a secret)", s.env)
			} else {
				usage += fmt.Sprintf("; now %q from %s", v, s.env)
			}
		}
		values[i] = fs.String(s.flag, def, usage)
		// The usage names the default and the env's value itself; flag
		// would print the effective value once more as "(default …)",
		// secrets included.
		fs.Lookup(s.flag).DefValue = ""
	}
	return values
}
