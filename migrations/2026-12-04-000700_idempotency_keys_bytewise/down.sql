ALTER TABLE core_standin.rejections ALTER COLUMN idempotency_key TYPE text COLLATE "default";
ALTER TABLE core_standin.true_up_orders ALTER COLUMN idempotency_key TYPE text COLLATE "default";
ALTER TABLE core_standin.usage_transactions ALTER COLUMN idempotency_key TYPE text COLLATE "default";
ALTER TABLE ledger.transactions ALTER COLUMN idempotency_key TYPE text COLLATE "default";
