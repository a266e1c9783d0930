-- Data shaping and caching per connection, as JSON (see `control::shaping::DataPolicy`):
-- classification raises per operation, PII masking, the read cache's TTL. NULL: defaults.
ALTER TABLE connections ADD COLUMN data_policy TEXT;
