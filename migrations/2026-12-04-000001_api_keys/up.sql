-- API keys: who may call, for which clients, with which role. Only an HMAC
-- of the secret is stored.
CREATE TABLE api_keys (
    key_id text PRIMARY KEY,
    -- The client whose admins manage the key.
    client_id text NOT NULL,
    -- The actor written to the action history.
    name text NOT NULL,
    role text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    -- The clients the key acts for; NULL: every client.
    clients text[],
    secret_hash bytea NOT NULL,
    created_by text NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    expire_time timestamptz,
    revoke_time timestamptz,
    last_use_time timestamptz
);
-- A name is unique among a client's live keys: the history stays readable.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (client_id, name) WHERE revoke_time IS NULL;
CREATE INDEX api_keys_client_idx ON api_keys (client_id, create_time);

-- Whom a platform key said it acted for, recorded beside the key's name.
ALTER TABLE execution_actions ADD COLUMN on_behalf_of text;
