-- +goose Up

-- The audit log (DESIGN.md 9.5): every snapshot access and every privileged
-- action, with who asked (subject, address), what came of it (outcome) and
-- the request id that finds its log lines. Rows outlive their room on
-- purpose: a deleted room's history of who read and restored it is exactly
-- what an operator looks for afterwards, so room_id is no foreign key.
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    subject     text        NOT NULL DEFAULT '',
    address     text        NOT NULL DEFAULT '',
    action      text        NOT NULL CHECK (action IN (
                    'snapshot_list', 'snapshot_read', 'snapshot_latest', 'snapshot_create',
                    'snapshot_restore', 'snapshots_clear', 'room_create', 'room_delete',
                    'room_rename', 'member_set', 'member_remove', 'session_create')),
    room_id     uuid,
    snapshot_id uuid,
    version     bigint,
    bytes       bigint,
    outcome     text        NOT NULL CHECK (outcome IN ('ok', 'denied', 'limited')),
    request_id  text        NOT NULL DEFAULT '',
    -- What the action changed that the columns above do not say: the
    -- member and role of a member change, the new name of a rename.
    detail      text        NOT NULL DEFAULT ''
);
-- Newest first, for GET /audit, and the retention's deletes by age.
CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
-- Newest first within a room, for GET /rooms/{room}/audit.
CREATE INDEX audit_log_room_idx ON audit_log (room_id, at DESC, id DESC);

-- +goose Down
DROP TABLE audit_log;
