using Npgsql;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>
/// The claim query itself, raced deterministically: what the worker tests' ReplicaTests show with
/// processes, pinned down to the one interleaving that broke <c>max_in_flight</c>.
/// </summary>
public sealed class ClaimLimitTests
{
    [Test]
    public async Task Claim_that_waited_for_another_claim_counts_what_that_one_took()
    {
        await using var database = await TestDatabase.CreateAsync();
        var subscription = await database.ScalarAsync<int>(
            "INSERT INTO trigger_events.subscriptions (name, trigger_name, max_in_flight) VALUES ('limited', 'orders_changed', 4) RETURNING id");
        await database.ExecuteAsync(
            "INSERT INTO trigger_events.event_log (trigger_name, schema_name, table_name, op) SELECT 'orders_changed', 'public', 'orders', 'MANUAL' FROM generate_series(1, 20)");
        await database.ExecuteAsync($"INSERT INTO trigger_events.deliveries (subscription_id, event_id) SELECT {subscription}, id FROM trigger_events.event_log");

        // Another replica's claim, caught between taking the subscription lock and committing:
        // it has taken the whole limit.
        await using var other = await database.DataSource.OpenConnectionAsync();
        await using var otherClaim = await other.BeginTransactionAsync();
        await using (var take = new NpgsqlCommand($"""
            SELECT 1 FROM trigger_events.subscriptions WHERE id = {subscription} FOR UPDATE;
            UPDATE trigger_events.deliveries SET status = 'in_flight', lease_owner = gen_random_uuid(), attempts = 1, next_attempt_at = now() + interval '1 minute'
            WHERE subscription_id = {subscription} AND event_id IN (SELECT event_id FROM trigger_events.deliveries WHERE subscription_id = {subscription} ORDER BY event_id LIMIT 4);
            """, other, otherClaim))
        {
            await take.ExecuteNonQueryAsync();
        }

        var store = new DeliveryStore(database.DataSource);
        var claim = store.ClaimAsync(subscription, Guid.NewGuid(), 100, TimeSpan.FromMinutes(1), CancellationToken.None);
        await WaitUntilBlockedAsync(database, TimeSpan.FromSeconds(30));
        await otherClaim.CommitAsync();

        Assert.That(await claim, Is.Empty, "the limit was already taken when this claim got the subscription lock");
        Assert.That(await database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'in_flight'"), Is.EqualTo(4));
    }

    /// <summary>Waits until a session of this database waits for a lock.</summary>
    private static async Task WaitUntilBlockedAsync(TestDatabase database, TimeSpan timeout)
    {
        using var deadline = new CancellationTokenSource(timeout);
        while (await database.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'") == 0)
        {
            await Task.Delay(20, deadline.Token);
        }
    }
}
