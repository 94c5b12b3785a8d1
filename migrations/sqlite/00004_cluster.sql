-- +goose Up

-- Same schema as migrations/postgres, in SQLite's types. The embedded
-- database serves one process, so presence and instances stay empty here;
-- they exist so that both dialects have one schema.
DELETE FROM snapshots
 WHERE EXISTS (SELECT 1 FROM snapshots t
                WHERE t.room_id = snapshots.room_id AND t.version = snapshots.version
                  AND (t.created_at < snapshots.created_at
                       OR (t.created_at = snapshots.created_at AND t.id < snapshots.id)));
DROP INDEX snapshots_room_version_idx;
CREATE UNIQUE INDEX snapshots_room_version_key ON snapshots (room_id, version DESC);

-- A large snapshot is stored in pieces, each written by a short transaction
-- of its own, so that none holds SQLite's single write lock for long.
ALTER TABLE snapshots ADD COLUMN chunks INTEGER NOT NULL DEFAULT 1 CHECK (chunks >= 1);
ALTER TABLE snapshots ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
CREATE TABLE snapshot_chunks (
    snapshot_id TEXT    NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL CHECK (idx >= 1),
    data        BLOB    NOT NULL,
    PRIMARY KEY (snapshot_id, idx)
);

CREATE TABLE instances (
    id         TEXT    NOT NULL PRIMARY KEY,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL
);

CREATE TABLE presence (
    room_id      TEXT    NOT NULL,
    sub_id       TEXT    NOT NULL,
    instance_id  TEXT    NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name         TEXT    NOT NULL,
    connected_at INTEGER NOT NULL,
    state        TEXT,
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
