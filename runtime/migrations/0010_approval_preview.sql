-- What a request's write would do, from a dry run at request time (see `crate::capture`).
ALTER TABLE approvals ADD COLUMN preview TEXT;
