DROP TABLE ledger.dropped_indexes;
