// Package room keeps LiveShare's live rooms in memory.
//
// A Room is loaded lazily on first use, from its newest snapshot that
// verifies (through the Snapshots interface) plus the ops after it, and
// evicted again after it has been idle for a while, snapshotted first if it
// changed. The database is
// the sequencer: every write goes through Store.AppendOps, which checks that
// the room's version in the database is the one this Room holds. A Room that
// finds itself behind (another LiveShare instance wrote to the same room)
// catches up from the op log and tries again, so several instances can share
// one PostgreSQL database.
//
// Concurrency contract: a Room's mutex is held for the whole of a write,
// from validation through the commit to the publication of the committed ops,
// so there is one writer at a time per room, readers never see a state that
// is not committed, and committed ops are published in sequence order.
// Subscribers are registered under the same mutex (read-locked), at the
// version they then read up to, so they miss nothing and get nothing twice.
package room
