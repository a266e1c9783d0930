-- Egress grants per connection (issue 4): a JSON list of `scheme://host[:port][/path]` texts.
ALTER TABLE connections ADD COLUMN egress TEXT NOT NULL DEFAULT '[]';
