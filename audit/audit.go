// Package audit writes LiveShare's audit log (DESIGN.md 9.5) in batches and
// keeps it within its retention.
//
// The rows of a change (restore, clear, delete, rename, member changes) are
// written by the store in the change's own transaction and never pass
// through here. The others — snapshot reads and lists, snapshots taken,
// rooms created, sessions, and every denied or limited attempt — are
// queued by Record and written together, within FlushInterval (1 s), so
// that a burst of reads costs one transaction instead of one each.
//
// Concurrency: Record and Flush are safe from any goroutine. Run is the
// one background goroutine; its caller owns it, and when Run's context
// ends it writes what is still queued and returns.
package audit

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/liveshare/liveshare/store"
)

// Store is what the log needs of persistence; *store.Store satisfies it.
type Store interface {
	InsertAudit(ctx context.Context, entries []store.AuditEntry) error
	PruneAudit(ctx context.Context, before time.Time) (int64, error)
}

// Config tunes a Log.
type Config struct {
	// FlushInterval is the longest a queued row waits; zero is 1 s.
	FlushInterval time.Duration
	// BatchRows queued start a write at once; zero is 500.
	BatchRows int
	// MaxQueued bounds the rows kept while the database cannot take them;
	// past it new rows are dropped, counted and logged. Zero is 100000
	// (some 20 MB).
	MaxQueued int
	// Retention is how long rows are kept; zero keeps them forever.
	Retention time.Duration
	// PruneInterval is how often rows past Retention are deleted; zero
	// is 1 h.
	PruneInterval time.Duration
	// Now is the clock of the retention; nil is time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Log queues audit rows and writes them in batches. Make one with New.
type Log struct {
	st  Store
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	queued  []store.AuditEntry
	dropped int64
	wake    chan struct{} // a batch is full: write now

	writeMu sync.Mutex // one batch write at a time, in queue order
}

// New returns a Log over st.
func New(st Store, cfg Config) *Log {
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = 500
	}
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = 100000
	}
	if cfg.PruneInterval <= 0 {
		cfg.PruneInterval = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Log{st: st, cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
}

// Record queues e; it never waits for the database. A row without a time
// gets the time it was queued.
func (l *Log) Record(e store.AuditEntry) {
	if e.At.IsZero() {
		e.At = l.cfg.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.queued) >= l.cfg.MaxQueued {
		l.dropped++
		return
	}
	l.queued = append(l.queued, e)
	if len(l.queued) >= l.cfg.BatchRows {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// Queued returns how many rows wait to be written.
func (l *Log) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queued)
}

// Flush writes every row queued before it was called, and returns when
// they are written or could not be (the rows then stay queued for the
// next attempt).
func (l *Log) Flush(ctx context.Context) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	batch, dropped := l.queued, l.dropped
	l.queued, l.dropped = nil, 0
	l.mu.Unlock()
	if dropped > 0 {
		l.log.ErrorContext(ctx, "audit rows dropped: the database did not take them in time", "rows", dropped)
	}
	if len(batch) == 0 {
		return nil
	}
	if err := l.st.InsertAudit(ctx, batch); err != nil {
		// Put them back in front, in order, within the bound.
		l.mu.Lock()
		keep := min(len(batch), l.cfg.MaxQueued)
		l.dropped += int64(len(batch) - keep)
		rest := l.queued
		l.queued = append(batch[:keep:keep], rest...)
		if over := len(l.queued) - l.cfg.MaxQueued; over > 0 {
			l.queued = l.queued[:l.cfg.MaxQueued]
			l.dropped += int64(over)
		}
		l.mu.Unlock()
		return fmt.Errorf("write %d audit rows: %w", len(batch), err)
	}
	return nil
}

// Prune deletes the rows older than the retention, and returns how many.
func (l *Log) Prune(ctx context.Context) (int64, error) {
	if l.cfg.Retention <= 0 {
		return 0, nil
	}
	return l.st.PruneAudit(ctx, l.cfg.Now().Add(-l.cfg.Retention))
}

// Run writes the queued rows every FlushInterval (at once when a batch is
// full) and prunes every PruneInterval, until ctx ends; then it writes what
// is still queued, within stopTimeout, and returns.
func (l *Log) Run(ctx context.Context) {
	flush := time.NewTicker(l.cfg.FlushInterval)
	defer flush.Stop()
	prune := time.NewTicker(l.cfg.PruneInterval)
	defer prune.Stop()
	l.prune(ctx)
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			if err := l.Flush(final); err != nil {
				l.log.Error("audit rows not written at stop", "rows", l.Queued(), "err", err)
			}
			return
		case <-flush.C:
		case <-l.wake:
		case <-prune.C:
			l.prune(ctx)
			continue
		}
		if err := l.Flush(ctx); err != nil && ctx.Err() == nil {
			l.log.Warn("audit rows not written yet", "rows", l.Queued(), "err", err)
		}
	}
}

// stopTimeout bounds the last write at stop.
const stopTimeout = 10 * time.Second

func (l *Log) prune(ctx context.Context) {
	n, err := l.Prune(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("prune audit rows", "err", err)
		}
		return
	}
	if n > 0 {
		l.log.Info("pruned audit rows", "rows", n, "retention", l.cfg.Retention)
	}
}
