-- +goose Up

-- A subscriber's presence id (the client's ?presence_id=) and owner (the
-- token's subject, '' in open mode), so that any instance can take a
-- PATCH …/presence/{presence_id} for a stream held by another (DESIGN.md
-- section 10: any instance takes any request) and check it as the holding
-- instance would.
ALTER TABLE presence ADD COLUMN presence_id text NOT NULL DEFAULT '';
ALTER TABLE presence ADD COLUMN owner text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE presence DROP COLUMN owner;
ALTER TABLE presence DROP COLUMN presence_id;
