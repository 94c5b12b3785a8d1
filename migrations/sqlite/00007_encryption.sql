-- +goose Up

-- Same schema as migrations/postgres, in SQLite's types.
ALTER TABLE ops ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE ops ADD COLUMN sealed BLOB;
ALTER TABLE snapshots ADD COLUMN key_id TEXT NOT NULL DEFAULT '';

CREATE TABLE encryption_keys (
    key_id   TEXT    NOT NULL PRIMARY KEY,
    added_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE encryption_keys;
ALTER TABLE snapshots DROP COLUMN key_id;
ALTER TABLE ops DROP COLUMN sealed;
ALTER TABLE ops DROP COLUMN key_id;
