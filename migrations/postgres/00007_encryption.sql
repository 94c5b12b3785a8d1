-- +goose Up

-- Encryption at rest (DESIGN.md 9.6). key_id names the key a row's payload is
-- sealed with; '' means the payload is plain (stored while no key was set).
-- A sealed op keeps its payload in sealed (op is then ''): op is text, and a
-- sealed payload is binary. A sealed snapshot's data and pieces hold the
-- sealed bytes; size_bytes stays the length of the plain codec format.
ALTER TABLE ops ADD COLUMN key_id text NOT NULL DEFAULT '';
ALTER TABLE ops ADD COLUMN sealed bytea;
ALTER TABLE snapshots ADD COLUMN key_id text NOT NULL DEFAULT '';

-- Every key id that rows may be sealed with: a process registers its current
-- key before it seals anything, and rekey removes the ids no row uses any
-- more. Start-up compares it with LIVESHARE_ENCRYPTION_KEYS without reading
-- the op log.
CREATE TABLE encryption_keys (
    key_id   text        PRIMARY KEY,
    added_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE encryption_keys;
ALTER TABLE snapshots DROP COLUMN key_id;
ALTER TABLE ops DROP COLUMN sealed;
ALTER TABLE ops DROP COLUMN key_id;
