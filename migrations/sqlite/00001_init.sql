-- +goose Up

-- Same schema as migrations/postgres, in SQLite's types. Ids are canonical
-- lowercase UUID text. Timestamps are INTEGER unix microseconds (UTC), the
-- precision of PostgreSQL's timestamptz, converted to time.Time by the store.

CREATE TABLE rooms (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL DEFAULT '',
    version       INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0),
    element_count INTEGER NOT NULL DEFAULT 0 CHECK (element_count >= 0),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE INDEX rooms_created_at_id_idx ON rooms (created_at DESC, id DESC);

CREATE TABLE ops (
    room_id    TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL CHECK (seq > 0),
    op         TEXT    NOT NULL,
    client_id  TEXT    NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, seq)
);

CREATE TABLE idempotency_keys (
    room_id    TEXT    NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    key        TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    applied    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (room_id, key)
);

CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE ops;
DROP TABLE rooms;
