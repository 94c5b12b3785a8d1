package audit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/liveshare/liveshare/audit"
	"github.com/liveshare/liveshare/store"
)

// fakeStore keeps what it is given; fail makes writes fail.
type fakeStore struct {
	mu      sync.Mutex
	writes  [][]store.AuditEntry
	fail    error
	pruneAt []time.Time
}

func (f *fakeStore) InsertAudit(_ context.Context, e []store.AuditEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.writes = append(f.writes, append([]store.AuditEntry(nil), e...))
	return nil
}

func (f *fakeStore) PruneAudit(_ context.Context, before time.Time) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruneAt = append(f.pruneAt, before)
	return 0, nil
}

func (f *fakeStore) rows() []store.AuditEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []store.AuditEntry
	for _, w := range f.writes {
		all = append(all, w...)
	}
	return all
}

func read(id string) store.AuditEntry {
	return store.AuditEntry{Action: store.AuditSnapshotRead, Outcome: store.OutcomeOK, RequestID: id}
}

// Reads queued together are written together, within the flush interval,
// and nothing is written before it.
func TestBatchedWithinInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStore{}
		l := audit.New(st, audit.Config{FlushInterval: time.Second})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx) }()
		for _, id := range []string{"a", "b", "c"} {
			l.Record(read(id))
		}
		time.Sleep(999 * time.Millisecond)
		synctest.Wait()
		if n := len(st.rows()); n != 0 {
			t.Fatalf("%d rows written before the interval", n)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got, n := st.rows(), len(st.writes); len(got) != 3 || n != 1 || got[0].RequestID != "a" || got[2].RequestID != "c" {
			t.Fatalf("after the interval: %d writes of %+v, want one of a, b, c", n, got)
		}
		cancel()
		<-done
	})
}

// A full batch is written at once; what is queued at stop is written
// before Run returns.
func TestFullBatchAndStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &fakeStore{}
		l := audit.New(st, audit.Config{FlushInterval: time.Hour, BatchRows: 2})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); l.Run(ctx) }()
		l.Record(read("a"))
		l.Record(read("b"))
		synctest.Wait()
		if n := len(st.rows()); n != 2 {
			t.Fatalf("a full batch: %d rows written, want 2", n)
		}
		l.Record(read("c"))
		synctest.Wait()
		if n := len(st.rows()); n != 2 {
			t.Fatalf("%d rows written before the stop, want 2", n)
		}
		cancel()
		<-done
		if got := st.rows(); len(got) != 3 || got[2].RequestID != "c" {
			t.Fatalf("after the stop: %+v, want c written too", got)
		}
	})
}

// A write that fails keeps its rows, in order, for the next one; past the
// bound rows are dropped rather than kept without end.
func TestFailedWriteKeepsRows(t *testing.T) {
	st := &fakeStore{fail: errors.New("database down")}
	l := audit.New(st, audit.Config{MaxQueued: 3})
	l.Record(read("a"))
	l.Record(read("b"))
	if err := l.Flush(t.Context()); err == nil {
		t.Fatal("Flush succeeded with the database down")
	}
	l.Record(read("c"))
	l.Record(read("d")) // past the bound
	if n := l.Queued(); n != 3 {
		t.Fatalf("%d rows queued, want 3", n)
	}
	st.fail = nil
	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := st.rows()
	if len(got) != 3 || got[0].RequestID != "a" || got[1].RequestID != "b" || got[2].RequestID != "c" {
		t.Fatalf("written %+v, want a, b, c", got)
	}
}

// Pruning deletes what is older than the retention by the log's clock;
// zero retention keeps everything.
func TestPruneByRetention(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	st := &fakeStore{}
	l := audit.New(st, audit.Config{Retention: 90 * 24 * time.Hour, Now: func() time.Time { return now }})
	if _, err := l.Prune(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(st.pruneAt) != 1 || !st.pruneAt[0].Equal(time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("pruned before %v, want 2026-03-03", st.pruneAt)
	}
	keep := audit.New(st, audit.Config{})
	if _, err := keep.Prune(t.Context()); err != nil || len(st.pruneAt) != 1 {
		t.Fatalf("zero retention pruned: %v, %v", st.pruneAt, err)
	}
}
