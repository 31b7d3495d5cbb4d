using Npgsql;
using NpgsqlTypes;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Postgres.Delivery;

/// <summary>
/// The worker's hot-path queries: fan committed events out into deliveries, claim under a lease,
/// record results while the lease is held, extend and release leases, and the idle signal that
/// gates capture's NOTIFY.
/// </summary>
internal sealed class DeliveryStore(NpgsqlDataSource dataSource)
{
    /// <summary>
    /// Subscriptions with a rate limit or a circuit breaker: their claims also read back when the
    /// next claim can take anything (<see cref="ClaimBatch.Protection"/>). The others' claims run
    /// no statement for it.
    /// </summary>
    public IReadOnlySet<int> ProtectedSubscriptions { get; init; } = new HashSet<int>();

    /// <summary>
    /// The <c>batch.max_events</c> of batched subscriptions: their claims read up to a batch's
    /// worth of rows per request (<see cref="Batches.Rows"/>).
    /// </summary>
    public IReadOnlyDictionary<int, int> BatchedSubscriptions { get; init; } = new Dictionary<int, int>();

    /// <summary>
    /// Ordered subscriptions (<c>ordering: key</c>): their claims may take a key's followers
    /// along (<see cref="KeyOrdering.Followers"/>), so the values that come with a claim are
    /// shared out over those rows too.
    /// </summary>
    public IReadOnlySet<int> OrderedSubscriptions { get; init; } = new HashSet<int>();

    /// <summary>
    /// The clock claims go by (<see cref="ClaimProtocol.Now"/>): null, the database's, so that
    /// replicas agree on when a lease expires or a retry is due whatever their hosts' clocks say;
    /// a test passes one it controls to drive rounds through time without waiting.
    /// </summary>
    public TimeProvider? Clock { get; init; }

    /// <summary>
    /// Locks the subscription row until the claim commits, so claimers on every replica take
    /// turns. It has to be a statement of its own, before <see cref="ClaimSql"/>: a statement
    /// reads with the snapshot it started with, so a claim that locked the row itself would,
    /// after waiting for another claim, count that claim's deliveries as not yet in flight and
    /// take <c>max_in_flight</c> again (ReplicaTests, ClaimLimitTests). In READ COMMITTED the
    /// next statement takes a fresh snapshot, which sees every claim committed before the lock.
    /// </summary>
    /// <remarks>
    /// It also pins the claim's plan for the rest of this transaction (see <see cref="PinnedPlan"/>),
    /// and returns the claim's time (<see cref="Clock"/>, <c>$2</c>), which bounds where the next claim looks.
    /// </remarks>
    internal const string LockSubscriptionSql = $"""
        SELECT coalesce($2::timestamptz, now()), {PinnedPlan} FROM trigger_events.subscriptions WHERE id = $1 AND enabled FOR UPDATE
        """;

    /// <summary>
    /// Planner settings for the rest of a hot-path transaction (<c>set_config(..., true)</c> ends
    /// with it). Every hot-path statement is a short walk down an index; the planner must never
    /// think otherwise. Right after a burst of captures the statistics still describe an almost
    /// empty queue: the planner then chose a bitmap scan of the whole backlog and sorted it on
    /// disk to find the oldest hundred. And the statements are
    /// prepared: a generic plan made while the queue was empty (a sequential scan, a hash join
    /// sized by a LIMIT it cannot see) would otherwise be kept for the life of the connection.
    /// With these off only the ordered index scans and nested loops are left, whatever the
    /// statistics say; a plain index scan also marks the entries of finished leases dead for the
    /// next count. JIT is off because these statements take well under a millisecond. And each
    /// runs its generic plan: left to choose, the server planned the result write afresh at every
    /// execution (a custom plan, for the lengths of its arrays), which took longer than running
    /// it for a handful of results, and the fan-out's statements likewise. The generic plans are
    /// the same index walks (bench/README.md, "Generic plans").
    /// </summary>
    private const string PinnedPlan = """
        set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
        set_config('enable_sort', 'off', true), set_config('enable_hashjoin', 'off', true),
        set_config('enable_mergejoin', 'off', true), set_config('jit', 'off', true),
        set_config('plan_cache_mode', 'force_generic_plan', true)
        """;

    /// <summary>
    /// Turns the events committed since each subscription's place in the log into deliveries
    /// (<c>trigger_events.fan_out</c>, migration 000003). It goes first in a claim's round trip, so
    /// the claim that follows in the same transaction takes what it made at once. A paused
    /// subscription is not fanned out: its place in the log stays where it paused.
    /// </summary>
    internal const string FanOutSql =
        "SELECT trigger_events.fan_out(ARRAY(SELECT id FROM trigger_events.subscriptions WHERE id = ANY ($1) AND enabled), $2)";

    /// <summary>
    /// After <see cref="FanOutSql"/>, in its transaction: it made a chunk of a batch that goes on
    /// (a transaction larger than one call's <c>max_events</c>, given a chunk a call). Its own
    /// positions only (their <c>updated_at</c> is this transaction's start): a batch another
    /// replica is making, whose positions the fan-out passed by locked, is not this worker's to
    /// go on with.
    /// </summary>
    internal const string FanOutContinuesSql = """
        SELECT EXISTS (SELECT FROM trigger_events.subscription_positions sp
                       WHERE sp.subscription_id = ANY ($1) AND sp.batch_end IS NOT NULL AND sp.updated_at = now())
        """;

    /// <summary>
    /// <see cref="PinnedPlan"/> on its own, ahead of the fan-out or the result write, and the
    /// setting by which the fan-out parks a key's waiting deliveries (migration 000016): this
    /// worker passes them along as a key's run (<see cref="KeyOrdering.Followers"/>), hands them
    /// on (<see cref="KeyOrdering.HandOffSql"/>) and sweeps them (<see cref="KeyOrdering.UnparkSql"/>).
    /// </summary>
    internal const string PinPlanSql = $"SELECT {PinnedPlan}, set_config('trigger_events.park_waiting', 'on', true)";

    /// <summary>
    /// Claims up to <c>$10</c> requests' worth (<c>$3</c> rows; a batch is one request, the rest one
    /// delivery each: <see cref="Batches"/>) of due deliveries of one subscription, after <see cref="LockSubscriptionSql"/>
    /// in the same transaction, so claimers on every replica together never exceed
    /// <c>max_in_flight</c>; delivery rows are taken with SKIP LOCKED. Due means pending and past
    /// <c>next_attempt_at</c>, or (when <c>$7</c>) in flight with an expired lease: a crashed
    /// worker's, taken over first as the oldest work. Each kind is read from its own partial index.
    /// </summary>
    /// <remarks>
    /// Pending rows are read in (<c>next_attempt_at</c>, <c>event_id</c>) order after a cursor
    /// (<c>$5</c>, <c>$6</c>): the last row this worker claimed (<see cref="ClaimProtocol"/>), but
    /// never later than <see cref="ClaimProtocol.CommitWindow"/> before the previous claim
    /// (<c>$8</c>), whose snapshot could not see what committed after it, however long ago that
    /// claim was. <see cref="ClaimCursor.Sweep"/> (-infinity) starts from the head.
    /// <para>
    /// It takes no more than the subscription's rate limit has budget for, and nothing while a
    /// Retry-After holds it back or its circuit is open (one probe once <c>open_for</c> passed);
    /// a rate-limited or breaker subscription's row is written with what it spent
    /// (<see cref="TargetProtectionQueries"/>, migration 000007). Others' rows are not written.
    /// </para>
    /// <para>
    /// A row whose attempts are spent (<c>max_attempts</c>) is not leased but dead-lettered here,
    /// saying so: its last attempt ended without a result (the worker was killed, stalled past its
    /// lease or stopped mid-request), and taking it again would let an event that crashes every
    /// worker crash them for ever. Attempts therefore never pass <c>max_attempts</c>.
    /// </para>
    /// <para>
    /// An event's values come back as the text the worker sends (in UTF-8, as bytes: the lengths
    /// are then those the worker reads in any server encoding), rendered once: their lengths
    /// decide whether they come with the claim at all (at most <c>$9</c> bytes together; the worker
    /// reads a larger event apart, when it has room for it, or dead-letters it when it is over
    /// <c>max_event_bytes</c>). The length is that of the text because that is what the worker
    /// holds: <c>pg_column_size</c> counts the stored form, compressed or binary, far smaller than
    /// the text of a repetitive row (bench/README.md, "Delivery limits"). A large event is
    /// rendered here and again when it is read, an oversized one only here. The subquery with
    /// OFFSET 0 keeps the planner from copying the cast into each place that uses it, which would
    /// render a row three times.
    /// </para>
    /// </remarks>
    internal const string ClaimSql = $$"""
        WITH capacity AS (
            -- A Retry-After's hold, an open circuit and the rate limit's bucket (budget) are on the
            -- subscription's row too: see TargetProtectionQueries.
            SELECT fr.free, s.max_attempts, b.tokens, coalesce(floor(b.tokens)::int, $10) AS budget,
                   -- The requests the fan-out behind this claim may lease (migrations 000013 and
                   -- 000014), for a subscription without key ordering, rate limit or breaker; it
                   -- takes off what this claim took.
                   set_config('{{LeaseRoomSetting}}',
                              CASE WHEN s.ordering_key IS NULL AND s.rate_per_second IS NULL AND s.breaker_failure_rate IS NULL
                                   THEN least($10, fr.free) ELSE 0 END::text, true) AS lease_room,
                   s.batch_max_events AS batch_max, s.batch_max_wait AS batch_wait,
                   ({{KeyOrdering.SendsRuns}}) AS runs
            -- A paused subscription (not enabled) has no capacity: nothing of it is claimed.
            FROM trigger_events.subscriptions s
            CROSS JOIN LATERAL (
                -- A batch in flight is one request (migration 000009); a subscription no longer
                -- batched counts each delivery, whatever batch it was once in. A key of an
                -- ordered one is one request, whatever followers it holds (KeyOrdering.Followers).
                SELECT count(DISTINCT CASE WHEN s.batch_max_events IS NOT NULL THEN coalesce(d.batch_id, d.event_id)
                                           WHEN d.order_key IS NULL THEN d.event_id END)
                       + count(DISTINCT d.order_key) FILTER (WHERE s.batch_max_events IS NULL) AS in_flight
                FROM trigger_events.deliveries d
                WHERE d.subscription_id = $1 AND d.status = 'in_flight' AND d.next_attempt_at > {{ClaimProtocol.Now}}) f
            CROSS JOIN LATERAL (SELECT {{TargetProtectionQueries.Tokens}} AS tokens) b
            CROSS JOIN LATERAL (SELECT CASE {{TargetProtectionQueries.HeldBack}} ELSE greatest(0, s.max_in_flight - f.in_flight) END AS free) fr
            WHERE s.id = $1 AND s.enabled
        ), expired AS (
            -- One at a time (its batch or its key's run comes along), and nothing pending beside
            -- it: the event may be what killed the worker that held it (ClaimProtocol).
            SELECT d.subscription_id, d.event_id, true AS took_over, d.next_attempt_at AS due_at, d.batch_id, d.order_key, d.order_seq
            FROM trigger_events.deliveries d
            WHERE $7 AND d.subscription_id = $1 AND d.status = 'in_flight' AND d.next_attempt_at <= {{ClaimProtocol.Now}}
              AND (SELECT free FROM capacity) > 0
              -- A key's expired run is taken over from its first, with the rest as its followers.
              AND {{KeyOrdering.NotHeldBack}}
            ORDER BY d.next_attempt_at
            LIMIT 1
            FOR UPDATE SKIP LOCKED
        ), start AS (
            SELECT CASE WHEN $5 < w.since THEN $5 ELSE w.since END AS due_at,
                   CASE WHEN $5 < w.since THEN $6 ELSE 0 END AS event_id
            FROM (SELECT $8 - interval '{{ClaimProtocol.CommitWindow}}' AS since) w
        ), pending AS (
            -- LIMIT is the plain batch size so the planner sizes the join below from it (a
            -- computed LIMIT is estimated at a tenth of the table, which chose a hash join over a
            -- sequential scan of every delivery, history included). The capacity cap is applied
            -- by position instead.
            SELECT d.subscription_id, d.event_id, false AS took_over, d.next_attempt_at AS due_at, d.batch_id, d.order_key, d.order_seq
            FROM trigger_events.deliveries d
            WHERE d.subscription_id = $1 AND d.status = 'pending' AND d.next_attempt_at <= {{ClaimProtocol.Now}}
              AND (d.next_attempt_at, d.event_id) > ((SELECT due_at FROM start), (SELECT event_id FROM start))
              AND (SELECT free FROM capacity) > 0
              AND NOT EXISTS (SELECT FROM expired)
              AND {{KeyOrdering.NotHeldBack}}
            ORDER BY d.next_attempt_at, d.event_id
            LIMIT $3
            FOR UPDATE SKIP LOCKED
        ), {{KeyOrdering.Followers}}, {{Batches.Claim}}, claimed AS (
            UPDATE trigger_events.deliveries d
            SET status = CASE WHEN d.attempts < c.max_attempts THEN 'in_flight' ELSE 'dead' END::trigger_events.delivery_status,
                lease_owner = CASE WHEN d.attempts < c.max_attempts THEN $2::uuid END,
                attempts = CASE WHEN d.attempts < c.max_attempts THEN d.attempts + 1 ELSE d.attempts END,
                next_attempt_at = CASE WHEN d.attempts < c.max_attempts THEN {{ClaimProtocol.Now}} + $4 ELSE d.next_attempt_at END,
                last_status = CASE WHEN d.attempts < c.max_attempts THEN d.last_status END,
                last_error = CASE WHEN d.attempts < c.max_attempts THEN d.last_error
                                  ELSE format('gave up after %s attempts; the last one ended without a result '
                                              '(its worker was killed, stopped or stalled past its lease before recording one)', d.attempts) END,
                updated_at = {{ClaimProtocol.Now}},
                batch_id = CASE WHEN c.batch_max IS NOT NULL THEN allowed.unit_id ELSE d.batch_id END
            FROM allowed, capacity c
            WHERE d.subscription_id = allowed.subscription_id AND d.event_id = allowed.event_id
              AND allowed.unit_rank <= least($10, c.free, c.budget) AND {{Batches.Ready}}
            RETURNING d.event_id, d.attempts, allowed.took_over, allowed.due_at, d.rescheduled_at, d.status, d.last_error,
                      allowed.unit_id, CASE WHEN c.batch_max IS NOT NULL THEN d.batch_id END AS batch_id, allowed.along,
                      CASE WHEN c.batch_max IS NULL AND allowed.unit_size > 1 THEN allowed.unit_id END AS run_id, d.order_seq
        ), {{TargetProtectionQueries.Spend}}
        SELECT c.event_id, e.captured_at, e.trigger_name, e.schema_name, e.table_name, e.op,
               v.old_bytes, v.new_bytes, v.session_bytes,
               CASE WHEN v.included THEN v.old_text END, CASE WHEN v.included THEN v.new_text END,
               CASE WHEN v.included THEN v.session_text END,
               e.traceparent, c.attempts, c.took_over, c.due_at, c.rescheduled_at, e.condition_error,
               c.status = 'dead', c.last_error, v.included, c.batch_id, c.along, c.run_id, c.order_seq, v.unrenderable
        FROM claimed c
        LEFT JOIN trigger_events.event_log e ON e.id = c.event_id AND c.status = 'in_flight'
        {{InlineValues}}
        """;

    /// <summary>
    /// What <c>convert_to</c> turns an event's values into to give their UTF-8 bytes: UTF-8, except
    /// in a database in SQL_ASCII, which takes any bytes and whose text therefore may not be UTF-8.
    /// There a conversion to UTF-8 raised an error that failed the whole claim, every round, for
    /// every subscription; the bytes are taken as they are instead, and the worker dead-letters an
    /// event whose values are not UTF-8 with that reason (<c>WebhookPayload.Validate</c>).
    /// </summary>
    private const string Utf8Bytes = "CASE getdatabaseencoding() WHEN 'SQL_ASCII' THEN 'SQL_ASCII' ELSE 'UTF8' END";

    /// <summary>
    /// Event <c>e</c>'s values as the text the worker sends, with their lengths, and whether they
    /// come with the claim at all (at most <c>$9</c> bytes together): see <see cref="ClaimSql"/>.
    /// As UTF-8 bytes (<see cref="Utf8Bytes"/>), rendered by <see cref="RenderedInline"/>, or by
    /// <see cref="RenderedApart"/> in a statement run again after that failed.
    /// </summary>
    private const string InlineValues = $$"""
        LEFT JOIN LATERAL (
            SELECT t.*, t.unrenderable IS NULL AND coalesce(t.old_bytes, 0) + coalesce(t.new_bytes, 0) + coalesce(t.session_bytes, 0) <= $9 AS included
            FROM (
                SELECT r.old_text, r.new_text, r.session_text, r.unrenderable,
                       octet_length(r.old_text) AS old_bytes, octet_length(r.new_text) AS new_bytes,
                       octet_length(r.session_text) AS session_bytes
                FROM {{RenderedInline}} r
            ) t
        ) v ON true
        """;

    /// <summary>Event <c>e</c>'s values rendered in the statement's own expressions; <c>unrenderable</c> is NULL.</summary>
    private const string RenderedInline =
        $"(SELECT convert_to(e.old_data::text, {Utf8Bytes}) AS old_text, convert_to(e.new_data::text, {Utf8Bytes}) AS new_text, " +
        $"convert_to(e.session_variables::text, {Utf8Bytes}) AS session_text, NULL::text AS unrenderable OFFSET 0)";

    /// <summary>
    /// <see cref="RenderedInline"/> for a statement run again after it failed with
    /// <c>program_limit_exceeded</c>: an event's values rendered over 1 GB as text, more than
    /// PostgreSQL can make (180 MiB of control characters, each written <c>\u0001</c>, or a
    /// number such as 1e131071, stored in a few bytes and printed in 131,072 digits). Each event
    /// is rendered by <c>trigger_events.render_values</c> (migration 000031), which returns the
    /// error, <c>unrenderable</c>, instead of failing the statement with it, so the worker can
    /// dead-letter that event and send the rest. Its subtransaction per event is why a claim
    /// renders inline first: no bound on the stored size tells such an event apart.
    /// </summary>
    private const string RenderedApart = $"trigger_events.render_values(e.old_data, e.new_data, e.session_variables, {Utf8Bytes})";

    /// <summary><paramref name="statement"/>, which renders events with <see cref="InlineValues"/>, as it is run again after a value could not be rendered.</summary>
    private static string RenderingApart(string statement) =>
        statement.Contains(RenderedInline, StringComparison.Ordinal)
            ? statement.Replace(RenderedInline, RenderedApart, StringComparison.Ordinal)
            : throw new InvalidOperationException("The statement does not render values with InlineValues.");

    /// <summary>A value rendered over 1 GB: the claim or read is run again with <see cref="RenderedApart"/>.</summary>
    private static bool IsUnrenderable(PostgresException e) => e.SqlState == PostgresErrorCodes.ProgramLimitExceeded;

    /// <summary>
    /// The transaction-local setting through which <see cref="ClaimSql"/> tells the fan-out that
    /// leases (<see cref="FanOutLeasingSql"/>) how much room the subscription has.
    /// </summary>
    private const string LeaseRoomSetting = "trigger_events.lease_room";

    /// <summary>
    /// After <see cref="ClaimSql"/>, in its transaction, instead of <see cref="FanOutSql"/> before
    /// it: the fan-out (migration 000013), which makes the deliveries of subscription <c>$3</c>
    /// that the claim left room for already leased to <c>$4</c>, as the claim would have (attempt
    /// 1, the lease ending at the claim's time plus <c>$5</c>; of a batched subscription, whole
    /// batches only, each with its id, migration 000014). Each such delivery is written once
    /// before its result instead of twice, and no claim walks the pending queue for it. The
    /// subscription's row is still locked by the claim, so <c>max_in_flight</c> holds across
    /// replicas. The ids it leased go to <see cref="LeasedSql"/> through a transaction-local
    /// setting: this statement's own snapshot, taken before the fan-out took its own, may not
    /// see the events of transactions that committed in between.
    /// </summary>
    internal const string FanOutLeasingSql = $"""
        SELECT set_config('{LeasedEventsSetting}', f.leased::text, true)
        FROM trigger_events.fan_out(
            ARRAY(SELECT id FROM trigger_events.subscriptions WHERE id = ANY ($1) AND enabled), $2, $3, $4,
            coalesce($6::timestamptz, now()) + $5) f
        """;

    private const string LeasedEventsSetting = "trigger_events.leased_events";

    /// <summary>
    /// The deliveries <see cref="FanOutLeasingSql"/> leased to subscription <c>$3</c>, read as
    /// <see cref="ClaimSql"/> returns what it took (values up to <c>$2</c> bytes together, the
    /// batch each is in), with their lease's start (<c>$1</c>, the claim's clock).
    /// </summary>
    internal static readonly string LeasedSql = $$"""
        SELECT l.event_id, e.captured_at, e.trigger_name, e.schema_name, e.table_name, e.op,
               v.old_bytes, v.new_bytes, v.session_bytes,
               CASE WHEN v.included THEN v.old_text END, CASE WHEN v.included THEN v.new_text END,
               CASE WHEN v.included THEN v.session_text END,
               e.traceparent, 1, false, coalesce($1::timestamptz, now()), NULL::timestamptz, e.condition_error,
               false, NULL::text, v.included,
               -- A probe of the primary key per delivery: as a join, the generic plan walked every
               -- delivery of the subscription for each.
               (SELECT d.batch_id FROM trigger_events.deliveries d WHERE d.subscription_id = $3 AND d.event_id = l.event_id),
               false, NULL::bigint, NULL::bigint, v.unrenderable
        FROM unnest(coalesce(nullif(current_setting('{{LeasedEventsSetting}}', true), ''), '{}')::bigint[]) AS l(event_id)
        JOIN trigger_events.event_log e ON e.id = l.event_id
        {{InlineValues.Replace("$9", "$2", StringComparison.Ordinal)}}
        """;

    // The statements below find held rows by key and lease_owner alone: only in-flight rows
    // have an owner (recording and releasing clear it). A status condition would let the
    // planner pick the partial claim index, which cannot look rows up by event: with stale
    // statistics after a burst of captures, every result write then scanned the whole backlog.

    /// <summary>
    /// Applies results only where this owner still holds the lease for the attempt the result is
    /// of: a worker whose lease expired and was taken over cannot overwrite the newer owner's
    /// state, nor, when it took its own expired lease over (an outage longer than the lease),
    /// let the older attempt's result free the newer attempt's lease. Every attempt is recorded, once:
    /// when a write is tried again (<c>$12</c>) after one whose outcome was not known (the
    /// connection dropped, perhaps after the commit), an attempt this worker already recorded is
    /// not recorded again. A result of a batch split in two (<c>$14</c>, <see cref="DeliveryResult.SplitInto"/>)
    /// moves its delivery into its half and gives the attempt back.
    /// </summary>
    /// <remarks>
    /// A success applied to its delivery is recorded on that row alone (its <c>last_*</c> columns,
    /// migration 000028, which any other result clears): a row of attempts beside it cost about a
    /// tenth of the server's work per event. A success whose lease had moved on is logged, since
    /// the row is then another attempt's, and so is one of an earlier attempt that the same write
    /// carries beside its take-over's. Applied successes are left out by a <c>NOT IN</c> over the
    /// update's rows, which the planner hashes (with hash joins off, a join would compare every pair). Every result is added to its
    /// subscription's <c>attempt_counts</c> for this minute; a write tried again after an unknown
    /// outcome may add its results twice, one write more in a rate.
    /// </remarks>
    internal const string RecordSql = $"""
        WITH result AS (
            SELECT * FROM unnest($2::int[], $3::bigint[], $4::int[], $5::trigger_events.delivery_status[],
                                 $6::double precision[], $7::int[], $8::text[], $9::timestamptz[],
                                 $10::double precision[], $11::text[], $13::text[], $14::bigint[])
                AS r(subscription_id, event_id, attempt, status, retry_ms, http_status, error, started_at, duration_ms, excerpt, webhook_id, split_into)
        ), applied AS (
            UPDATE trigger_events.deliveries d
            SET status = r.status,
                batch_id = coalesce(r.split_into, d.batch_id),
                attempts = CASE WHEN r.split_into IS NULL THEN d.attempts ELSE d.attempts - 1 END,
                next_attempt_at = CASE WHEN r.status = 'pending'
                                       THEN now() + r.retry_ms * interval '1 millisecond'
                                       ELSE d.next_attempt_at END,
                lease_owner = NULL,
                last_status = r.http_status,
                last_error = r.error,
                delivered_at = CASE WHEN r.status = 'delivered' THEN now() END,
                last_started_at = CASE WHEN r.status = 'delivered' THEN r.started_at END,
                last_duration_ms = CASE WHEN r.status = 'delivered' THEN r.duration_ms END,
                last_webhook_id = CASE WHEN r.status = 'delivered' THEN r.webhook_id END,
                updated_at = now()
            FROM result r
            WHERE d.subscription_id = r.subscription_id AND d.event_id = r.event_id
              AND d.lease_owner = $1 AND d.attempts = r.attempt
              -- Tried again, a result the history holds already is not applied: the write before
              -- committed it (a failure, a split) or a replay logged it, and this worker may have
              -- claimed the row again since under the same attempt number, for a new request.
              AND NOT ($12 AND EXISTS (
                SELECT FROM trigger_events.attempts a
                WHERE a.subscription_id = r.subscription_id AND a.event_id = r.event_id
                  AND a.attempt = r.attempt AND a.started_at = r.started_at AND a.webhook_id IS NOT DISTINCT FROM r.webhook_id))
            RETURNING d.subscription_id, d.event_id, d.attempts
        ), logged AS (
            INSERT INTO trigger_events.attempts
                (subscription_id, event_id, attempt, started_at, duration_ms, http_status, error, response_excerpt, worker, webhook_id)
            SELECT r.subscription_id, r.event_id, r.attempt, r.started_at, r.duration_ms, r.http_status, r.error, r.excerpt, $1, r.webhook_id
            FROM result r
            WHERE (r.status <> 'delivered'
                   OR ((r.subscription_id, r.event_id, r.attempt) NOT IN (SELECT a.subscription_id, a.event_id, a.attempts FROM applied a)
                       -- Nor one that the write tried before applied.
                       AND NOT ($12 AND EXISTS (
                           SELECT FROM trigger_events.deliveries d
                           WHERE d.subscription_id = r.subscription_id AND d.event_id = r.event_id AND d.status = 'delivered'
                             AND d.attempts = r.attempt AND d.last_started_at = r.started_at))))
              AND (NOT $12 OR NOT EXISTS (
                SELECT FROM trigger_events.attempts a
                WHERE a.subscription_id = r.subscription_id AND a.event_id = r.event_id
                  -- An attempt given back by a split is numbered again, in a batch of another id.
                  -- By its start rather than its worker: a replay logs a success without one.
                  AND a.attempt = r.attempt AND a.started_at = r.started_at AND a.webhook_id IS NOT DISTINCT FROM r.webhook_id))
        ), counted AS (
            INSERT INTO trigger_events.attempt_counts AS c (subscription_id, minute, worker, attempts, failures)
            SELECT r.subscription_id, date_trunc('minute', now()), $1, count(*),
                   count(*) FILTER (WHERE r.http_status IS NULL OR r.http_status NOT BETWEEN 200 AND 299)
            FROM result r
            GROUP BY r.subscription_id
            ON CONFLICT (subscription_id, minute, worker)
            DO UPDATE SET attempts = c.attempts + EXCLUDED.attempts, failures = c.failures + EXCLUDED.failures
        )
        SELECT count(*) FROM applied
        """;

    // SKIP LOCKED: a row locked now is most often having its result recorded, which ends the
    // lease anyway. A fan-out (FOR SHARE on a key's latest unfinished delivery), a replay or
    // retention may hold one for a moment: it is left out, unconfirmed, and the worker extends it
    // again before its request if it needs to. Waiting for it instead deadlocked with the
    // recorder, which locks the same rows in another order.
    private const string ExtendSql = """
        WITH held AS (
            SELECT d.subscription_id, d.event_id
            FROM trigger_events.deliveries d
            JOIN unnest($2::int[], $3::bigint[], $4::int[]) AS k(subscription_id, event_id, attempt)
              ON d.subscription_id = k.subscription_id AND d.event_id = k.event_id
            WHERE d.lease_owner = $1 AND d.attempts = k.attempt
            FOR UPDATE OF d SKIP LOCKED
        )
        UPDATE trigger_events.deliveries d SET next_attempt_at = now() + $5, updated_at = now()
        FROM held
        WHERE d.subscription_id = held.subscription_id AND d.event_id = held.event_id
        RETURNING d.subscription_id, d.event_id
        """;

    // A released delivery whose request never started was not attempted, so its attempt is
    // given back. One whose request started keeps it: the receiver may have the event, and an
    // event that stalls every worker until SIGTERM must still run out of attempts.
    private const string ReleaseSql = """
        UPDATE trigger_events.deliveries d
        SET status = 'pending', lease_owner = NULL,
            attempts = CASE WHEN k.sent THEN d.attempts ELSE greatest(d.attempts - 1, 0) END,
            next_attempt_at = now(), updated_at = now()
        FROM unnest($2::int[], $3::bigint[], $4::int[], $5::boolean[]) AS k(subscription_id, event_id, attempt, sent)
        WHERE d.subscription_id = k.subscription_id AND d.event_id = k.event_id
          AND d.lease_owner = $1 AND d.attempts = k.attempt
        """;

    /// <summary>
    /// The values of one event too large to come with its claim, each with its length in
    /// UTF-8 first, so that the body can be made at its exact size before the values are read
    /// into it. Read as bytes (<see cref="Utf8Bytes"/>), since lengths in another server encoding would differ.
    /// </summary>
    private const string ReadValuesSql = $$"""
        SELECT octet_length(v.old), octet_length(v.new), octet_length(v.session), v.old, v.new, v.session
        FROM (SELECT convert_to(e.old_data::text, {{Utf8Bytes}}) AS old, convert_to(e.new_data::text, {{Utf8Bytes}}) AS new,
                     convert_to(e.session_variables::text, {{Utf8Bytes}}) AS session
              FROM trigger_events.event_log e WHERE e.id = $1 OFFSET 0) v
        """;

    /// <summary>
    /// Arms the idle flag, only when it is not armed, and never waiting for its row: the first
    /// capture after a worker said it was idle takes the flag (000003's wake_worker) and keeps
    /// its row locked until the writer's transaction ends, which may be minutes for a long job.
    /// Waiting stalled every round of every worker until its command timed out. A row locked now
    /// is being taken by that writer, whose NOTIFY wakes this worker; it says so again at its
    /// next empty round. Workers never clear the flag: the capture that takes it does (000024).
    /// </summary>
    private const string ArmIdleSql = """
        UPDATE trigger_events.worker_signal s SET idle = true, updated_at = now()
        WHERE s.singleton IN (SELECT w.singleton FROM trigger_events.worker_signal w
                              WHERE NOT w.idle FOR UPDATE SKIP LOCKED)
        """;

    /// <summary>
    /// The flag's hint, which capture reads before the flag (migration 000015), set to 1 whether
    /// or not the flag changed (a hint a capture left at 0 is 1 again once a worker says it is
    /// idle), but written only when it differs: a setval writes WAL every time, and an idle
    /// worker says so every poll interval.
    /// </summary>
    private const string ArmIdleHintSql = """
        SELECT pg_catalog.setval('trigger_events.worker_idle_hint', 1)
        WHERE pg_catalog.pg_sequence_last_value('trigger_events.worker_idle_hint') IS DISTINCT FROM 1
        """;

    /// <summary>
    /// The most bytes of JSON values (old row, new row, session variables together) an event may
    /// have to come with its claim. A claim of a full batch then reads at most a few megabytes
    /// however large the rows, and larger events are read one at a time, when there is room
    /// for their bodies (<see cref="ReadValuesAsync"/>). Typical rows are far below it.
    /// </summary>
    public const int InlineEventBytes = 64 * 1024;

    /// <summary>Fans the subscription's committed events out, then claims from the head of its queue, expired leases included.</summary>
    public async Task<IReadOnlyList<ClaimedDelivery>> ClaimAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, CancellationToken cancellationToken) =>
        (await ClaimAsync(subscriptionId, owner, limit, lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId], Math.Max(limit, 10_000)), InlineEventBytes, cancellationToken)).Deliveries;

    /// <summary>
    /// Claims pending deliveries after <paramref name="cursor"/> (see <see cref="ClaimSql"/>),
    /// and expired leases first when <paramref name="takeOverExpired"/>; returns them with the
    /// cursor the next claim resumes from.
    /// </summary>
    public async Task<ClaimBatch> ClaimAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, ClaimCursor cursor, bool takeOverExpired, CancellationToken cancellationToken) =>
        await ClaimAsync(subscriptionId, owner, limit, lease, cursor, takeOverExpired, fanOut: null, InlineEventBytes, cancellationToken);

    /// <summary>
    /// As above, after fanning out the events committed for <paramref name="fanOut"/>'s
    /// subscriptions (<see cref="FanOutSql"/>) in the same round trip and transaction. Events
    /// whose values are larger than <paramref name="includedBytes"/> (at most
    /// <see cref="InlineEventBytes"/>) come without them.
    /// </summary>
    public async Task<ClaimBatch> ClaimAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, ClaimCursor cursor, bool takeOverExpired, FanOutRequest? fanOut,
        int includedBytes, CancellationToken cancellationToken)
    {
        try
        {
            return await ClaimOnceAsync(subscriptionId, owner, limit, lease, cursor, takeOverExpired, fanOut, includedBytes, renderApart: false, cancellationToken);
        }
        catch (PostgresException e) when (IsUnrenderable(e))
        {
            // Nothing of the failed round trip was kept: it was one transaction.
            return await ClaimOnceAsync(subscriptionId, owner, limit, lease, cursor, takeOverExpired, fanOut, includedBytes, renderApart: true, cancellationToken);
        }
    }

    private async Task<ClaimBatch> ClaimOnceAsync(
        int subscriptionId, Guid owner, int limit, TimeSpan lease, ClaimCursor cursor, bool takeOverExpired, FanOutRequest? fanOut,
        int includedBytes, bool renderApart, CancellationToken cancellationToken)
    {
        // One round trip: a batch runs in one implicit transaction, each statement with its own snapshot.
        await using var batch = dataSource.CreateBatch();
        // The fan-out of a subscription without key ordering or protection goes after its claim
        // and leases what the claim left room for (FanOutLeasingSql); any other's goes first, so
        // the claim behind it takes what it made.
        var leasing = fanOut is not null && LeasesFromFanOut(subscriptionId);
        // A sweep makes due what a missed hand-off left parked: of any subscription, since one
        // no longer ordered keeps the parked deliveries it had (one index probe when none are).
        var unpark = cursor == ClaimCursor.Sweep;
        if (fanOut is not null || unpark)
        {
            // The pinned settings hold inside the function too: its statements run generic plans,
            // with sorts and hash and merge joins off as in the claim (it turns the scans it must
            // not use off itself). The lock below pins them too, but only when the subscription is
            // enabled; the fan-out serves the worker's other subscriptions either way.
            batch.BatchCommands.Add(new NpgsqlBatchCommand(PinPlanSql));
        }

        if (fanOut is not null && !leasing)
        {
            var fan = new NpgsqlBatchCommand(FanOutSql);
            fan.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = fanOut.SubscriptionIds });
            fan.Parameters.Add(new NpgsqlParameter<int> { TypedValue = fanOut.MaxEvents });
            batch.BatchCommands.Add(fan);
            AddFanOutContinues(batch, fanOut);
        }

        if (unpark)
        {
            var sweep = new NpgsqlBatchCommand(KeyOrdering.UnparkSql);
            sweep.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
            batch.BatchCommands.Add(sweep);
        }

        var now = Clock?.GetUtcNow();
        var lockSubscription = new NpgsqlBatchCommand(LockSubscriptionSql);
        lockSubscription.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        lockSubscription.Parameters.Add(new NpgsqlParameter<DateTimeOffset?> { TypedValue = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(lockSubscription);
        var command = new NpgsqlBatchCommand(renderApart ? ClaimSqlRenderingApart : ClaimSql);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        // $3 is rows (the scans' LIMIT), $10 requests: the same unless the subscription is batched.
        var batchMax = BatchedSubscriptions.TryGetValue(subscriptionId, out var max) ? max : (int?)null;
        var rows = Batches.Rows(limit, batchMax);
        // The rows a claim may bring at most, a key's followers included: what the values are shared over.
        var taken = batchMax is null && OrderedSubscriptions.Contains(subscriptionId) ? rows * (1 + KeyOrdering.FollowersPerRequest) : rows;
        var inlineBytes = Batches.InlineBytes(Math.Min(includedBytes, InlineEventBytes), limit, taken);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = rows });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = lease, NpgsqlDbType = NpgsqlDbType.Interval });
        // DateTimeOffset.MinValue is written as -infinity.
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = cursor.DueAt });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = cursor.EventId });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = takeOverExpired });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset> { TypedValue = cursor.ClaimedAt });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = inlineBytes });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = limit });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?> { TypedValue = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(command);
        var isProtected = ProtectedSubscriptions.Contains(subscriptionId);
        if (isProtected)
        {
            TargetProtectionQueries.AddState(batch, subscriptionId, now);
        }

        if (leasing)
        {
            var fan = new NpgsqlBatchCommand(FanOutLeasingSql);
            fan.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = fanOut!.SubscriptionIds });
            fan.Parameters.Add(new NpgsqlParameter<int> { TypedValue = fanOut.MaxEvents });
            fan.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
            fan.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
            fan.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = lease, NpgsqlDbType = NpgsqlDbType.Interval });
            fan.Parameters.Add(new NpgsqlParameter<DateTimeOffset?> { TypedValue = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            batch.BatchCommands.Add(fan);
            var read = new NpgsqlBatchCommand(renderApart ? LeasedSqlRenderingApart : LeasedSql);
            read.Parameters.Add(new NpgsqlParameter<DateTimeOffset?> { TypedValue = now, NpgsqlDbType = NpgsqlDbType.TimestampTz });
            read.Parameters.Add(new NpgsqlParameter<int> { TypedValue = inlineBytes });
            read.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
            batch.BatchCommands.Add(read);
            AddFanOutContinues(batch, fanOut);
        }

        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        var fanOutContinues = false;
        if (fanOut is not null || unpark)
        {
            // Past the settings (and the sweep's UPDATE, which returns no rows and is passed by).
            await reader.NextResultAsync(cancellationToken);
        }

        if (fanOut is not null && !leasing)
        {
            // Past how many deliveries the fan-out made (the claim below counts what it takes),
            // to whether its batch goes on.
            await reader.NextResultAsync(cancellationToken);
            fanOutContinues = await reader.ReadAsync(cancellationToken) && reader.GetBoolean(0);
            await reader.NextResultAsync(cancellationToken);
        }

        // No row: the subscription is paused or gone, and nothing of it is claimed.
        var claimedAt = await reader.ReadAsync(cancellationToken) ? reader.GetFieldValue<DateTimeOffset>(0) : cursor.ClaimedAt;
        await reader.NextResultAsync(cancellationToken);
        var claimed = new List<ClaimedDelivery>();
        while (await reader.ReadAsync(cancellationToken))
        {
            claimed.Add(ReadClaimed(reader, subscriptionId));
        }

        var protection = isProtected && await reader.NextResultAsync(cancellationToken)
            ? await TargetProtectionQueries.ReadStateAsync(reader, cancellationToken)
            : null;
        // The cursor follows the pending queue: what the fan-out leased never was in it.
        var next = cursor.After(claimed, claimedAt);
        var leased = 0;
        if (leasing)
        {
            // Past the setting of the leased ids, to the deliveries themselves.
            await reader.NextResultAsync(cancellationToken);
            await reader.NextResultAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                claimed.Add(ReadClaimed(reader, subscriptionId));
                leased++;
            }

            await reader.NextResultAsync(cancellationToken);
            fanOutContinues = await reader.ReadAsync(cancellationToken) && reader.GetBoolean(0);
        }

        return new ClaimBatch(claimed, next) { Protection = protection, FanOutContinues = fanOutContinues, FanOutLeased = leased };
    }

    /// <summary>
    /// Takes up to <c>$4</c> more of a key's deliveries onto its run after <c>$3</c> (held under
    /// attempt <c>$8</c>), leased to <c>$2</c> as the claim leases (attempt counted, the lease ending <c>$5</c> from now; see
    /// <see cref="KeyOrdering.RunTakenOn"/>), read as <see cref="ClaimSql"/> returns what it took
    /// (values up to <c>$6</c> bytes together).
    /// </summary>
    internal static readonly string TakeRunOnSql = $$"""
        WITH {{KeyOrdering.RunTakenOn}}, extended AS (
            UPDATE trigger_events.deliveries d
            SET status = 'in_flight', lease_owner = $2, attempts = d.attempts + 1,
                next_attempt_at = {{KeyOrdering.RunNow}} + $5, updated_at = {{KeyOrdering.RunNow}}
            FROM taken t
            WHERE d.subscription_id = $1 AND d.event_id = t.event_id
            RETURNING d.event_id, d.attempts, t.due_at, d.rescheduled_at, d.order_seq
        )
        SELECT c.event_id, e.captured_at, e.trigger_name, e.schema_name, e.table_name, e.op,
               v.old_bytes, v.new_bytes, v.session_bytes,
               CASE WHEN v.included THEN v.old_text END, CASE WHEN v.included THEN v.new_text END,
               CASE WHEN v.included THEN v.session_text END,
               e.traceparent, c.attempts, false, c.due_at, c.rescheduled_at, e.condition_error,
               false, NULL::text, v.included, NULL::bigint, true, NULL::bigint, c.order_seq, v.unrenderable
        FROM extended c
        LEFT JOIN trigger_events.event_log e ON e.id = c.event_id
        {{InlineValues.Replace("$9", "$6", StringComparison.Ordinal)}}
        """;

    // The statements that render events, as they are run again after a value could not be
    // rendered (RenderedApart). After the statements they are made from.
    private static readonly string ClaimSqlRenderingApart = RenderingApart(ClaimSql);
    private static readonly string LeasedSqlRenderingApart = RenderingApart(LeasedSql);
    private static readonly string TakeRunOnSqlRenderingApart = RenderingApart(TakeRunOnSql);

    /// <summary>
    /// Takes up to <paramref name="rows"/> more of a key's deliveries onto the run whose last
    /// member is <paramref name="last"/>, held under its attempt <paramref name="lastAttempt"/>
    /// (<see cref="TakeRunOnSql"/>), in the key's order.
    /// None when the key has nothing more ready or the run is no longer this worker's. Values
    /// come with them as with a claim of as many followers (<paramref name="includedBytes"/> at
    /// most, shared out as <see cref="Batches.InlineBytes"/> does).
    /// </summary>
    public async Task<List<ClaimedDelivery>> TakeRunOnAsync(
        Guid owner, DeliveryKey last, int lastAttempt, int rows, TimeSpan lease, int includedBytes, CancellationToken cancellationToken)
    {
        try
        {
            return await TakeRunOnOnceAsync(owner, last, lastAttempt, rows, lease, includedBytes, renderApart: false, cancellationToken);
        }
        catch (PostgresException e) when (IsUnrenderable(e))
        {
            return await TakeRunOnOnceAsync(owner, last, lastAttempt, rows, lease, includedBytes, renderApart: true, cancellationToken);
        }
    }

    private async Task<List<ClaimedDelivery>> TakeRunOnOnceAsync(
        Guid owner, DeliveryKey last, int lastAttempt, int rows, TimeSpan lease, int includedBytes, bool renderApart, CancellationToken cancellationToken)
    {
        var subscriptionId = last.SubscriptionId;
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(PinPlanSql));
        var command = new NpgsqlBatchCommand(renderApart ? TakeRunOnSqlRenderingApart : TakeRunOnSql);
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = subscriptionId });
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = last.EventId });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = rows });
        command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = lease, NpgsqlDbType = NpgsqlDbType.Interval });
        var requests = Math.Max(1, rows / (1 + KeyOrdering.FollowersPerRequest));
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = Batches.InlineBytes(Math.Min(includedBytes, InlineEventBytes), requests, rows) });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset?> { TypedValue = Clock?.GetUtcNow(), NpgsqlDbType = NpgsqlDbType.TimestampTz });
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = lastAttempt });
        batch.BatchCommands.Add(command);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        // Past the settings.
        await reader.NextResultAsync(cancellationToken);
        var taken = new List<ClaimedDelivery>();
        while (await reader.ReadAsync(cancellationToken))
        {
            taken.Add(ReadClaimed(reader, subscriptionId));
        }

        taken.Sort(ClaimedDelivery.InKeyOrder);
        return taken;
    }

    /// <summary>
    /// A subscription whose fan-out may lease (migrations 000013 and 000014): no key ordering,
    /// rate limit or breaker by this worker's configuration; batched or not. The database checks
    /// the subscription's row as well, and leases nothing for any other.
    /// </summary>
    private bool LeasesFromFanOut(int subscriptionId) =>
        !ProtectedSubscriptions.Contains(subscriptionId) && !OrderedSubscriptions.Contains(subscriptionId);

    private static void AddFanOutContinues(NpgsqlBatch batch, FanOutRequest fanOut)
    {
        var continues = new NpgsqlBatchCommand(FanOutContinuesSql);
        continues.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = fanOut.SubscriptionIds });
        batch.BatchCommands.Add(continues);
    }

    /// <summary>
    /// Reads the values of an event too large to come with its claim straight into the places
    /// <paramref name="placeValues"/> gives for their exact lengths (in UTF-8): the body of its
    /// request, made once at its size. False when the event is no longer in the log.
    /// </summary>
    /// <exception cref="InvalidDataException">A value is not what <paramref name="placeValues"/> made room for.</exception>
    public async Task<bool> ReadValuesAsync(long eventId, Func<EventSizes, ValuePlaces> placeValues, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(ReadValuesSql);
        command.Parameters.Add(new NpgsqlParameter<long> { TypedValue = eventId });
        // Sequential: a value is copied from the socket into its place, never buffered whole.
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return false;
        }

        var sizes = new EventSizes(
            await reader.IsDBNullAsync(0, cancellationToken) ? null : reader.GetInt32(0),
            await reader.IsDBNullAsync(1, cancellationToken) ? null : reader.GetInt32(1),
            await reader.IsDBNullAsync(2, cancellationToken) ? null : reader.GetInt32(2));
        var places = placeValues(sizes);
        await ReadValueAsync(reader, 3, places.Old, cancellationToken);
        await ReadValueAsync(reader, 4, places.New, cancellationToken);
        await ReadValueAsync(reader, 5, places.Session, cancellationToken);
        return true;
    }

    private static async Task ReadValueAsync(NpgsqlDataReader reader, int ordinal, IReadOnlyList<Memory<byte>>? place, CancellationToken cancellationToken)
    {
        if (await reader.IsDBNullAsync(ordinal, cancellationToken))
        {
            if (place is not null)
            {
                throw new InvalidDataException(FormattableString.Invariant($"Value {ordinal - 2} of 3 was read as NULL where its length was given."));
            }

            return;
        }

        if (place is null)
        {
            throw new InvalidDataException(FormattableString.Invariant($"Value {ordinal - 2} of 3 was not NULL where no room was made for it."));
        }

        await using var stream = await reader.GetStreamAsync(ordinal, cancellationToken);
        foreach (var piece in place)
        {
            await stream.ReadExactlyAsync(piece, cancellationToken);
        }

        if (stream.ReadByte() >= 0)
        {
            throw new InvalidDataException(FormattableString.Invariant($"Value {ordinal - 2} of 3 is longer than its length."));
        }
    }

    /// <summary>One claimed row (see <see cref="ClaimSql"/>'s last SELECT for the columns).</summary>
    private static ClaimedDelivery ReadClaimed(NpgsqlDataReader reader, int subscriptionId)
    {
        var eventId = reader.GetInt64(0);
        var attempt = reader.GetInt32(13);
        var tookOver = reader.GetBoolean(14);
        var dueAt = reader.GetFieldValue<DateTimeOffset>(15);
        var rescheduled = !reader.IsDBNull(16);
        if (reader.GetBoolean(18) || reader.IsDBNull(1))
        {
            // Dead-lettered by the claim, or leased but its event is gone: no event to read.
            var placeholder = new WebhookEvent(eventId, default, "", "", "", "", null, null, null, null);
            return new ClaimedDelivery(subscriptionId, placeholder, attempt, tookOver, dueAt, rescheduled)
            {
                BatchId = reader.IsDBNull(21) ? null : reader.GetInt64(21),
                TakenAlong = reader.GetBoolean(22),
                RunId = reader.IsDBNull(23) ? null : reader.GetInt64(23),
                OrderSeq = reader.IsDBNull(24) ? null : reader.GetInt64(24),
                DeadAtClaim = reader.GetBoolean(18) ? reader.GetString(19) : null,
                EventGone = !reader.GetBoolean(18),
                ValuesIncluded = false,
            };
        }

        var sizes = new EventSizes(NullableInt(reader, 6), NullableInt(reader, 7), NullableInt(reader, 8));
        var included = reader.GetBoolean(20);
        Utf8Json? oldRow = null, newRow = null, sessionVariables = null;
        PooledBytes? values = null;
        if (included && sizes.Total > 0)
        {
            // One pooled array for the three values until the body is written.
            values = new PooledBytes(System.Buffers.ArrayPool<byte>.Shared.Rent((int)sizes.Total));
            var at = 0;
            oldRow = CopyValue(reader, 9, sizes.Old, values.Array, ref at);
            newRow = CopyValue(reader, 10, sizes.New, values.Array, ref at);
            sessionVariables = CopyValue(reader, 11, sizes.Session, values.Array, ref at);
        }

        var webhookEvent = new WebhookEvent(
            Id: eventId,
            CapturedAt: reader.GetFieldValue<DateTimeOffset>(1),
            TriggerName: reader.GetString(2),
            TableSchema: reader.GetString(3),
            TableName: reader.GetString(4),
            Operation: reader.GetString(5),
            OldRow: oldRow,
            NewRow: newRow,
            SessionVariables: sessionVariables,
            TraceParent: reader.IsDBNull(12) ? null : reader.GetString(12),
            ConditionError: reader.IsDBNull(17) ? null : reader.GetString(17));
        return new ClaimedDelivery(subscriptionId, webhookEvent, attempt, tookOver, dueAt, rescheduled)
        {
            BatchId = reader.IsDBNull(21) ? null : reader.GetInt64(21),
            TakenAlong = reader.GetBoolean(22),
            RunId = reader.IsDBNull(23) ? null : reader.GetInt64(23),
            OrderSeq = reader.IsDBNull(24) ? null : reader.GetInt64(24),
            Sizes = sizes,
            ValuesIncluded = included,
            Values = values,
            Unrenderable = reader.IsDBNull(25) ? null : reader.GetString(25),
        };
    }

    private static int? NullableInt(NpgsqlDataReader reader, int ordinal) => reader.IsDBNull(ordinal) ? null : reader.GetInt32(ordinal);

    private static Utf8Json? CopyValue(NpgsqlDataReader reader, int ordinal, int? length, byte[] into, ref int at)
    {
        if (length is not { } bytes)
        {
            return null;
        }

        var copied = (int)reader.GetBytes(ordinal, 0, into, at, bytes);
        var value = new Utf8Json(into.AsMemory(at, copied));
        at += copied;
        return value;
    }

    /// <summary>
    /// Records results; returns how many were applied (the rest had lost their lease, or their
    /// lease had moved on to a newer attempt).
    /// <paramref name="writtenBefore"/>: an earlier write of these results failed without a
    /// known outcome, so some may be recorded already (see <see cref="RecordSql"/>).
    /// </summary>
    public Task<int> RecordAsync(Guid owner, IReadOnlyList<DeliveryResult> results, bool writtenBefore, CancellationToken cancellationToken) =>
        RecordAsync(owner, results, writtenBefore, opened: null, cancellationToken);

    /// <summary>
    /// As above; results with a <see cref="DeliveryResult.Target"/> signal also move their
    /// subscription's breaker and hold in the same round trip and transaction
    /// (<see cref="TargetProtectionQueries.RecordSql"/>), and the circuits this opened are added to
    /// <paramref name="opened"/>.
    /// </summary>
    public async Task<int> RecordAsync(
        Guid owner, IReadOnlyList<DeliveryResult> results, bool writtenBefore, ICollection<CircuitOpened>? opened, CancellationToken cancellationToken)
    {
        if (results.Count == 0)
        {
            return 0;
        }

        // One round trip, one implicit transaction: the plan settings, then the write.
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(PinPlanSql));
        var command = new NpgsqlBatchCommand(RecordSql);
        batch.BatchCommands.Add(command);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. results.Select(r => r.Key.SubscriptionId)] });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. results.Select(r => r.Key.EventId)] });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. results.Select(r => r.Attempt)] });
        command.Parameters.Add(new NpgsqlParameter<string[]> { TypedValue = [.. results.Select(r => StatusName(r.Kind))], NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<double[]> { TypedValue = [.. results.Select(r => r.RetryDelay.TotalMilliseconds)] });
        command.Parameters.Add(new NpgsqlParameter<int?[]> { TypedValue = [.. results.Select(r => r.HttpStatus)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. results.Select(r => AsText(r.Error))] });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset[]> { TypedValue = [.. results.Select(r => r.StartedAt)] });
        command.Parameters.Add(new NpgsqlParameter<double[]> { TypedValue = [.. results.Select(r => r.Duration.TotalMilliseconds)] });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. results.Select(r => AsText(r.ResponseExcerpt))] });
        command.Parameters.Add(new NpgsqlParameter<bool> { TypedValue = writtenBefore });
        command.Parameters.Add(new NpgsqlParameter<string?[]> { TypedValue = [.. results.Select(r => r.WebhookId)], NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        command.Parameters.Add(new NpgsqlParameter<long?[]> { TypedValue = [.. results.Select(r => r.SplitInto)], NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
        var finishedInKeys = results.Where(r => r.Keyed && r.Kind != DeliveryResultKind.Retry).Select(r => r.Key).ToArray();
        if (finishedInKeys.Length > 0)
        {
            // A statement of its own, after the write: see KeyOrdering.HandOffSql.
            batch.BatchCommands.Add(HandOff(finishedInKeys));
        }

        var protectedResults = TargetProtectionQueries.TryAddRecord(batch, results, writtenBefore);
        await using var reader = await batch.ExecuteReaderAsync(cancellationToken);
        await reader.NextResultAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var applied = (int)reader.GetInt64(0);
        if (protectedResults)
        {
            await reader.NextResultAsync(cancellationToken);
            await TargetProtectionQueries.ReadRecordAsync(reader, opened, cancellationToken);
        }

        return applied;
    }

    /// <summary>
    /// Hands on the keys of deliveries finished without a result write: those a claim
    /// dead-lettered because their attempts were spent. After the claim's commit, so that it sees
    /// what a fan-out parked behind them meanwhile (<see cref="KeyOrdering.HandOffSql"/>).
    /// </summary>
    public async Task HandOffAsync(IReadOnlyList<DeliveryKey> finished, CancellationToken cancellationToken)
    {
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(PinPlanSql));
        batch.BatchCommands.Add(HandOff(finished));
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    private static NpgsqlBatchCommand HandOff(IReadOnlyList<DeliveryKey> finished)
    {
        var command = new NpgsqlBatchCommand(KeyOrdering.HandOffSql);
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. finished.Select(k => k.SubscriptionId)] });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. finished.Select(k => k.EventId)] });
        return command;
    }

    /// <summary>
    /// Pushes the lease of deliveries still in progress forward; returns those it extended. One
    /// left out is no longer this worker's under that attempt (its lease lapsed and another
    /// worker took it over, or its result was recorded), or was locked at that moment.
    /// </summary>
    public async Task<HashSet<DeliveryKey>> ExtendLeasesAsync(Guid owner, IReadOnlyCollection<HeldLease> held, TimeSpan lease, CancellationToken cancellationToken)
    {
        var extended = new HashSet<DeliveryKey>();
        if (held.Count == 0)
        {
            return extended;
        }

        await using var command = LeasesCommand(ExtendSql, owner, held, lease);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            extended.Add(new DeliveryKey(reader.GetInt32(0), reader.GetInt64(1)));
        }

        return extended;
    }

    /// <summary>
    /// Gives back deliveries this worker will not attempt to the end (shutdown); an attempt whose
    /// request never started is given back too (see <see cref="ReleaseSql"/>).
    /// </summary>
    public Task ReleaseAsync(Guid owner, IReadOnlyCollection<HeldLease> held, CancellationToken cancellationToken) =>
        held.Count == 0 ? Task.CompletedTask : ReleaseLeasesAsync(owner, held, cancellationToken);

    /// <summary>
    /// Says this worker is idle: the next capture sends a wake-up (it takes the flag and its
    /// hint as it does). Returns whether the flag was not armed before.
    /// </summary>
    public async Task<bool> ArmWakeUpAsync(CancellationToken cancellationToken)
    {
        // One round trip. The hint is not transactional and is visible at once, the flag at the
        // commit: a capture in between reads the flag as it was, which the armed look covers
        // (DeliveryWorker).
        await using var batch = dataSource.CreateBatch();
        batch.BatchCommands.Add(new NpgsqlBatchCommand(ArmIdleHintSql));
        var flag = new NpgsqlBatchCommand(ArmIdleSql);
        batch.BatchCommands.Add(flag);
        await batch.ExecuteNonQueryAsync(cancellationToken);
        return flag.RecordsAffected > 0;
    }

    private async Task ReleaseLeasesAsync(Guid owner, IReadOnlyCollection<HeldLease> held, CancellationToken cancellationToken)
    {
        await using var command = LeasesCommand(ReleaseSql, owner, held, lease: null);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>A statement over held leases: extended by <paramref name="lease"/>, or released (with whether each was sent).</summary>
    private NpgsqlCommand LeasesCommand(string sql, Guid owner, IReadOnlyCollection<HeldLease> held, TimeSpan? lease)
    {
        var command = dataSource.CreateCommand(sql);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = owner });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. held.Select(h => h.Key.SubscriptionId)] });
        command.Parameters.Add(new NpgsqlParameter<long[]> { TypedValue = [.. held.Select(h => h.Key.EventId)] });
        command.Parameters.Add(new NpgsqlParameter<int[]> { TypedValue = [.. held.Select(h => h.Attempt)] });
        if (lease is { } duration)
        {
            command.Parameters.Add(new NpgsqlParameter<TimeSpan> { TypedValue = duration, NpgsqlDbType = NpgsqlDbType.Interval });
        }
        else
        {
            command.Parameters.Add(new NpgsqlParameter<bool[]> { TypedValue = [.. held.Select(h => h.Sent)] });
        }

        return command;
    }

    /// <summary>
    /// PostgreSQL text cannot hold U+0000, which a receiver's response body may contain: one such
    /// excerpt would fail the write of its whole batch of results, on every retry.
    /// </summary>
    private static string? AsText(string? value) => value?.Replace("\0", "\uFFFD", StringComparison.Ordinal);

    private static string StatusName(DeliveryResultKind kind) => kind switch
    {
        DeliveryResultKind.Delivered => "delivered",
        DeliveryResultKind.Retry => "pending",
        DeliveryResultKind.Dead => "dead",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };
}
