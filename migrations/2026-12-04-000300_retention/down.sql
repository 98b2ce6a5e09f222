DROP INDEX executions_business_date_idx;
DROP TABLE retention_backlog;
DROP TABLE client_retention;
