-- 000010: an attempt of a batch records the webhook-id its request carried.
--
-- Locks: ACCESS EXCLUSIVE for a moment on trigger_events.attempts (a nullable column without a
-- default: nothing is rewritten). No lock on application tables. The worker's role needs no
-- new right: it already inserts and reads attempts.
--
-- Why: a batch's webhook-id (msg_<subscription>_b<first event id>_<events>) names the events the
-- request carried, which only the worker knew: an event dead-lettered alone is left out of its
-- batch and changes both the first event and the count. The console showed each event's own
-- single-event id instead, which no request carried.

-- NULL for a single event's attempt, whose id is msg_<subscription>_<event id>.
ALTER TABLE trigger_events.attempts ADD COLUMN webhook_id text;
COMMENT ON COLUMN trigger_events.attempts.webhook_id IS
    'The webhook-id of the batch request this attempt was part of; NULL for a single event''s request (msg_<subscription>_<event id>).';
