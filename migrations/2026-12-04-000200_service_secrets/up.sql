-- Secrets of the service, one row: the key that signs page tokens. The
-- service fills it at its first start; every process on this database uses
-- the same key, so a page token from one replica is accepted by another.
CREATE TABLE service_secrets (
    id smallint PRIMARY KEY CHECK (id = 1),
    page_token_key bytea NOT NULL CHECK (length(page_token_key) >= 16),
    create_time timestamptz NOT NULL DEFAULT now()
);
