-- 000017: every worker role may number deliveries, whatever its name.
--
-- Locks: none on tables; grants on one sequence. No lock on application tables; no new rights
-- beyond what grant_worker_role() has granted since 000008.
--
-- Why: 000008 made the fan-out, replay and dead retry number deliveries from the sequence
-- trigger_events.delivery_order, and its grant_worker_role() grants USAGE on it. migrate grants
-- that again at every upgrade to trigger_events_worker only; a role named otherwise that was given
-- the worker's rights before 000008 (grant_worker_role() exists since 000005) never got it. Every
-- fan-out takes a number, so such a worker's claims all failed with "permission denied for
-- sequence delivery_order" after the upgrade. As 000013 and 000015 did for what they added,
-- the grant goes to every role that may set the idle flag: the workers' roles, granted by
-- grant_worker_role() or by hand.
DO $$
DECLARE
    grant_to record;
BEGIN
    FOR grant_to IN
        SELECT DISTINCT a.grantee::regrole AS role
        FROM pg_class c CROSS JOIN LATERAL aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
        WHERE c.oid = 'trigger_events.worker_signal'::regclass AND a.privilege_type = 'UPDATE'
          AND a.grantee <> 0
          AND a.grantee <> (SELECT s.relowner FROM pg_class s WHERE s.oid = 'trigger_events.delivery_order'::regclass)
          AND NOT has_sequence_privilege(a.grantee, 'trigger_events.delivery_order', 'USAGE')
    LOOP
        EXECUTE format('GRANT USAGE ON SEQUENCE trigger_events.delivery_order TO %s', grant_to.role);
    END LOOP;
END
$$;
