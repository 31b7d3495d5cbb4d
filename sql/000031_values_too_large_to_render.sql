-- 000031: an event whose values are too large to render as text is told apart from the others,
-- instead of failing every claim that reads it.
--
-- Locks: none (a function added). None on application tables; no new rights.
--
-- Why: a claim renders each event's values as the JSON text the worker sends, to measure them.
-- PostgreSQL cannot make a text value over 1 GB, and a row well under that can render over it:
-- 180 MiB of control characters is 1 GB of \u0001 escapes, and the number 1e131071, stored in a
-- few bytes, prints as 131,072 digits. The error failed the whole claim statement, every round:
-- no delivery of the subscription was made, the others' claims waited behind it, and the event
-- was never dead-lettered. A claim that fails so is now run again with every event rendered
-- through this function, which renders them in a subtransaction and returns the error instead;
-- the worker dead-letters that event, saying so, and sends the rest. The usual claim still
-- renders in its own statement: a subtransaction per event would cost every claim, and no bound
-- on the stored size tells such an event apart beforehand. Only the limit is caught: an
-- out-of-memory error may pass, and the claim fails and is tried again as any other error.
--
-- Executable by PUBLIC, as the built-in functions it calls are: it reads only its arguments.

CREATE FUNCTION trigger_events.render_values(
    old_data jsonb, new_data jsonb, session_variables jsonb, into_encoding name,
    OUT old_text bytea, OUT new_text bytea, OUT session_text bytea, OUT unrenderable text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    old_text := convert_to(old_data::text, into_encoding);
    new_text := convert_to(new_data::text, into_encoding);
    session_text := convert_to(session_variables::text, into_encoding);
EXCEPTION WHEN program_limit_exceeded THEN
    old_text := NULL;
    new_text := NULL;
    session_text := NULL;
    unrenderable := SQLERRM;
END
$$;
COMMENT ON FUNCTION trigger_events.render_values(jsonb, jsonb, jsonb, name) IS
    'An event''s values as text in the given encoding, or NULLs and the error when PostgreSQL cannot render them (over 1 GB as text); a claim that failed so is run again with every event rendered by it.';

-- Workers of schema 27 and later run on this schema: nothing they use changed.
UPDATE trigger_events.migrations SET workers_from = 27 WHERE version = 31;
