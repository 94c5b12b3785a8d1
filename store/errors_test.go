package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/lib/pq"
)

func TestIsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("boom"), false},
		{fmt.Errorf("wrapped: %w", ErrNotFound), false},
		{&pq.Error{Code: "23505"}, false}, // unique violation: ours to handle
		{&pq.Error{Code: "42P01"}, false}, // undefined table: a fault
		{&pq.Error{Code: "22021"}, false}, // bad encoding: the input's fault
		{&pq.Error{Code: "08006"}, true},  // connection failure
		{&pq.Error{Code: "57P01"}, true},  // admin shutdown
		{&pq.Error{Code: "57P03"}, true},  // cannot connect now (starting up)
		{&pq.Error{Code: "53100"}, true},  // disk full
		{&pq.Error{Code: "53300"}, true},  // too many connections
		{&pq.Error{Code: "40001"}, true},  // serialization failure
		{&pq.Error{Code: "40P01"}, true},  // deadlock
		{&pq.Error{Code: "25006"}, true},  // read-only transaction
		{fmt.Errorf("append: %w", &pq.Error{Code: "08003"}), true},
		{driver.ErrBadConn, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("x: %w", syscall.ENOSPC), true},
		{context.Canceled, false}, // the caller's doing, handled by the caller
	} {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// A real SQLite error code is read, not the message.
func TestIsUnavailableSQLite(t *testing.T) {
	st, err := Open(context.Background(), Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.db.Exec("SELECT * FROM no_such_table")
	if err == nil || IsUnavailable(err) {
		t.Fatalf("a missing table is a fault, not unavailability: %v", err)
	}
}
