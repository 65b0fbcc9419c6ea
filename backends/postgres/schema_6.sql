-- polyjobs PostgreSQL schema, version 6: cancel requests and fleet-wide concurrency.
--
-- `jobs.cancel_reason` is an active job's cancel request (CancelBackend in polyjobs/backend.py):
-- the worker that owns the job reads it and stops the job. `queues.concurrency` is the queue's
-- cap on active jobs across every worker (NULL: none), enforced when jobs are taken.

ALTER TABLE jobs ADD COLUMN cancel_reason text;
ALTER TABLE queues ADD COLUMN concurrency integer;
