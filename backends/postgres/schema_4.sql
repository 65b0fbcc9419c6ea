-- polyjobs PostgreSQL schema, version 4: when each worker's fetch loop last succeeded
-- (WorkerInfo.fetched, for polyjobs health). Workers of an earlier version write 0.

ALTER TABLE workers ADD COLUMN fetched double precision NOT NULL DEFAULT 0;
