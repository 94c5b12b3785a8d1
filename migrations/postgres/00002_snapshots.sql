-- +goose Up

-- Snapshots of a room's state, binary blobs the store keeps as opaque bytes.
-- version is the room's version the state is at; size_bytes = length(data).
-- "trigger" is quoted: it is a keyword.
CREATE TABLE snapshots (
    id            uuid        PRIMARY KEY,
    room_id       uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    version       bigint      NOT NULL CHECK (version >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    size_bytes    bigint      NOT NULL CHECK (size_bytes >= 0),
    element_count bigint      NOT NULL CHECK (element_count >= 0),
    "trigger"     text        NOT NULL,
    format        integer     NOT NULL,
    data          bytea       NOT NULL
);

-- A room's snapshots newest first: listing, latest, trimming to the newest N.
CREATE INDEX snapshots_room_version_idx ON snapshots (room_id, version DESC, created_at DESC);

-- Every op with seq <= pruned_through has been deleted from the log; the ops
-- after it are all there. It never decreases.
ALTER TABLE rooms ADD COLUMN pruned_through bigint NOT NULL DEFAULT 0 CHECK (pruned_through >= 0);

-- +goose Down
ALTER TABLE rooms DROP COLUMN pruned_through;
DROP TABLE snapshots;
