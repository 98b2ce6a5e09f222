-- Action ids numbered per client: a client sees 1, 2, 3... for its own
-- actions, never how many other clients took. The global bigserial stays
-- the row's key; client_number is what the API calls action_id.
CREATE TABLE client_action_sequences (
    client_id text PRIMARY KEY,
    last_number bigint NOT NULL
);

ALTER TABLE execution_actions ADD COLUMN client_number bigint;

UPDATE execution_actions a
SET client_number = numbered.n
FROM (
    SELECT a2.action_id,
           row_number() OVER (PARTITION BY e.client_id ORDER BY a2.action_id) AS n
    FROM execution_actions a2
    JOIN executions e ON e.execution_id = a2.execution_id
) numbered
WHERE a.action_id = numbered.action_id;

INSERT INTO client_action_sequences (client_id, last_number)
SELECT e.client_id, max(a.client_number)
FROM execution_actions a
JOIN executions e ON e.execution_id = a.execution_id
GROUP BY e.client_id;

ALTER TABLE execution_actions ALTER COLUMN client_number SET NOT NULL;
