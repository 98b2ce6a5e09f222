-- The indexes and keys a large demo ledger load dropped and has not built
-- again yet. A load records them in the transaction that drops them and
-- removes each in the transaction that builds it again, so a load that dies
-- in between leaves here what the ledger lacks, and the next load builds it.
CREATE TABLE ledger.dropped_indexes (
    index_name text PRIMARY KEY,
    table_name text NOT NULL,
    -- The statement that creates it again.
    definition text NOT NULL,
    drop_time timestamptz NOT NULL DEFAULT now()
);
