-- +goose Up

-- Who may do what in a room (DESIGN.md 9.3). created_by is the subject of
-- the token that created the room, its owner; '' for rooms made in open
-- mode or before this migration, which nobody owns by creation.
ALTER TABLE rooms ADD COLUMN created_by text NOT NULL DEFAULT '';
CREATE INDEX rooms_created_by_idx ON rooms (created_by) WHERE created_by <> '';

-- The roles a room's owners gave to other subjects.
CREATE TABLE room_members (
    room_id    uuid        NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    subject    text        NOT NULL CHECK (subject <> ''),
    role       text        NOT NULL CHECK (role IN ('viewer', 'editor', 'owner')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, subject)
);
-- Listing a subject's rooms.
CREATE INDEX room_members_subject_idx ON room_members (subject);

-- +goose Down
DROP TABLE room_members;
DROP INDEX rooms_created_by_idx;
ALTER TABLE rooms DROP COLUMN created_by;
