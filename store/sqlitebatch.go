package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jmoiron/sqlx"
)

// SQLite has one write lock for the whole database, and each transaction's
// commit waits for its own flush to the disk (synchronous=FULL): rooms that
// commit at the same time used to queue for the lock and pay a flush each,
// so a hundred rooms at one write each were bound by the disk's flushes
// per second. sqliteBatch lets the group commits of different rooms that
// arrive while one is in flight share the next transaction, one savepoint
// each: a group that fails (a moved version, a used key) rolls back to its
// savepoint alone, and the others commit with one flush. Each caller learns
// its own outcome only after the commit, so an acknowledged group is
// durable exactly as before.
type sqliteBatch struct {
	mu      sync.Mutex
	queue   []*sqliteJob
	running bool
	// wg counts the goroutine that drains the queue, for Close.
	wg sync.WaitGroup
}

// sqliteJob is one group commit waiting for its turn.
type sqliteJob struct {
	ctx   context.Context
	run   func(ctx context.Context, tx *sqlx.Tx) error
	state atomic.Int32 // jobQueued, jobTaken or jobAbandoned
	err   error
	done  chan struct{}
}

const (
	jobQueued int32 = iota
	jobTaken
	jobAbandoned
)

// commitSQLite runs run in a write transaction, shared with other callers'
// runs, and returns run's error or the commit's. When no batch is in
// flight the caller commits at once, in its own goroutine; otherwise its
// job waits for the next batch, which a goroutine the store owns commits.
func (s *Store) commitSQLite(ctx context.Context, run func(ctx context.Context, tx *sqlx.Tx) error) error {
	b := &s.batch
	j := &sqliteJob{ctx: ctx, run: run, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, j)
	lead := !b.running
	b.running = true
	b.mu.Unlock()
	if lead {
		s.commitBatch(ctx, b.take())
		// Jobs that queued meanwhile go to a goroutine, so that this
		// caller answers without waiting for the others' commit.
		b.mu.Lock()
		if len(b.queue) > 0 {
			b.wg.Add(1)
			go s.drainBatches()
		} else {
			b.running = false
		}
		b.mu.Unlock()
	}
	select {
	case <-j.done:
		return j.err
	case <-ctx.Done():
		if j.state.CompareAndSwap(jobQueued, jobAbandoned) {
			return fmt.Errorf("wait for the write lock: %w", ctx.Err())
		}
		<-j.done // taken into a batch: its outcome comes with the commit
		return j.err
	}
}

// drainBatches commits batches until the queue is empty.
func (s *Store) drainBatches() {
	b := &s.batch
	defer b.wg.Done()
	for {
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.running = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		// The transaction's own context: each job's statements run under
		// the job's context, and its caller waits for this commit.
		s.commitBatch(context.Background(), b.take())
	}
}

// take removes the queued jobs whose callers still wait.
func (b *sqliteBatch) take() []*sqliteJob {
	b.mu.Lock()
	queue := b.queue
	b.queue = nil
	b.mu.Unlock()
	jobs := queue[:0]
	for _, j := range queue {
		if j.state.CompareAndSwap(jobQueued, jobTaken) {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// commitBatch commits jobs in one transaction and releases their callers.
func (s *Store) commitBatch(ctx context.Context, jobs []*sqliteJob) {
	if len(jobs) == 0 {
		return
	}
	if len(jobs) == 1 {
		// Alone, the transaction is the job's savepoint.
		j := jobs[0]
		j.err = s.transact(j.ctx, func(tx *sqlx.Tx) error { return j.run(j.ctx, tx) })
		close(j.done)
		return
	}
	err := s.transact(ctx, func(tx *sqlx.Tx) error {
		for _, j := range jobs {
			if err := j.ctx.Err(); err != nil {
				j.err = fmt.Errorf("wait for the write lock: %w", err)
				continue
			}
			if _, err := tx.ExecContext(ctx, `SAVEPOINT group_commit`); err != nil {
				return fmt.Errorf("savepoint: %w", err)
			}
			if j.err = j.run(j.ctx, tx); j.err != nil {
				if _, err := tx.ExecContext(ctx, `ROLLBACK TO group_commit`); err != nil {
					return fmt.Errorf("roll back to savepoint: %w", err)
				}
			}
			if _, err := tx.ExecContext(ctx, `RELEASE group_commit`); err != nil {
				return fmt.Errorf("release savepoint: %w", err)
			}
		}
		return nil
	})
	for _, j := range jobs {
		if err != nil && j.err == nil {
			j.err = err // nothing of the batch is committed
		}
		close(j.done)
	}
}
