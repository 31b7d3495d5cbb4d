using Npgsql;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// A claim round that fails part of the way, driven in process (<see cref="RoundHarness"/>):
/// what its earlier claims took is this worker's, its leases kept alive, and nobody else can
/// take it over while the worker lives.
/// </summary>
public sealed class ClaimFailureTests
{
    private RoundHarness harness = null!;

    [SetUp]
    public async Task StartAsync() => harness = await RoundHarness.CreateAsync();

    [TearDown]
    public async Task StopAsync() => await harness.DisposeAsync();

    [Test]
    public async Task What_a_round_claimed_before_a_later_claim_failed_is_sent_and_the_failure_raised_after()
    {
        var worker = await harness.WorkerAsync(harness.Subscription("hook-a"), harness.Subscription("hook-b"));
        await harness.InsertOrdersAsync(1, 3);
        // hook-b's claim locks its subscription's row first: another session holding it makes
        // that claim wait, and cancelling the wait fails it as a lost connection would.
        await using var locker = await harness.Database.DataSource.OpenConnectionAsync();
        await using var transaction = await locker.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand("SELECT FROM trigger_events.subscriptions WHERE name = 'hook-b' FOR NO KEY UPDATE", locker, transaction))
        {
            await lockRow.ExecuteNonQueryAsync();
        }

        var round = worker.RunRoundAsync(CancellationToken.None);
        await CancelLockWaitAsync();

        var failure = Assert.ThrowsAsync<PostgresException>(async () => await round);
        Assert.That(failure!.SqlState, Is.EqualTo(PostgresErrorCodes.QueryCanceled));
        Assert.That((await harness.DeliveriesAsync()).Where(r => r.Subscription == "hook-a").Select(r => (r.EventId, r.Status)),
            Is.EqualTo(new[] { (1L, "delivered"), (2L, "delivered"), (3L, "delivered") }), "hook-a's claim was sent, not left held under kept leases");
        Assert.That(harness.Receiver.Requests, Has.Count.EqualTo(3));

        await transaction.RollbackAsync();
        await harness.RunUntilSettledAsync(worker, 6);
        await harness.AssertLedgerAsync(delivered: 6, dead: 0);
    }

    /// <summary>Cancels the statement that waits for the locked row, once it waits.</summary>
    private async Task CancelLockWaitAsync()
    {
        for (var tries = 0; tries < 200; tries++)
        {
            var cancelled = await harness.Database.ScalarAsync<long>("""
                SELECT count(*) FROM (
                    SELECT pg_cancel_backend(pid) FROM pg_stat_activity
                    WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()) c
                """);
            if (cancelled > 0)
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail("hook-b's claim never waited for its subscription's row");
    }
}
