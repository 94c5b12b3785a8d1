package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jmoiron/sqlx"
)

// Rooms that commit at the same time share a transaction and its flush to
// the disk. SQLite has one write lock for the whole database, and each
// transaction's commit waits for its own flush (synchronous=FULL): rooms
// that commit at the same time used to queue for the lock and pay a flush
// each. On PostgreSQL each room's group commit was a transaction of its own
// too, and a hundred rooms at one write each waited mostly for the WAL's
// flushes (pg_stat_activity: WALWrite, WALSync), measured in
// docs/BENCHMARKS.md. sharedCommits lets the group commits of different
// rooms that arrive while one is in flight share the next transaction:
// a group refused for its version or its room changes nothing of its own
// and does not fail its neighbours, and each caller learns its own outcome
// only after the commit, so an acknowledged group is durable exactly as
// before. On PostgreSQL a batch is one statement (appendBatchQuery), so
// that it costs the database and the driver one round trip, not one per
// room plus BEGIN and COMMIT.
type sharedCommits struct {
	mu    sync.Mutex
	queue []*sharedJob
	// committing counts the batches in flight, at most
	// sharedBatchesInFlight of the dialect.
	committing int
	// wg counts the goroutine that drains the queue, for Close.
	wg sync.WaitGroup
	// shared counts the batches of several groups, aborted those that
	// PostgreSQL refused as a whole (each group then committed alone).
	shared, aborted atomic.Int64
}

// sharedJob is one group commit waiting for its turn.
type sharedJob struct {
	ctx    context.Context
	roomID string
	// run commits the group in tx (SQLite); group is the group as
	// PostgreSQL's statements take it. A job has one of the two.
	run   func(ctx context.Context, tx *sqlx.Tx) error
	group *pgGroup
	state atomic.Int32 // jobQueued, jobTaken or jobAbandoned
	err   error
	done  chan struct{}
}

const (
	jobQueued int32 = iota
	jobTaken
	jobAbandoned
)

// commitShared commits the group of roomID (run on SQLite, group on
// PostgreSQL) in a write transaction shared with other rooms' groups, and
// returns the group's own outcome or the commit's error. When fewer batches than the dialect allows are in flight
// the caller commits at once, in its own goroutine; otherwise its job waits
// for the next batch, which a goroutine the store owns commits.
func (s *Store) commitShared(ctx context.Context, roomID string, group *pgGroup, run func(ctx context.Context, tx *sqlx.Tx) error) error {
	b := &s.batch
	j := &sharedJob{ctx: ctx, roomID: roomID, group: group, run: run, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, j)
	lead := b.committing < s.sharedBatchesInFlight()
	if lead {
		b.committing++
	}
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
			b.committing--
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
			b.committing--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		// The transaction's own context: each job's statements run under
		// the job's context, and its caller waits for this commit.
		s.commitBatch(context.Background(), b.take())
	}
}

// sharedBatchesInFlight is how many shared transactions may commit at
// once. SQLite writes one at a time. On PostgreSQL, while one batch waits
// for its flush another can commit: a room has one group in flight at a
// time, so two batches never hold the same room.
func (s *Store) sharedBatchesInFlight() int {
	if s.dialect == dialectPostgres {
		return pgBatchesInFlight
	}
	return 1
}

const pgBatchesInFlight = 2

// take removes the queued jobs whose callers still wait.
func (b *sharedCommits) take() []*sharedJob {
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

// errSharedAborted says that PostgreSQL refused a batch statement as a
// whole, which changed nothing: each group is committed again alone, and
// gets its own outcome.
var errSharedAborted = errors.New("shared commit aborted")

// commitBatch commits jobs in one transaction and releases their callers.
func (s *Store) commitBatch(ctx context.Context, jobs []*sharedJob) {
	if len(jobs) == 0 {
		return
	}
	if len(jobs) == 1 {
		j := jobs[0]
		j.err = s.commitAlone(j)
		close(j.done)
		return
	}
	// On PostgreSQL the batch statement locks its rooms in the order of
	// their ids (appendBatchQuery): instances sharing the database never
	// wait for each other in a cycle.
	s.batch.shared.Add(1)
	var err error
	if s.dialect == dialectPostgres {
		err = s.commitPostgresBatch(ctx, jobs)
		if errors.Is(err, errSharedAborted) {
			s.batch.aborted.Add(1)
			for _, j := range jobs {
				if err := j.ctx.Err(); err != nil {
					j.err = fmt.Errorf("wait for the write lock: %w", err)
				} else {
					j.err = s.commitAlone(j)
				}
			}
			err = nil
		}
	} else {
		err = s.transact(ctx, func(tx *sqlx.Tx) error { return runSavepoints(ctx, tx, jobs) })
	}
	for _, j := range jobs {
		if err != nil && j.err == nil {
			j.err = err // nothing of the batch is committed
		}
		close(j.done)
	}
}

// commitAlone commits one job in a transaction of its own: on PostgreSQL
// its one statement is that transaction.
func (s *Store) commitAlone(j *sharedJob) error {
	if g := j.group; g != nil {
		return s.appendPostgres(j.ctx, g.id, g.a, g.rows, g.res)
	}
	return s.transact(j.ctx, func(tx *sqlx.Tx) error { return j.run(j.ctx, tx) })
}

// runSavepoints runs SQLite jobs in tx, each under a savepoint that a
// refused group rolls back to.
func runSavepoints(ctx context.Context, tx *sqlx.Tx, jobs []*sharedJob) error {
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
}
