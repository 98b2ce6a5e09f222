ALTER TABLE execution_actions DROP COLUMN client_number;
DROP TABLE client_action_sequences;
