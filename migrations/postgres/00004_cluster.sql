-- +goose Up

-- One snapshot per room and version, whichever instance takes it. Copies
-- stored before this constraint existed keep their oldest row.
DELETE FROM snapshots s USING snapshots t
 WHERE s.room_id = t.room_id AND s.version = t.version
   AND (s.created_at, s.id) > (t.created_at, t.id);
DROP INDEX snapshots_room_version_idx;
CREATE UNIQUE INDEX snapshots_room_version_key ON snapshots (room_id, version DESC);

-- A large snapshot is stored in pieces, each written by a short transaction of
-- its own, so that no transaction flushes megabytes of WAL ahead of a
-- writer's commit. The row claims its (room, version) first, holding the
-- first piece; it counts as stored once complete is set, in the transaction
-- that also trims older snapshots and prunes the op log.
ALTER TABLE snapshots ADD COLUMN chunks integer NOT NULL DEFAULT 1 CHECK (chunks >= 1);
ALTER TABLE snapshots ADD COLUMN complete boolean NOT NULL DEFAULT true;
CREATE TABLE snapshot_chunks (
    snapshot_id uuid    NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    idx         integer NOT NULL CHECK (idx >= 1),
    data        bytea   NOT NULL,
    PRIMARY KEY (snapshot_id, idx)
);

-- Instances of LiveShare sharing this database, for presence: an instance
-- that stops refreshing seen_at is dead, and its subscribers are gone.
-- Presence is ephemeral: UNLOGGED keeps it out of the WAL (a crash of the
-- database empties it, and the instances write it again).
CREATE UNLOGGED TABLE instances (
    id         uuid        PRIMARY KEY,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);

-- Who is subscribed to which room through which instance.
CREATE UNLOGGED TABLE presence (
    room_id      uuid        NOT NULL,
    sub_id       text        NOT NULL,
    instance_id  uuid        NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    connected_at timestamptz NOT NULL,
    state        text,
    PRIMARY KEY (room_id, sub_id)
);
CREATE INDEX presence_instance_idx ON presence (instance_id);

-- +goose Down
DROP TABLE presence;
DROP TABLE instances;
DROP TABLE snapshot_chunks;
ALTER TABLE snapshots DROP COLUMN complete;
ALTER TABLE snapshots DROP COLUMN chunks;
DROP INDEX snapshots_room_version_key;
CREATE INDEX snapshots_room_version_idx ON snapshots (room_id, version DESC, created_at DESC);
