-- +goose Up

-- Same schema as migrations/postgres, in SQLite's types (at in unix
-- microseconds, as every time of this database).
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    subject     TEXT    NOT NULL DEFAULT '',
    address     TEXT    NOT NULL DEFAULT '',
    action      TEXT    NOT NULL CHECK (action IN (
                    'snapshot_list', 'snapshot_read', 'snapshot_latest', 'snapshot_create',
                    'snapshot_restore', 'snapshots_clear', 'room_create', 'room_delete',
                    'room_rename', 'member_set', 'member_remove', 'session_create')),
    room_id     TEXT,
    snapshot_id TEXT,
    version     INTEGER,
    bytes       INTEGER,
    outcome     TEXT    NOT NULL CHECK (outcome IN ('ok', 'denied', 'limited')),
    request_id  TEXT    NOT NULL DEFAULT '',
    detail      TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_room_idx ON audit_log (room_id, at DESC, id DESC);

-- +goose Down
DROP TABLE audit_log;
