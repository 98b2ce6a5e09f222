ALTER TABLE execution_actions DROP COLUMN on_behalf_of;
DROP TABLE api_keys;
