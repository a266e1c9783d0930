-- Whether a connection honours its connector's declared read routes (POST-as-read for GraphQL,
-- OData batch); off by default.
ALTER TABLE connections ADD COLUMN accept_read_routes BOOLEAN NOT NULL DEFAULT FALSE;
