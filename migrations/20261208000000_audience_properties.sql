-- The audience's people keep every property their events and Mixpanel's people updates set
-- (`$set`, `$set_once`, `$unset`), not only the email, name and timezone columns
-- (shared/src/people.rs). A constant default: no table rewrite.
ALTER TABLE users ADD COLUMN properties jsonb NOT NULL DEFAULT '{}'::jsonb;
