-- +goose Up

-- Same schema as migrations/postgres, in SQLite's types.
CREATE TABLE snapshots (
    id            TEXT    NOT NULL PRIMARY KEY,
    room_id       TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL CHECK (version >= 0),
    created_at    INTEGER NOT NULL,
    size_bytes    INTEGER NOT NULL CHECK (size_bytes >= 0),
    element_count INTEGER NOT NULL CHECK (element_count >= 0),
    "trigger"     TEXT    NOT NULL,
    format        INTEGER NOT NULL,
    data          BLOB    NOT NULL
);

CREATE INDEX snapshots_room_version_idx ON snapshots (room_id, version DESC, created_at DESC);

ALTER TABLE rooms ADD COLUMN pruned_through INTEGER NOT NULL DEFAULT 0 CHECK (pruned_through >= 0);

-- +goose Down
ALTER TABLE rooms DROP COLUMN pruned_through;
DROP TABLE snapshots;
