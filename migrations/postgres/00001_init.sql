-- +goose Up

-- A room is a graph being edited together. version is the seq of the room's
-- last op (0 when empty); it is only ever changed by AppendOps, under a row
-- lock, so the database is the sequencer even with several LiveShare
-- instances on one database.
CREATE TABLE rooms (
    id            uuid        PRIMARY KEY,
    name          text        NOT NULL DEFAULT '',
    version       bigint      NOT NULL DEFAULT 0 CHECK (version >= 0),
    element_count bigint      NOT NULL DEFAULT 0 CHECK (element_count >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Listing rooms newest first with keyset pagination.
CREATE INDEX rooms_created_at_id_idx ON rooms (created_at DESC, id DESC);

-- The op log. op is text, not jsonb, so the logged bytes are exactly the ones
-- that were committed and replayed.
CREATE TABLE ops (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq        bigint      NOT NULL CHECK (seq > 0),
    op         text        NOT NULL,
    client_id  text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, seq)
);

-- The result of each request made with an Idempotency-Key, per room.
CREATE TABLE idempotency_keys (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    key        text        NOT NULL,
    version    bigint      NOT NULL,
    applied    integer     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, key)
);

-- Pruning expired keys.
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE ops;
DROP TABLE rooms;
