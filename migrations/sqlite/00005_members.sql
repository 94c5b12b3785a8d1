-- +goose Up

-- Same schema as migrations/postgres, in SQLite's types.
ALTER TABLE rooms ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
CREATE INDEX rooms_created_by_idx ON rooms (created_by) WHERE created_by <> '';

CREATE TABLE room_members (
    room_id    TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    subject    TEXT    NOT NULL CHECK (subject <> ''),
    role       TEXT    NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, subject)
);
CREATE INDEX room_members_subject_idx ON room_members (subject);

-- +goose Down
DROP TABLE room_members;
DROP INDEX rooms_created_by_idx;
ALTER TABLE rooms DROP COLUMN created_by;
