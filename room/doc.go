// Package room keeps LiveShare's live rooms in memory.
//
// A Room is loaded lazily on first use, from its newest snapshot that
// verifies (through the Snapshots interface) plus the ops after it, and
// evicted again after it has been idle for a while, snapshotted first if it
// changed. The database is the sequencer: every write goes through
// Store.AppendOps, which checks that the room's version in the database is
// the one this Room holds. A Room that finds itself behind (another
// LiveShare instance wrote to the same room) catches up from the op log —
// or reloads from the newest snapshot when the ops it missed are pruned —
// and tries again, so several instances can share one PostgreSQL database.
//
// Concurrency contract: each Room has one sequencer goroutine, started when
// work is queued and ending when the queue is empty. It takes the queued
// writes as a group, validates them in order against the state each will
// follow (a refused write changes nothing and fails no neighbour), commits
// the accepted ones in one AppendOps call, then applies and publishes them
// in sequence order. The Room's mutex is held only to read or swap the
// state in memory, never across database IO or the publish, so readers see
// only committed state and never wait for a commit. Subscribers are
// registered at the version the hub has published, so they miss nothing and
// get nothing twice.
package room
