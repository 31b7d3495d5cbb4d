using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>The claim/record queries, driven directly: leases, owners, take-over, release.</summary>
public sealed class DeliveryStoreTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);
    private TestDatabase database = null!;
    // The worker's role, which the worker, replay and the console run as.
    private Npgsql.NpgsqlDataSource asWorker = null!;
    private DeliveryStore store = null!;
    private int subscriptionId;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);
        store = new DeliveryStore(asWorker);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        subscriptionId = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('hook', 'orders_changed', 100) RETURNING id");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1, 10) g");
        await database.FanOutAsync();
    }

    [TearDown]
    public async Task DropDatabase()
    {
        await asWorker.DisposeAsync();
        await database.DisposeAsync();
    }

    private static DeliveryResult Delivered(ClaimedDelivery claimed) =>
        new(claimed.Key, claimed.Attempt, DeliveryResultKind.Delivered, TimeSpan.Zero, 200, null, DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(3), "ok");

    [Test]
    public async Task A_claim_leases_deliveries_to_one_owner_and_counts_the_attempt()
    {
        var first = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 4, Lease, CancellationToken.None);
        var second = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(first, Has.Count.EqualTo(4));
        Assert.That(first.Select(c => c.Attempt), Is.All.EqualTo(1));
        Assert.That(second, Has.Count.EqualTo(6), "held deliveries are not claimed again");
        Assert.That(first.Select(c => c.Event.Id).Intersect(second.Select(c => c.Event.Id)), Is.Empty);
        Assert.That(first[0].Event.NewRow.ToString(), Does.Contain("\"id\""));
    }

    [Test]
    public async Task Results_are_recorded_only_by_the_owner_of_the_lease()
    {
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, owner, 2, Lease, CancellationToken.None);

        var stranger = await store.RecordAsync(Guid.NewGuid(), [.. claimed.Select(Delivered)], writtenBefore: false, CancellationToken.None);
        var rightful = await store.RecordAsync(owner, [.. claimed.Select(Delivered)], writtenBefore: false, CancellationToken.None);

        Assert.That(stranger, Is.Zero);
        Assert.That(rightful, Is.EqualTo(2));
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered' AND last_started_at IS NOT NULL"),
            Is.EqualTo(2), "the owner's successes are recorded on their deliveries");
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempts"), Is.EqualTo(2),
            "the stranger's are logged, the deliveries being another attempt's");
        Assert.That(await database.ScalarAsync<long>("SELECT sum(attempts)::bigint FROM trigger_events.attempt_counts"), Is.EqualTo(4), "every attempt is counted");
    }

    [Test]
    public async Task A_success_is_recorded_on_its_delivery_and_a_failure_as_an_attempt()
    {
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, owner, 2, Lease, CancellationToken.None);
        var started = new DateTimeOffset(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);
        var failed = new DeliveryResult(
            claimed[1].Key, claimed[1].Attempt, DeliveryResultKind.Retry, TimeSpan.FromSeconds(30), 503, "HTTP 503", started, TimeSpan.FromMilliseconds(7), "busy");

        await store.RecordAsync(owner, [Delivered(claimed[0]) with { StartedAt = started }, failed], writtenBefore: false, CancellationToken.None);

        Assert.That(
            await database.ScalarAsync<string>(
                "SELECT concat_ws(',', status, attempts, last_status, last_started_at = $2, last_duration_ms) FROM trigger_events.deliveries WHERE event_id = $1",
                claimed[0].Event.Id, started),
            Is.EqualTo("delivered,1,200,t,3"));
        Assert.That(
            await database.ScalarAsync<string>("SELECT string_agg(concat_ws(',', event_id, http_status, response_excerpt), ';') FROM trigger_events.attempts"),
            Is.EqualTo($"{claimed[1].Event.Id},503,busy"), "the failure only");
        await using (var history = asWorker.CreateCommand(
            "SELECT string_agg(concat_ws(',', event_id, attempt, http_status, worker IS NULL), ';' ORDER BY event_id) FROM trigger_events.attempt_history"))
        {
            Assert.That(
                await history.ExecuteScalarAsync(),
                Is.EqualTo($"{claimed[0].Event.Id},1,200,t;{claimed[1].Event.Id},1,503,f"),
                "the history the worker's role reads: the success from its row (no worker), the failure from attempts");
        }

        Assert.That(
            await database.ScalarAsync<string>("SELECT concat_ws(',', attempts, failures) FROM trigger_events.attempt_counts WHERE worker = $1", owner),
            Is.EqualTo("2,1"));
    }

    [Test]
    public async Task A_replay_logs_the_success_it_schedules_again_so_the_history_keeps_it()
    {
        var owner = Guid.NewGuid();
        var claimed = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();
        await store.RecordAsync(owner, [Delivered(claimed)], writtenBefore: false, CancellationToken.None);

        var replayed = await Operations.Replay.RunAsync(
            asWorker, "hook", null, DateTimeOffset.UnixEpoch, null, claimed.Event.Id, null, CancellationToken.None);
        var again = (await store.ClaimAsync(subscriptionId, owner, 10, Lease, CancellationToken.None)).Single(c => c.Event.Id == claimed.Event.Id);
        await store.RecordAsync(owner, [Delivered(again)], writtenBefore: false, CancellationToken.None);

        Assert.That(replayed.Scheduled, Is.EqualTo(1));
        var history = await Operations.ConsoleQueries.EventAttemptsAsync(asWorker, claimed.Event.Id, CancellationToken.None);
        Assert.That(history, Has.Count.EqualTo(2), "the first success, logged by the replay, and the second, on the delivery");
        Assert.That(history.Select(a => (a.Attempt, a.HttpStatus, a.DurationMs)), Is.All.EqualTo((1, (int?)200, 3.0)));
    }

    [Test]
    public async Task A_write_tried_again_after_a_replay_logged_its_success_does_not_log_it_again()
    {
        // The write committed but its reply was lost; a replay then logged the success and
        // scheduled the delivery again before the worker wrote the same result again.
        var owner = Guid.NewGuid();
        var claimed = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();
        var success = Delivered(claimed);
        await store.RecordAsync(owner, [success], writtenBefore: false, CancellationToken.None);
        await Operations.Replay.RunAsync(asWorker, "hook", null, DateTimeOffset.UnixEpoch, null, claimed.Event.Id, null, CancellationToken.None);

        var again = await store.RecordAsync(owner, [success], writtenBefore: true, CancellationToken.None);

        Assert.That(again, Is.Zero);
        Assert.That(
            (await Operations.ConsoleQueries.EventAttemptsAsync(asWorker, claimed.Event.Id, CancellationToken.None)).Select(a => a.Attempt),
            Is.EqualTo(new[] { 1 }), "the success once, as the replay logged it");
    }

    [Test]
    public async Task A_write_tried_again_after_a_replay_leaves_the_new_claim_of_the_same_attempt_alone()
    {
        // The write committed but its reply was lost; a replay scheduled the delivery again and
        // this worker claimed it, attempt 1 again, before it wrote the old result again.
        var owner = Guid.NewGuid();
        var claimed = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();
        var success = Delivered(claimed);
        await store.RecordAsync(owner, [success], writtenBefore: false, CancellationToken.None);
        await Operations.Replay.RunAsync(asWorker, "hook", null, DateTimeOffset.UnixEpoch, null, claimed.Event.Id, null, CancellationToken.None);
        var again = (await store.ClaimAsync(subscriptionId, owner, 10, Lease, CancellationToken.None)).Single(c => c.Event.Id == claimed.Event.Id);

        var stale = await store.RecordAsync(owner, [success], writtenBefore: true, CancellationToken.None);

        Assert.That((again.Attempt, stale), Is.EqualTo((1, 0)), "the same attempt number, and the old result not applied to it");
        Assert.That(
            await database.ScalarAsync<string>(
                "SELECT concat_ws(',', status, attempts, lease_owner = $2) FROM trigger_events.deliveries WHERE event_id = $1", claimed.Event.Id, owner),
            Is.EqualTo("in_flight,1,t"), "the replayed delivery is still leased for its new request");

        Assert.That(await store.RecordAsync(owner, [Delivered(again) with { StartedAt = success.StartedAt.AddSeconds(1) }], writtenBefore: false, CancellationToken.None), Is.EqualTo(1));
        Assert.That(
            (await Operations.ConsoleQueries.EventAttemptsAsync(asWorker, claimed.Event.Id, CancellationToken.None)).Select(a => a.Attempt),
            Is.EqualTo(new[] { 1, 1 }), "the success before the replay, once, and the new request's");
    }

    [Test]
    public async Task A_write_tried_again_after_an_unknown_outcome_logs_each_attempt_once()
    {
        // The first write committed but its reply was lost: the worker writes the same results
        // again, with one more that arrived meanwhile.
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, owner, 4, Lease, CancellationToken.None);
        var results = claimed.Take(2).Select(Delivered)
            .Append(new DeliveryResult(claimed[2].Key, 1, DeliveryResultKind.Retry, TimeSpan.FromSeconds(30), 500, "HTTP 500", DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(5), "no"))
            .ToList();
        await store.RecordAsync(owner, results, writtenBefore: false, CancellationToken.None);

        var again = await store.RecordAsync(owner, [.. results, Delivered(claimed[3])], writtenBefore: true, CancellationToken.None);

        Assert.That(again, Is.EqualTo(1), "only the new result is applied");
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.attempts"), Is.EqualTo(1),
            "the failure is logged once, and no success is logged beside its delivery");
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'delivered' AND last_started_at IS NOT NULL"),
            Is.EqualTo(3));
    }

    [Test]
    public async Task An_expired_lease_is_taken_over_and_the_old_owner_cannot_overwrite_the_new_one()
    {
        var crashed = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, crashed, 1, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE status = 'in_flight'");

        var rescuer = Guid.NewGuid();
        var rescued = await store.ClaimAsync(subscriptionId, rescuer, 1, Lease, CancellationToken.None);
        var late = await store.RecordAsync(crashed, [Delivered(claimed[0])], writtenBefore: false, CancellationToken.None);

        Assert.That(rescued.Single().Event.Id, Is.EqualTo(claimed[0].Event.Id));
        Assert.That(rescued[0].TookOverExpiredLease, Is.True);
        Assert.That(rescued[0].Attempt, Is.EqualTo(2));
        Assert.That(late, Is.Zero);
        Assert.That(await store.RecordAsync(rescuer, [Delivered(rescued[0])], writtenBefore: false, CancellationToken.None), Is.EqualTo(1));
    }

    [Test]
    public async Task A_retry_is_due_again_only_after_its_delay_and_keeps_the_attempt_count()
    {
        var owner = Guid.NewGuid();
        var claimed = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();
        await store.RecordAsync(owner, [Delivered(claimed) with { Kind = DeliveryResultKind.Retry, RetryDelay = TimeSpan.FromHours(1), HttpStatus = 503, Error = "HTTP 503" }], writtenBefore: false, CancellationToken.None);

        var others = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() WHERE event_id = $1", claimed.Event.Id);
        var again = await store.ClaimAsync(subscriptionId, owner, 100, Lease, CancellationToken.None);

        Assert.That(others.Select(c => c.Event.Id), Does.Not.Contain(claimed.Event.Id));
        Assert.That(again.Single().Attempt, Is.EqualTo(2));
        Assert.That(await database.ScalarAsync<long>("SELECT retrying FROM trigger_events.subscription_status"), Is.Zero, "the retry is in flight again");
    }

    [Test]
    public async Task Released_deliveries_are_pending_again_with_their_attempt_given_back()
    {
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, owner, 3, Lease, CancellationToken.None);

        await store.ReleaseAsync(owner, [.. claimed.Select(c => c.Lease(sent: false))], CancellationToken.None);

        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'pending' AND attempts = 0"), Is.EqualTo(10));
    }

    [Test]
    public async Task Extending_a_lease_pushes_its_expiry_forward_for_the_owner_only()
    {
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, owner, 1, TimeSpan.FromSeconds(5), CancellationToken.None);

        await store.ExtendLeasesAsync(Guid.NewGuid(), [claimed[0].Lease(sent: true)], TimeSpan.FromHours(1), CancellationToken.None);
        var afterStranger = await database.ScalarAsync<double>("SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM trigger_events.deliveries WHERE status = 'in_flight'");
        await store.ExtendLeasesAsync(owner, [claimed[0].Lease(sent: true)], TimeSpan.FromHours(1), CancellationToken.None);
        var afterOwner = await database.ScalarAsync<double>("SELECT extract(epoch FROM next_attempt_at - now())::float8 FROM trigger_events.deliveries WHERE status = 'in_flight'");

        Assert.That(afterStranger, Is.LessThanOrEqualTo(5));
        Assert.That(afterOwner, Is.GreaterThan(3000));
    }

    [Test]
    public async Task A_claim_reads_only_the_rows_it_claims_however_long_the_delivered_history()
    {
        // 20,000 delivered deliveries of history, 10 pending.
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 21000) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered' WHERE event_id > 10");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.deliveries");

        var plan = await ClaimPlanAsync();

        Assert.That(plan, Has.None.Contains("Seq Scan on deliveries"), string.Join('\n', plan));
        Assert.That(plan, Has.Some.Contains("Index Scan using deliveries_pending"), string.Join('\n', plan));
        Assert.That(await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None), Has.Count.EqualTo(10));
    }

    [Test]
    public async Task A_claim_right_after_a_burst_walks_the_index_in_order_instead_of_sorting_the_backlog()
    {
        // Statistics from an empty queue, then a burst the planner has not seen: it once chose a
        // bitmap scan of the whole backlog and an on-disk sort to find the oldest few.
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        await database.ExecuteAsync("ANALYZE trigger_events.deliveries");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 31000) g");
        await database.FanOutAsync();

        var plan = await ClaimPlanAsync();

        Assert.That(plan, Has.None.Contains("Bitmap").And.None.Contains("Seq Scan on deliveries"), string.Join('\n', plan));
        Assert.That(ClaimPlans.SortsOverTables(plan), Is.Empty, string.Join('\n', plan));
        Assert.That(plan, Has.Some.Contains("Index Scan using deliveries_pending"), string.Join('\n', plan));
    }

    [Test]
    public async Task The_generic_plan_the_worker_runs_walks_the_index_in_order_after_a_burst_too()
    {
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        await database.ExecuteAsync("ANALYZE trigger_events.deliveries");
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 31000) g");
        await database.FanOutAsync();
        await using var connection = await database.DataSource.OpenConnectionAsync();
        await using (var settings = new Npgsql.NpgsqlCommand(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off; SET enable_hashjoin = off; SET enable_mergejoin = off", connection))
        {
            await settings.ExecuteNonQueryAsync();
        }

        var plan = await GenericPlan.ExplainAsync(connection, DeliveryStore.ClaimSql,
            ("int", subscriptionId.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("uuid", $"'{Guid.NewGuid()}'"), ("int", "100"),
            ("interval", "'1 minute'"), ("timestamptz", "'-infinity'"), ("bigint", "0"), ("boolean", "true"), ("timestamptz", "'-infinity'"),
            ("int", DeliveryStore.InlineEventBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("int", "100"), ("timestamptz", "NULL"));

        Assert.That(plan, Has.None.Contains("Bitmap").And.None.Contains("Seq Scan on deliveries"), string.Join('\n', plan));
        Assert.That(ClaimPlans.SortsOverTables(plan), Is.Empty, string.Join('\n', plan));
        Assert.That(plan, Has.Some.Contains("Index Scan using deliveries_pending"), string.Join('\n', plan));
    }

    [Test]
    public async Task The_in_flight_count_reads_leases_only_not_the_pending_backlog()
    {
        // 30,000 retries due in an hour: the count for max_in_flight must not walk them.
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 31000) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET attempts = 1, next_attempt_at = now() + interval '1 hour'");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.deliveries");

        var plan = await ClaimPlanAsync();

        var aggregate = plan.FindIndex(l => l.Contains("Aggregate", StringComparison.Ordinal));
        Assert.That(plan[aggregate + 1], Does.Contain("using deliveries_leased"), string.Join('\n', plan));
        Assert.That(plan.Count(l => l.Contains("deliveries_pending", StringComparison.Ordinal)), Is.EqualTo(1), "only the due scan reads pending rows");
    }

    [Test]
    public async Task A_cursor_claim_resumes_after_the_last_row_it_took_in_queue_order()
    {
        var owner = Guid.NewGuid();
        var (first, cursor) = await store.ClaimAsync(subscriptionId, owner, 4, Lease, ClaimCursor.Sweep, takeOverExpired: true, CancellationToken.None);
        var rest = await ClaimAfterAsync(owner, cursor);

        Assert.That(first.Select(c => c.Event.Id), Is.EqualTo(new long[] { 1, 2, 3, 4 }));
        Assert.That((cursor.DueAt, cursor.EventId), Is.EqualTo((first[3].DueAt, 4L)));
        Assert.That(cursor.ClaimedAt, Is.GreaterThanOrEqualTo(first[3].DueAt), "the claim's own time by the database clock");
        Assert.That(rest.Select(c => c.Event.Id), Is.EquivalentTo(new long[] { 5, 6, 7, 8, 9, 10 }));
    }

    [Test]
    public async Task A_late_commit_behind_the_cursor_is_claimed_at_once_if_recent_and_by_the_next_sweep_otherwise()
    {
        // A drained queue: the cursor is at rows captured just now.
        var owner = Guid.NewGuid();
        var cursor = await ClaimAllAsync(owner);
        // Two transactions commit now that captured before the cursor's rows: one 100 ms before
        // (within the commit window), one an hour before (a long batch job).
        await CaptureLateAsync(11, cursor.DueAt, "100 milliseconds");
        await CaptureLateAsync(12, cursor.DueAt, "1 hour");

        var byCursor = await ClaimAfterAsync(owner, cursor);
        var (bySweep, _) = await store.ClaimAsync(subscriptionId, owner, 100, Lease, ClaimCursor.Sweep, takeOverExpired: false, CancellationToken.None);

        Assert.That(byCursor.Select(c => c.Event.Id), Is.EqualTo(new long[] { 11 }));
        Assert.That(bySweep.Select(c => c.Event.Id), Is.EqualTo(new long[] { 12 }));
    }

    [Test]
    public async Task A_late_commit_behind_the_cursor_is_claimed_by_the_next_claim_however_long_after_the_previous_one()
    {
        // The worker claimed everything, then waited (idle, or a poll interval) for longer than
        // the commit window. Meanwhile a transaction that was open during that claim, and had
        // captured just before the cursor's rows, committed.
        var owner = Guid.NewGuid();
        var cursor = await ClaimAllAsync(owner);
        await CaptureLateAsync(11, cursor.DueAt, "1 millisecond");
        await Task.Delay(TimeSpan.FromSeconds(1.5)); // longer than the commit window

        var byCursor = await ClaimAfterAsync(owner, cursor);

        Assert.That(byCursor.Select(c => c.Event.Id), Is.EqualTo(new long[] { 11 }));
    }

    [Test]
    public async Task Deep_in_a_backlog_a_cursor_claim_still_takes_what_commits_late_ahead_of_the_cursor()
    {
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 hour'");
        var owner = Guid.NewGuid();
        var (_, cursor) = await store.ClaimAsync(subscriptionId, owner, 5, Lease, ClaimCursor.Sweep, takeOverExpired: true, CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders VALUES (11)");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '30 minutes' WHERE event_id = 11");

        var byCursor = await ClaimAfterAsync(owner, cursor);

        Assert.That(byCursor.Select(c => c.Event.Id), Is.EqualTo(new long[] { 6, 7, 8, 9, 10, 11 }));
    }

    [Test]
    public async Task Expired_leases_are_taken_over_only_when_the_claim_asks()
    {
        var crashed = Guid.NewGuid();
        var cursor = await ClaimAllAsync(crashed);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second'");

        var rescuer = Guid.NewGuid();
        var (notAsked, _) = await store.ClaimAsync(subscriptionId, rescuer, 10, Lease, cursor, takeOverExpired: false, CancellationToken.None);
        var (asked, _) = await store.ClaimAsync(subscriptionId, rescuer, 10, Lease, cursor, takeOverExpired: true, CancellationToken.None);

        Assert.That(notAsked, Is.Empty);
        Assert.That(asked, Has.Count.EqualTo(1).And.All.Matches<ClaimedDelivery>(c => c.TookOverExpiredLease));
    }

    [Test]
    public async Task Expired_leases_are_taken_over_one_at_a_time_with_nothing_pending_beside_them()
    {
        // The event of an expired lease may be what killed its worker: it is sent alone.
        var crashed = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, crashed, 3, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE status = 'in_flight'");

        var rescuer = Guid.NewGuid();
        var rounds = new List<long[]>();
        for (var round = 0; round < 4; round++)
        {
            var (taken, _) = await store.ClaimAsync(subscriptionId, rescuer, 10, Lease, ClaimCursor.Sweep, takeOverExpired: true, CancellationToken.None);
            rounds.Add([.. taken.Select(c => c.TookOverExpiredLease ? c.Event.Id : -c.Event.Id)]);
        }

        var firstThree = claimed.Select(c => c.Event.Id).ToArray();
        Assert.That(rounds.Take(3).Select(r => r.Single()), Is.EquivalentTo(firstThree), "each expired lease in a claim of its own");
        Assert.That(rounds[3], Has.Length.EqualTo(7).And.All.LessThan(0), "then the pending ones, none taken over");
    }

    [Test]
    public async Task A_cursor_claim_does_not_walk_the_index_entries_left_by_rows_claimed_before_it()
    {
        // A backlog of 20,000 captured an hour ago, 15,000 of them already claimed: their entries
        // stay in the pending index, dead, until vacuum.
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 21000) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 hour'");
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 100000");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.deliveries");
        var owner = Guid.NewGuid();
        var cursor = ClaimCursor.Sweep;
        for (var i = 0; i < 150; i++)
        {
            (_, cursor) = await store.ClaimAsync(subscriptionId, owner, 100, Lease, cursor, takeOverExpired: false, CancellationToken.None);
        }

        var cursorPlan = await ClaimPlanAsync(cursor, analyze: true);
        var headPlan = await ClaimPlanAsync(ClaimCursor.Sweep, analyze: true);
        var fromCursor = PendingScanBuffers(cursorPlan);
        var fromHead = PendingScanBuffers(headPlan);

        Assert.That(fromCursor, Is.LessThan(10), "pages read by the cursor claim's pending scan");
        Assert.That(fromHead, Is.GreaterThan(fromCursor * 4), "pages read by a sweep over the same queue");
    }

    [Test]
    public async Task Subscription_status_counts_each_state_from_its_index_not_the_delivered_history()
    {
        // 20,000 delivered, then of the 10 first: 2 in flight, 1 retrying, 1 dead, 6 pending.
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 21000) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered' WHERE event_id > 10");
        await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 2, Lease, CancellationToken.None);
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET attempts = 1 WHERE event_id = 3");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'dead' WHERE event_id = 4");
        // The place in the log as the fan-out takes it on a busy server, with a transaction in
        // progress (here one that captured nothing): the count of events not yet fanned out
        // looks that transaction's events up, and must do so by index, not by walking the log.
        var running = await database.ScalarAsync<string>("SELECT pg_current_xact_id()::text");
        await database.ExecuteAsync($"UPDATE trigger_events.subscription_positions SET position = '{running}:{long.Parse(running, System.Globalization.CultureInfo.InvariantCulture) + 1}:{running}'");
        await database.ExecuteAsync("VACUUM ANALYZE trigger_events.deliveries, trigger_events.event_log");

        var counts = await database.ScalarAsync<string>(
            "SELECT concat_ws(',', pending, retrying, in_flight, dead, oldest_pending_captured_at IS NOT NULL) FROM trigger_events.subscription_status");
        List<string> plan;
        await using (var command = database.DataSource.CreateCommand("EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM trigger_events.subscription_status"))
        await using (var reader = await command.ExecuteReaderAsync())
        {
            plan = await ReadPlanAsync(reader);
        }

        // The rows come from a function, whose buffers the plan's top node counts.
        var buffers = System.Text.RegularExpressions.Regex.Matches(plan.First(l => l.TrimStart().StartsWith("Buffers:", StringComparison.Ordinal)), @"(hit|read)=(\d+)")
            .Sum(m => int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
        var historyPages = await database.ScalarAsync<long>("SELECT (pg_relation_size('trigger_events.deliveries') + pg_relation_size('trigger_events.event_log')) / 8192");
        Assert.That(counts, Is.EqualTo("6,1,2,1,t"));
        Assert.That(buffers, Is.LessThan(historyPages / 4), $"pages read of {historyPages}: the delivered history is not scanned\n{string.Join('\n', plan)}");
        Assert.That(plan, Has.None.Contains("JIT"), "compiling the view cost two seconds of CPU at every metrics refresh");
    }

    [Test]
    public async Task The_result_of_an_older_attempt_does_not_end_the_lease_its_own_worker_took_over()
    {
        // An outage longer than the lease: the worker's lease expired while its request ran, and
        // the same worker took it over again and sent a second request. The first request's
        // result must not free the delivery while the second is still running.
        var owner = Guid.NewGuid();
        var first = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE status = 'in_flight'");
        var second = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();

        var late = await store.RecordAsync(owner, [Delivered(first)], writtenBefore: false, CancellationToken.None);
        await store.ExtendLeasesAsync(owner, [first.Lease(sent: true)], TimeSpan.FromSeconds(1), CancellationToken.None);
        await store.ReleaseAsync(owner, [first.Lease(sent: false)], CancellationToken.None);
        var row = await database.ScalarAsync<string>(
            "SELECT concat_ws(',', status, attempts, lease_owner = $1, next_attempt_at > now() + interval '30 seconds') FROM trigger_events.deliveries WHERE event_id = $2",
            owner, first.Event.Id);
        var current = await store.RecordAsync(owner, [Delivered(second)], writtenBefore: false, CancellationToken.None);

        Assert.That((second.Event.Id, second.Attempt, second.TookOverExpiredLease), Is.EqualTo((first.Event.Id, 2, true)));
        Assert.That(late, Is.Zero, "the first attempt's result");
        Assert.That(row, Is.EqualTo("in_flight,2,t,t"), "still leased to the second attempt, its lease neither shortened nor released");
        Assert.That(current, Is.EqualTo(1));
        var history = await Operations.ConsoleQueries.EventAttemptsAsync(asWorker, first.Event.Id, CancellationToken.None);
        Assert.That(
            history.Select(a => (a.Attempt, a.HttpStatus)), Is.EquivalentTo(new[] { (1, (int?)200), (2, 200) }),
            "both attempts are recorded: the late one logged, the current one on its delivery");
    }

    [Test]
    public async Task A_late_success_written_with_its_take_over_s_result_is_kept_in_the_history()
    {
        // The same worker's first attempt answered after its lease had expired and been taken
        // over by its second: both results reach the same write.
        var owner = Guid.NewGuid();
        var first = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE status = 'in_flight'");
        var second = (await store.ClaimAsync(subscriptionId, owner, 1, Lease, CancellationToken.None)).Single();

        var applied = await store.RecordAsync(owner, [Delivered(first), Delivered(second)], writtenBefore: false, CancellationToken.None);

        Assert.That(applied, Is.EqualTo(1));
        var history = await Operations.ConsoleQueries.EventAttemptsAsync(asWorker, first.Event.Id, CancellationToken.None);
        Assert.That(history.Select(a => a.Attempt), Is.EquivalentTo(new[] { 1, 2 }), "the first logged, the second on its delivery");
    }

    [Test]
    public async Task A_lease_that_expired_on_the_last_attempt_is_dead_lettered_by_the_claim_not_taken_again()
    {
        // Every worker that takes this event is killed before it records a result.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_attempts = 2");
        var expire = "UPDATE trigger_events.deliveries SET next_attempt_at = now() - interval '1 second' WHERE status = 'in_flight'";
        var attempts = new List<int>();
        for (var crash = 0; crash < 2; crash++)
        {
            attempts.Add((await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 1, Lease, CancellationToken.None)).Single().Attempt);
            await database.ExecuteAsync(expire);
        }

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 1, Lease, CancellationToken.None);
        var row = await database.ScalarAsync<string>(
            "SELECT concat_ws(',', status, attempts, lease_owner IS NULL, last_status IS NULL) FROM trigger_events.deliveries WHERE event_id = $1", claimed.Single().Event.Id);

        Assert.That(attempts, Is.EqualTo(new[] { 1, 2 }));
        Assert.That(claimed.Single().DeadAtClaim, Does.StartWith("gave up after 2 attempts; the last one ended without a result"));
        Assert.That(row, Is.EqualTo("dead,2,t,t"), "max_attempts is never passed");
        Assert.That(await database.ScalarAsync<long>("SELECT in_flight FROM trigger_events.subscription_status"), Is.Zero);
    }

    [Test]
    public async Task A_release_gives_back_the_attempt_of_a_request_that_never_started_only()
    {
        var owner = Guid.NewGuid();
        var claimed = await store.ClaimAsync(subscriptionId, owner, 2, Lease, CancellationToken.None);

        await store.ReleaseAsync(owner, [claimed[0].Lease(sent: true), claimed[1].Lease(sent: false)], CancellationToken.None);

        Assert.That(
            await database.ScalarAsync<string>("SELECT string_agg(concat_ws(':', status, attempts), ',' ORDER BY event_id) FROM trigger_events.deliveries WHERE event_id = ANY ($1)",
                claimed.Select(c => c.Event.Id).ToArray()),
            Is.EqualTo("pending:1,pending:0"), "a request that started may have reached the receiver: its attempt counts");
    }

    [Test]
    public async Task A_large_event_is_claimed_with_its_sizes_only_and_read_apart_into_place()
    {
        await database.ExecuteAsync("ALTER TABLE orders ADD COLUMN note text");
        await database.ExecuteAsync("INSERT INTO orders VALUES (100, repeat('é', 40000))");
        await database.ExecuteAsync("UPDATE orders SET note = note || '!' WHERE id = 100");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        await database.FanOutAsync();

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 10, Lease, CancellationToken.None);
        var oldText = """{"id": 100, "note": "@"}""".Replace("@", new string('é', 40000), StringComparison.Ordinal);
        var newText = oldText.Replace("\"}", "!\"}", StringComparison.Ordinal);
        var (insert, update) = (claimed[0], claimed[1]);
        byte[]? readOld = null, readNew = null;
        var found = await store.ReadValuesAsync(
            update.Event.Id,
            sizes => new ValuePlaces([readOld = new byte[sizes.Old!.Value]], [(readNew = new byte[sizes.New!.Value]).AsMemory(0, 1000), readNew.AsMemory(1000)], null),
            CancellationToken.None);

        Assert.That(claimed.Select(c => c.ValuesIncluded), Is.EqualTo(new[] { false, false }), "80,000 bytes of UTF-8 is more than comes with a claim");
        Assert.That(update.Event.OldRow, Is.Null);
        Assert.That(update.Event.NewRow, Is.Null);
        Assert.That(insert.Sizes, Is.EqualTo(new EventSizes(null, System.Text.Encoding.UTF8.GetByteCount(oldText), null)));
        Assert.That(update.Sizes, Is.EqualTo(new EventSizes(System.Text.Encoding.UTF8.GetByteCount(oldText), System.Text.Encoding.UTF8.GetByteCount(newText), null)));
        Assert.That(found, Is.True);
        Assert.That(System.Text.Encoding.UTF8.GetString(readOld!), Is.EqualTo(oldText));
        Assert.That(System.Text.Encoding.UTF8.GetString(readNew!), Is.EqualTo(newText));
    }

    [Test]
    public async Task An_event_that_renders_over_1_GB_is_claimed_as_unrenderable_beside_the_others()
    {
        // 8,200 numbers of 131,072 digits each, stored in a few bytes apiece: a small row whose
        // JSON text would be over the 1 GB PostgreSQL can make. The claim that renders it fails,
        // and is run again with each event rendered apart (render_values, 000031).
        await database.ExecuteAsync("ALTER TABLE orders ADD COLUMN doc jsonb");
        await database.ExecuteAsync("UPDATE trigger_events.deliveries SET status = 'delivered'");
        await database.ExecuteAsync("INSERT INTO orders SELECT 100, jsonb_agg('1e131071'::numeric) FROM generate_series(1, 8200)");
        await database.ExecuteAsync("INSERT INTO orders VALUES (101, '[1]')");
        await database.FanOutAsync();

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 10, Lease, CancellationToken.None);

        Assert.That(await database.ScalarAsync<int>("SELECT pg_column_size(new_data) FROM trigger_events.event_log ORDER BY id DESC OFFSET 1 LIMIT 1"), Is.LessThan(1 << 20),
            "stored in under a MiB");
        Assert.That(claimed.Select(c => c.Unrenderable is null), Is.EqualTo(new[] { false, true }));
        Assert.That(claimed[0].Unrenderable, Does.Contain("out of memory").Or.Contain("enlarge string buffer"), claimed[0].Unrenderable);
        Assert.That((claimed[0].ValuesIncluded, claimed[0].Event.NewRow), Is.EqualTo((false, (Core.Delivery.Utf8Json?)null)));
        Assert.That(claimed[1].Event.NewRow.ToString(), Is.EqualTo("""{"id": 101, "doc": [1]}"""), "the other event comes with its values");
    }

    [Test]
    public async Task A_small_event_comes_with_its_claim_as_UTF8_with_its_sizes()
    {
        var claimed = (await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 1, Lease, CancellationToken.None)).Single();

        Assert.That(claimed.ValuesIncluded, Is.True);
        Assert.That(claimed.Event.NewRow.ToString(), Is.EqualTo("""{"id": 1}"""));
        Assert.That(claimed.Sizes, Is.EqualTo(new EventSizes(null, 9, null)));
        Assert.That(claimed.Event.OldRow, Is.Null);
    }

    [Test]
    public async Task A_delivery_whose_event_was_deleted_by_hand_is_claimed_as_gone_not_lost_in_flight()
    {
        await database.ExecuteAsync("DELETE FROM trigger_events.event_log WHERE id = 1");

        var claimed = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, CancellationToken.None);

        Assert.That(claimed, Has.Count.EqualTo(10));
        Assert.That(claimed.Where(c => c.EventGone).Select(c => c.Event.Id), Is.EqualTo(new long[] { 1 }));
        Assert.That(await store.ReadValuesAsync(1, _ => default, CancellationToken.None), Is.False);
    }

    /// <summary>Claims everything due (the 10 rows of the set-up) and returns the cursor after it.</summary>
    private async Task<ClaimCursor> ClaimAllAsync(Guid owner)
    {
        var (claimed, cursor) = await store.ClaimAsync(subscriptionId, owner, 100, Lease, ClaimCursor.Sweep, takeOverExpired: true, CancellationToken.None);
        Assert.That(claimed, Has.Count.EqualTo(10), "the set-up's rows");
        return cursor;
    }

    /// <summary>A cursor claim of up to 100, expired leases left alone.</summary>
    private async Task<IReadOnlyList<ClaimedDelivery>> ClaimAfterAsync(Guid owner, ClaimCursor cursor) =>
        (await store.ClaimAsync(subscriptionId, owner, 100, Lease, cursor, takeOverExpired: false, CancellationToken.None)).Deliveries;

    /// <summary>
    /// Captures and commits order <paramref name="id"/> now, as if its transaction had started
    /// <paramref name="before"/> (an interval) before <paramref name="time"/>.
    /// </summary>
    private async Task CaptureLateAsync(int id, DateTimeOffset time, string before)
    {
        await database.ExecuteAsync($"INSERT INTO orders VALUES ({id})");
        await database.FanOutAsync();
        await database.ExecuteAsync(
            $"UPDATE trigger_events.deliveries SET next_attempt_at = $1::timestamptz - interval '{before}' WHERE event_id = {id}", time);
    }

    private static int PendingScanBuffers(List<string> plan)
    {
        var scan = plan.FindIndex(l => l.Contains("Index Scan using deliveries_pending", StringComparison.Ordinal));
        var buffers = plan.Skip(scan + 1).First(l => l.TrimStart().StartsWith("Buffers:", StringComparison.Ordinal));
        return System.Text.RegularExpressions.Regex.Matches(buffers, @"(hit|read)=(\d+)").Sum(m => int.Parse(m.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture));
    }

    /// <summary>The claim's plan, with the settings the claim's own transaction runs it under.</summary>
    private async Task<List<string>> ClaimPlanAsync(ClaimCursor? from = null, bool analyze = false)
    {
        var cursor = from ?? ClaimCursor.Sweep;
        await using var batch = database.DataSource.CreateBatch();
        var lockSubscription = new Npgsql.NpgsqlBatchCommand(DeliveryStore.LockSubscriptionSql);
        lockSubscription.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = subscriptionId });
        // The database's clock, as in production.
        lockSubscription.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset?> { TypedValue = null, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(lockSubscription);
        // ANALYZE runs the claim (and rolls nothing back): only where the test is done claiming.
        var explain = new Npgsql.NpgsqlBatchCommand((analyze ? "EXPLAIN (ANALYZE, BUFFERS) " : "EXPLAIN ") + DeliveryStore.ClaimSql);
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = subscriptionId });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<Guid> { TypedValue = Guid.NewGuid() });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = 100 });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<TimeSpan> { TypedValue = Lease, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Interval });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset> { TypedValue = cursor.DueAt });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<long> { TypedValue = cursor.EventId });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<bool> { TypedValue = true });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset> { TypedValue = cursor.ClaimedAt });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = DeliveryStore.InlineEventBytes });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<int> { TypedValue = 100 });
        explain.Parameters.Add(new Npgsql.NpgsqlParameter<DateTimeOffset?> { TypedValue = null, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.TimestampTz });
        batch.BatchCommands.Add(explain);
        await using var reader = await batch.ExecuteReaderAsync();
        await reader.NextResultAsync();
        return await ReadPlanAsync(reader);
    }

    /// <summary>The lines of an EXPLAIN the reader is positioned on.</summary>
    private static async Task<List<string>> ReadPlanAsync(Npgsql.NpgsqlDataReader reader)
    {
        var plan = new List<string>();
        while (await reader.ReadAsync())
        {
            plan.Add(reader.GetString(0));
        }

        return plan;
    }

    [Test]
    public async Task A_result_write_finds_its_rows_by_key_even_before_the_backlog_is_analyzed()
    {
        // A burst of captures right after the table was last analyzed: the state in which a
        // status condition once made the planner scan the claim index for every result.
        await database.ExecuteAsync("INSERT INTO orders SELECT g FROM generate_series(1000, 21000) g");
        await database.FanOutAsync();

        await using var connection = await database.DataSource.OpenConnectionAsync();
        var plan = await GenericPlan.ExplainAsync(connection, DeliveryStore.RecordSql,
            ("uuid", $"'{Guid.NewGuid()}'"), ("int[]", $"'{{{subscriptionId},{subscriptionId}}}'"), ("bigint[]", "'{1,2}'"), ("int[]", "'{1,1}'"),
            ("text[]", "'{delivered,delivered}'"), ("float8[]", "'{0,0}'"), ("int[]", "'{200,200}'"), ("text[]", "'{NULL,NULL}'"),
            ("timestamptz[]", "ARRAY[now(), now()]"), ("float8[]", "'{1,1}'"), ("text[]", "'{NULL,NULL}'"), ("boolean", "true"), ("text[]", "'{NULL,NULL}'"),
            ("bigint[]", "'{NULL,NULL}'"));

        Assert.That(plan, Has.Some.Contains("deliveries_pkey"), string.Join('\n', plan));
        Assert.That(plan, Has.None.Contains("deliveries_pending").And.None.Contains("deliveries_leased").And.None.Contains("Seq Scan on deliveries"), string.Join('\n', plan));
    }

    [Test]
    public async Task The_worker_role_arms_the_idle_flag_and_its_hint_together_and_the_capture_that_takes_it_takes_both()
    {
        await using var asWorker = Npgsql.NpgsqlDataSource.Create(database.WorkerConnectionString);
        var worker = new DeliveryStore(asWorker);
        // As a capture that took the flag leaves them.
        await database.ExecuteAsync("UPDATE trigger_events.worker_signal SET idle = false; SELECT setval('trigger_events.worker_idle_hint', 0)");
        const string Signal = "SELECT idle::text || ' ' || pg_sequence_last_value('trigger_events.worker_idle_hint') FROM trigger_events.worker_signal";

        var armed = await worker.ArmWakeUpAsync(CancellationToken.None);
        var idle = await database.ScalarAsync<string>(Signal);
        var armedAgain = await worker.ArmWakeUpAsync(CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders (id) VALUES (9001)");
        var taken = await database.ScalarAsync<string>(Signal);

        Assert.That((armed, idle, armedAgain, taken), Is.EqualTo((true, "true 1", false, "false 0")));
    }

    [Test]
    public async Task The_idle_flag_is_written_only_when_it_changes()
    {
        await store.ArmWakeUpAsync(CancellationToken.None);
        var changed = await database.ScalarAsync<DateTime>("SELECT updated_at FROM trigger_events.worker_signal");
        await store.ArmWakeUpAsync(CancellationToken.None);

        Assert.That(await database.ScalarAsync<bool>("SELECT idle FROM trigger_events.worker_signal"), Is.True);
        Assert.That(await database.ScalarAsync<DateTime>("SELECT updated_at FROM trigger_events.worker_signal"), Is.EqualTo(changed));
    }
}
