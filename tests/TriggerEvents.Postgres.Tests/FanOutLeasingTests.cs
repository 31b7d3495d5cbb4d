using TriggerEvents.Postgres.Migrations;
using Npgsql;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The fan-out behind the claim of a subscription without key ordering or protection makes what
/// the claim left room for already leased (migration 000013), in whole batches for a batched one
/// (000014), run as the worker's role.
/// </summary>
public sealed class FanOutLeasingTests
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);
    private TestDatabase database = null!;
    private NpgsqlDataSource asWorker = null!;
    private DeliveryStore store = null!;
    private int subscriptionId;

    [SetUp]
    public async Task CreateDatabase()
    {
        database = await TestDatabase.CreateAsync();
        asWorker = NpgsqlDataSource.Create(database.WorkerConnectionString);
        store = new DeliveryStore(asWorker);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, customer int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        subscriptionId = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('hook', 'orders_changed', 100) RETURNING id");
        // Ten made pending by a fan-out of their own, thirty not yet fanned out.
        await database.ExecuteAsync("INSERT INTO orders SELECT g, g % 3 FROM generate_series(1, 10) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("INSERT INTO orders SELECT g, g % 3 FROM generate_series(11, 40) g");
    }

    [TearDown]
    public async Task DropDatabase()
    {
        await asWorker.DisposeAsync();
        await database.DisposeAsync();
    }

    private Task<ClaimBatch> ClaimAsync(Guid owner, int limit) =>
        store.ClaimAsync(subscriptionId, owner, limit, Lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId], 400), DeliveryStore.InlineEventBytes, CancellationToken.None);

    private Task<long> CountAsync(string condition) =>
        database.ScalarAsync<long>($"SELECT count(*) FROM trigger_events.deliveries WHERE {condition}");

    [Test]
    public async Task The_claim_takes_the_pending_first_and_the_fan_out_leases_the_rest_of_its_room()
    {
        var owner = Guid.NewGuid();

        var batch = await ClaimAsync(owner, 25);

        Assert.That(batch.Deliveries.Select(d => d.Event.Id), Is.EquivalentTo(Enumerable.Range(1, 25).Select(i => (long)i)),
            "the ten pending, then the fifteen oldest not yet made");
        Assert.That(batch.FanOutLeased, Is.EqualTo(15));
        Assert.That(batch.Deliveries.Select(d => d.Attempt), Is.All.EqualTo(1));
        Assert.That(batch.Deliveries.All(d => d.ValuesIncluded && d.Event.NewRow.ToString()!.Contains("\"customer\"")), Is.True,
            "leased deliveries come with their event as claimed ones do");
        Assert.That(await CountAsync($"status = 'in_flight' AND lease_owner = '{owner}' AND attempts = 1"), Is.EqualTo(25));
        Assert.That(await CountAsync("status = 'pending'"), Is.Zero,
            "alone at its place, it reads only what it has room for: the rest waits in the log, not as pending rows");
        Assert.That(await NotFannedOutAsync(), Is.EqualTo(15));
        Assert.That(batch.Next.EventId, Is.EqualTo(10), "the cursor follows the pending queue only");
    }

    [Test]
    public async Task Leased_deliveries_are_recorded_and_the_next_claim_leases_the_rest()
    {
        var owner = Guid.NewGuid();
        var first = await ClaimAsync(owner, 25);
        var recorded = await store.RecordAsync(owner, [.. first.Deliveries.Select(Delivered)], writtenBefore: false, CancellationToken.None);
        await database.ExecuteAsync("INSERT INTO orders SELECT g, 0 FROM generate_series(41, 50) g");

        var second = await ClaimAsync(owner, 100);
        var third = await ClaimAsync(owner, 100);

        Assert.That(recorded, Is.EqualTo(25));
        Assert.That(second.Deliveries.Select(d => d.Event.Id), Is.EquivalentTo(Enumerable.Range(26, 15).Select(i => (long)i)),
            "the rest of the transaction the first round read part of");
        Assert.That(third.Deliveries.Select(d => d.Event.Id), Is.EquivalentTo(Enumerable.Range(41, 10).Select(i => (long)i)), "the new ones");
        Assert.That(second.FanOutLeased + third.FanOutLeased, Is.EqualTo(25));
        Assert.That(await CountAsync("status = 'delivered' AND attempts = 1 AND last_status = 200 AND last_started_at IS NOT NULL"), Is.EqualTo(25),
            "every success is recorded on its delivery");
    }

    [Test]
    public async Task Max_in_flight_holds_for_leased_deliveries_across_owners()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 12");

        var first = await ClaimAsync(Guid.NewGuid(), 100);
        var second = await ClaimAsync(Guid.NewGuid(), 100);

        Assert.That(first.Deliveries, Has.Count.EqualTo(12));
        Assert.That(first.FanOutLeased, Is.EqualTo(2));
        Assert.That(second.Deliveries, Is.Empty);
        Assert.That(await CountAsync("status = 'in_flight'"), Is.EqualTo(12));
        Assert.That(await CountAsync("status = 'pending'"), Is.EqualTo(28),
            "at max_in_flight the claim offers no room, and the fan-out makes the rest pending, as before");
    }

    [Test]
    public async Task A_small_room_does_not_slow_the_fan_out_of_the_other_subscriptions_at_its_place()
    {
        // A second subscription at the same place in the log, ordered by key: one read of the log
        // serves both, and the plain one has room for two.
        var other = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, ordering_key) VALUES ('ordered', 'orders_changed', '{customer}') RETURNING id");
        await database.ExecuteAsync(
            """
            UPDATE trigger_events.subscription_positions o
            SET position = h.position, batch_end = h.batch_end, batch_after_xid = h.batch_after_xid, batch_after_id = h.batch_after_id
            FROM trigger_events.subscription_positions h WHERE o.subscription_id = $1 AND h.subscription_id = $2
            """, other, subscriptionId);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 12 WHERE id = $1", subscriptionId);

        var batch = await store.ClaimAsync(subscriptionId, Guid.NewGuid(), 100, Lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId, other], 400), DeliveryStore.InlineEventBytes, CancellationToken.None);

        Assert.That(batch.FanOutLeased, Is.EqualTo(2));
        Assert.That(
            await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE subscription_id = $1", other), Is.EqualTo(30),
            "a claim's worth of the log read at least, for the ordered one too");
        Assert.That(await CountAsync($"subscription_id = {subscriptionId} AND status = 'pending'"), Is.EqualTo(28));
    }

    [Test]
    public async Task A_subscription_the_database_knows_as_ordered_is_not_leased_whatever_the_worker_thinks()
    {
        // This worker's file says plain; the subscription's row, which another worker's file
        // wrote, says ordered by key: the row decides.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET ordering_key = '{customer}'");

        var batch = await ClaimAsync(Guid.NewGuid(), 100);

        Assert.That(batch.FanOutLeased, Is.Zero);
        Assert.That(await CountAsync("status = 'in_flight' AND event_id > 10"), Is.Zero);
        Assert.That(await CountAsync("status = 'pending' AND event_id > 10"), Is.EqualTo(30), "made pending for the next claim");
    }

    [Test]
    public async Task A_caller_leasing_an_ordered_subscription_still_gets_its_deliveries_keyed()
    {
        // An ordered subscription alone at its place, given room by a caller that does not know
        // it is ordered, as the worker's role: the fan-out's statement for plain places (000020) is
        // not for it.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET ordering_key = '{customer}'");

        await using var asCaller = asWorker.CreateCommand($"""
            DO $$
            BEGIN
                PERFORM set_config('trigger_events.lease_room', '100', true);
                PERFORM trigger_events.fan_out(ARRAY[{subscriptionId}], 400, {subscriptionId}, gen_random_uuid(), now() + interval '1 minute');
            END
            $$
            """);
        await asCaller.ExecuteNonQueryAsync();

        Assert.That(await CountAsync("event_id > 10"), Is.EqualTo(30));
        Assert.That(await CountAsync("event_id > 10 AND (order_key IS NULL OR order_seq IS NULL)"), Is.Zero, "every delivery has its key");
    }

    [Test]
    public async Task An_event_a_replay_made_already_is_not_leased_and_takes_no_room()
    {
        // Event 13's delivery was made before the fan-out reached it: it stays as it is; the
        // room goes to the others, and the chunk stops after the room's last event.
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.deliveries (subscription_id, event_id, next_attempt_at) VALUES ($1, 13, now() + interval '1 hour')",
            subscriptionId);

        var batch = await ClaimAsync(Guid.NewGuid(), 25);

        Assert.That(batch.FanOutLeased, Is.EqualTo(14));
        Assert.That(batch.Deliveries.Select(d => d.Event.Id),
            Is.EquivalentTo(Enumerable.Range(1, 25).Where(i => i != 13).Select(i => (long)i)));
        Assert.That(await CountAsync("event_id = 13 AND status = 'pending' AND lease_owner IS NULL"), Is.EqualTo(1));
        Assert.That(await NotFannedOutAsync(), Is.EqualTo(15), "26 to 40 wait in the log");
    }

    [Test]
    public async Task A_subscription_held_back_by_a_retry_after_leases_nothing()
    {
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET held_until = now() + interval '1 hour'");

        var batch = await ClaimAsync(Guid.NewGuid(), 100);

        Assert.That(batch.Deliveries, Is.Empty);
        Assert.That(await CountAsync("status = 'in_flight'"), Is.Zero);
    }

    [Test]
    public async Task Without_the_claims_room_the_fan_out_leases_nothing()
    {
        // Called on its own (no claim before it in the transaction): it makes pending rows, as
        // fan_out(int[], int) does.
        var leased = await database.ScalarAsync<long[]>(
            "SELECT leased FROM trigger_events.fan_out(ARRAY[$1], 400, $1, gen_random_uuid(), now() + interval '1 minute')", subscriptionId);

        Assert.That(leased, Is.Empty);
        Assert.That(await CountAsync("status = 'pending'"), Is.EqualTo(40));
    }

    [Test]
    public async Task Every_delivery_the_fan_out_leases_comes_back_to_the_worker_while_writers_commit()
    {
        // Writers commit all the time, so some commit between the start of the statement that
        // calls the fan-out and the fan-out's own snapshot: their events are leased, and must come
        // back with the round, or they would wait for the lease to expire.
        // Room for all that is new, so that an event committed in that window is among those leased.
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 10000");
        var owner = Guid.NewGuid();
        using var stop = new CancellationTokenSource();
        var writers = Enumerable.Range(0, 2).Select(w => Task.Run(async () =>
        {
            for (var id = 1_000 + (w * 1_000_000); !stop.IsCancellationRequested; id++)
            {
                await database.ExecuteAsync("INSERT INTO orders VALUES ($1, 0)", id);
            }
        })).ToList();
        var returned = new HashSet<long>();
        var leasedByFanOut = 0;
        try
        {
            for (var round = 0; round < 300; round++)
            {
                var batch = await ClaimAsync(owner, 1_000);
                returned.UnionWith(batch.Deliveries.Select(d => d.Event.Id));
                leasedByFanOut += batch.FanOutLeased;
                await store.RecordAsync(owner, [.. batch.Deliveries.Select(Delivered)], writtenBefore: false, CancellationToken.None);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(writers);
        }

        var leased = await database.ScalarAsync<long[]>(
            "SELECT coalesce(array_agg(event_id), '{}') FROM trigger_events.deliveries WHERE status <> 'pending'");
        Assert.That(leasedByFanOut, Is.GreaterThan(1_000), "the rounds leased from the fan-out");
        Assert.That(leased.Except(returned), Is.Empty, "leased but never returned: left to wait for the lease to expire");
        Assert.That(await CountAsync("status = 'in_flight'"), Is.Zero, "every delivery returned was recorded");
    }

    [Test]
    public async Task A_batched_subscription_is_leased_whole_batches_named_by_their_first_event()
    {
        // Batches of four that wait an hour to fill: the ten pending make two whole batches and
        // two left over; the claim takes the two, the fan-out leases three more for the rest of
        // the five requests asked for.
        await BatchAsync(4, "1 hour");
        var owner = Guid.NewGuid();

        var batch = await BatchedClaimAsync(owner, 5);

        Assert.That(Batches(batch), Is.EqualTo(new Dictionary<long, long[]>
        {
            [1] = [1, 2, 3, 4], [5] = [5, 6, 7, 8], [11] = [11, 12, 13, 14], [15] = [15, 16, 17, 18], [19] = [19, 20, 21, 22],
        }));
        Assert.That(batch.FanOutLeased, Is.EqualTo(12));
        Assert.That(await CountAsync($"status = 'in_flight' AND lease_owner = '{owner}' AND attempts = 1"), Is.EqualTo(20));
        Assert.That(
            await database.ScalarAsync<long>(
                "SELECT count(*) FROM trigger_events.deliveries WHERE event_id BETWEEN 11 AND 22 AND batch_id = 11 + (event_id - 11) / 4 * 4"),
            Is.EqualTo(12), "each leased delivery's row knows its batch, so that a retry sends the same events together");
        Assert.That(await CountAsync("status = 'pending' AND batch_id IS NULL"), Is.EqualTo(2), "9 and 10, for a later claim");
        Assert.That(await NotFannedOutAsync(), Is.EqualTo(18), "23 to 40 wait in the log");
    }

    [Test]
    public async Task A_batched_subscription_alone_at_its_place_gets_what_the_chunk_statement_made_before_its_own()
    {
        // The same rounds on a database of schema 28, where the chunk statement that serves every
        // place makes a batched subscription's deliveries, and on one where a statement of its
        // own does (000029): whole batches leased and named, an event with a delivery already
        // left out, what is left over pending, the chunk stopped after the last lease.
        var before = await BatchedRoundsAsync(28);
        var now = await BatchedRoundsAsync(MigrationSource.LatestVersion);

        Assert.That(now, Is.EqualTo(before));
        Assert.That(now, Does.StartWith("4/12,8/8,16/16,0/4 | t |"), "leases in each round but the last, which claims what was left pending");
        Assert.That(now, Does.Contain(" 12:in_flight:1:11:t 13:in_flight:1:9:t 14:in_flight:1:11:t ").And.EndWith(" 41:pending:0"),
            "a leased batch skips the event a replay made, which a claim batches; the odd one out waits for max_wait");
    }

    private static async Task<string> BatchedRoundsAsync(int version)
    {
        await using var database = await TestDatabase.CreateAsync(migrated: false);
        await Migrator.MigrateAsync(database.DataSource, version, CancellationToken.None);
        if (version < 31)
        {
            // This release's claims render large events through render_values (000031), which
            // changes nothing else: the older schema gets that function alone.
            await database.ExecuteAsync(MigrationSource.All.Single(m => m.Version == 31).Sql);
        }

        await using var asWorker = NpgsqlDataSource.Create(database.WorkerConnectionString);
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, customer int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        var id = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight, batch_max_events, batch_max_wait) VALUES ('hook', 'orders_changed', 100, 4, interval '1 hour') RETURNING id");
        await database.ExecuteAsync("INSERT INTO orders SELECT g, g % 3 FROM generate_series(1, 10) g");
        await database.FanOutAsync();
        await database.ExecuteAsync("INSERT INTO orders SELECT g, g % 3 FROM generate_series(11, 41) g");
        await database.ExecuteAsync($"INSERT INTO trigger_events.deliveries (subscription_id, event_id) VALUES ({id}, 13)");
        var owner = new Guid("7e57ab1e-0000-4000-8000-000000000001");
        var store = new DeliveryStore(asWorker) { BatchedSubscriptions = new Dictionary<int, int> { [id] = 4 } };
        var rounds = new List<string>();
        foreach (var requests in new[] { 3, 2, 100, 100 })
        {
            var claimed = await store.ClaimAsync(
                id, owner, requests, Lease, ClaimCursor.Sweep, takeOverExpired: true, new FanOutRequest([id], 400), DeliveryStore.InlineEventBytes, CancellationToken.None);
            rounds.Add($"{claimed.FanOutLeased}/{claimed.Deliveries.Count}");
        }

        var rows = await database.ScalarAsync<string>($"""
            SELECT string_agg(concat_ws(':', event_id, status, attempts, batch_id, lease_owner = '{owner}'), ' ' ORDER BY event_id)
            FROM trigger_events.deliveries
            """);
        var place = await database.ScalarAsync<string>(
            "SELECT concat_ws(':', batch_end IS NULL, batch_after_id) FROM trigger_events.subscription_positions");
        return $"{string.Join(",", rounds)} | {place} | {rows}";
    }

    [Test]
    public async Task A_batch_of_one_is_leased_as_a_batch()
    {
        // batch.max_events 1: each request is still a batch body, so each leased delivery is a
        // batch of its own, named after it, as a claim would name it.
        await BatchAsync(1, "1 hour");

        var batch = await BatchedClaimAsync(Guid.NewGuid(), 15, maxEvents: 1);

        Assert.That(batch.FanOutLeased, Is.EqualTo(5));
        Assert.That(batch.Deliveries.Select(d => (d.Event.Id, d.BatchId)),
            Is.EquivalentTo(Enumerable.Range(1, 15).Select(i => ((long)i, (long?)i))));
    }

    [Test]
    public async Task Only_whole_batches_are_leased_and_what_is_left_over_waits_for_max_wait()
    {
        await BatchAsync(4, "1 hour");
        await database.ExecuteAsync("INSERT INTO orders VALUES (41, 0)");
        var owner = Guid.NewGuid();

        var first = await BatchedClaimAsync(owner, 100);
        var second = await BatchedClaimAsync(owner, 100);
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET batch_max_wait = interval '0'");
        var third = await BatchedClaimAsync(owner, 100);

        Assert.That(first.FanOutLeased, Is.EqualTo(28), "seven whole batches of the thirty-one new events");
        Assert.That(Batches(first).Keys, Is.EquivalentTo(new long[] { 1, 5, 11, 15, 19, 23, 27, 31, 35 }));
        Assert.That(Batches(second), Is.EqualTo(new Dictionary<long, long[]> { [9] = [9, 10, 39, 40] }),
            "two left over by the claim and two by the fan-out fill a batch, which goes at once");
        Assert.That(Batches(third), Is.EqualTo(new Dictionary<long, long[]> { [41] = [41] }), "the last one waited for max_wait");
        Assert.That(second.FanOutLeased + third.FanOutLeased, Is.Zero);
    }

    [Test]
    public async Task A_leased_batch_to_be_retried_is_claimed_again_whole_under_its_id()
    {
        await BatchAsync(4, "1 hour");
        var owner = Guid.NewGuid();
        var first = await BatchedClaimAsync(owner, 5);
        var retried = first.Deliveries.Where(d => d.BatchId == 15).ToList();
        await store.RecordAsync(
            owner, [.. retried.Select(d => new DeliveryResult(d.Key, d.Attempt, DeliveryResultKind.Retry, TimeSpan.Zero, 503, "503", DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(3), null))],
            writtenBefore: false, CancellationToken.None);

        var second = await BatchedClaimAsync(owner, 100);

        Assert.That(Batches(second)[15], Is.EqualTo(new long[] { 15, 16, 17, 18 }));
        Assert.That(second.Deliveries.Where(d => d.BatchId == 15).Select(d => d.Attempt), Is.All.EqualTo(2));
        Assert.That(second.Deliveries.Where(d => d.BatchId != 15).Select(d => d.Attempt), Is.All.EqualTo(1));
    }

    [Test]
    public async Task Max_in_flight_counts_a_leased_batch_as_one_request_across_owners()
    {
        await BatchAsync(4, "1 hour");
        await database.ExecuteAsync("UPDATE trigger_events.subscriptions SET max_in_flight = 3");

        var first = await BatchedClaimAsync(Guid.NewGuid(), 100);
        var second = await BatchedClaimAsync(Guid.NewGuid(), 100);

        Assert.That(Batches(first).Keys, Is.EquivalentTo(new long[] { 1, 5, 11 }), "two claimed, one leased: three requests");
        Assert.That(second.Deliveries, Is.Empty);
        Assert.That(await CountAsync("status = 'in_flight'"), Is.EqualTo(12));
    }

    [Test]
    public async Task An_event_that_has_its_delivery_already_is_not_leased_nor_names_a_batch()
    {
        // Event 13's delivery was made before the fan-out reached it (a replay): it stays as it
        // is, and the batches leased go round it.
        await BatchAsync(4, "1 hour");
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.deliveries (subscription_id, event_id, next_attempt_at) VALUES ($1, 13, now() + interval '1 hour')",
            subscriptionId);

        var batch = await BatchedClaimAsync(Guid.NewGuid(), 5);

        Assert.That(Batches(batch), Is.EqualTo(new Dictionary<long, long[]>
        {
            [1] = [1, 2, 3, 4], [5] = [5, 6, 7, 8], [11] = [11, 12, 14, 15], [16] = [16, 17, 18, 19], [20] = [20, 21, 22, 23],
        }));
        Assert.That(await CountAsync("event_id = 13 AND status = 'pending' AND batch_id IS NULL"), Is.EqualTo(1));
        Assert.That(await NotFannedOutAsync(), Is.EqualTo(17), "24 to 40 wait in the log");
    }

    [Test]
    public async Task A_batch_that_loses_an_event_to_a_replay_committing_meanwhile_is_named_after_its_lowest_leased_event()
    {
        // A replay's row for event 11 is not yet committed when the fan-out's statement starts:
        // its snapshot does not see it, so event 11 opens the first batch to lease, and the
        // insert waits for the replay, then leaves its row as it is. The batch goes without it,
        // named after 12, not after an event it does not hold.
        await BatchAsync(4, "1 hour");
        await using var replay = await database.DataSource.OpenConnectionAsync();
        await using var replaying = await replay.BeginTransactionAsync();
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO trigger_events.deliveries (subscription_id, event_id, next_attempt_at) VALUES ($1, 11, now() + interval '1 hour')",
            replay, replaying))
        {
            insert.Parameters.AddWithValue(subscriptionId);
            await insert.ExecuteNonQueryAsync();
        }

        var claiming = BatchedClaimAsync(Guid.NewGuid(), 5);
        await WaitUntilAsync(async () => await database.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()") > 0);
        await replaying.CommitAsync();
        var batch = await claiming;

        Assert.That(Batches(batch), Is.EqualTo(new Dictionary<long, long[]>
        {
            [1] = [1, 2, 3, 4], [5] = [5, 6, 7, 8], [12] = [12, 13, 14], [15] = [15, 16, 17, 18], [19] = [19, 20, 21, 22],
        }));
        Assert.That(await CountAsync("batch_id = 11"), Is.Zero, "no batch is named after an event outside it");
        Assert.That(await CountAsync("event_id = 11 AND status = 'pending' AND batch_id IS NULL"), Is.EqualTo(1), "the replay's row, as it made it");
    }

    private static async Task WaitUntilAsync(Func<Task<bool>> condition)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!await condition())
        {
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), "the fan-out never waited for the replay's row");
            await Task.Delay(20);
        }
    }

    [Test]
    public async Task A_claim_that_took_all_its_room_leaves_the_log_as_it_is()
    {
        // The ten pending fill the claim: nothing is made pending behind it, to be written again
        // when a claim takes it; the round after a claim runs short leases it instead. The place
        // moved just now, as in a round that follows another.
        await database.ExecuteAsync("UPDATE trigger_events.subscription_positions SET updated_at = now() + interval '1 minute'");
        var owner = Guid.NewGuid();

        var first = await ClaimAsync(owner, 10);
        var pendingAfterFirst = await CountAsync("status = 'pending'");
        var notFannedOutAfterFirst = await NotFannedOutAsync();
        var second = await ClaimAsync(owner, 100);

        Assert.That(first.Deliveries, Has.Count.EqualTo(10));
        Assert.That(first.FanOutLeased, Is.Zero);
        Assert.That(pendingAfterFirst, Is.Zero);
        Assert.That(notFannedOutAfterFirst, Is.EqualTo(30));
        Assert.That(second.FanOutLeased, Is.EqualTo(30));
    }

    [Test]
    public async Task A_claim_kept_full_does_not_keep_new_events_out_of_the_queue_for_more_than_a_second()
    {
        // Due deliveries (retries, say) fill every claim; the place has not moved for over a
        // second: the fan-out makes the new events pending, to take their turn by due time.
        await database.ExecuteAsync("UPDATE trigger_events.subscription_positions SET updated_at = now() - interval '2 seconds'");

        var batch = await ClaimAsync(Guid.NewGuid(), 10);

        Assert.That(batch.Deliveries, Has.Count.EqualTo(10));
        Assert.That(batch.FanOutLeased, Is.Zero);
        Assert.That(await CountAsync("status = 'pending'"), Is.EqualTo(30));
    }

    private Task<long> NotFannedOutAsync() =>
        database.ScalarAsync<long>(
            "SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT FROM trigger_events.deliveries d WHERE d.event_id = o.id)");

    private Task BatchAsync(int maxEvents, string maxWait) =>
        database.ExecuteAsync(
            $"UPDATE trigger_events.subscriptions SET batch_max_events = {maxEvents}, batch_max_wait = interval '{maxWait}'");

    /// <summary>A claim as a worker makes it for a subscription batched by <paramref name="maxEvents"/> (<see cref="BatchAsync"/>).</summary>
    private Task<ClaimBatch> BatchedClaimAsync(Guid owner, int requests, int maxEvents = 4) =>
        new DeliveryStore(asWorker) { BatchedSubscriptions = new Dictionary<int, int> { [subscriptionId] = maxEvents } }.ClaimAsync(
            subscriptionId, owner, requests, Lease, ClaimCursor.Sweep, takeOverExpired: true,
            new FanOutRequest([subscriptionId], 400), DeliveryStore.InlineEventBytes, CancellationToken.None);

    private static Dictionary<long, long[]> Batches(ClaimBatch claimed) =>
        claimed.Deliveries.GroupBy(d => d.BatchId ?? -d.Event.Id)
            .ToDictionary(g => g.Key, g => g.Select(d => d.Event.Id).Order().ToArray());

    private static DeliveryResult Delivered(ClaimedDelivery claimed) =>
        new(claimed.Key, claimed.Attempt, DeliveryResultKind.Delivered, TimeSpan.Zero, 200, null, DateTimeOffset.UtcNow, TimeSpan.FromMilliseconds(3), null);
}
