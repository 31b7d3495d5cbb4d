using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// The database goes away under a delivering worker: a restart (fast or immediate) or its
/// connections terminated. The worker retries with backoff, listens again, loses nothing and
/// keeps delivering what is captured afterwards (SPEC "Worker").
/// </summary>
public sealed class DatabaseFaultTests
{
    // A webhook timeout and a lease far beyond any stall after the fault (reconnect backoff,
    // crash recovery on a busy machine): an attempt of an event captured after the fault that
    // timed out, or whose lease ran out before its result was written, would be sent again,
    // which at-least-once allows and the exactly-once check below does not.
    private static readonly FaultWorkerOptions Options = new() { MaxInFlight = 8, Concurrency = 8, Lease = "60s", WebhookTimeout = "20s", ShutdownTimeout = "30s" };

    /// <summary>Restarts PostgreSQL, so each case runs on a cluster of its own.</summary>
    [TestCase("fast")]
    [TestCase("immediate")]
    public async Task Database_restart_during_delivery_loses_nothing_and_delivery_resumes(string mode)
    {
        await using var scenario = await FaultScenario.CreateWithOwnClusterAsync();
        await RunFaultAsync(scenario, () => scenario.Cluster.RestartAsync(mode));
    }

    [Test]
    public async Task Terminated_worker_connections_during_delivery_lose_nothing_and_delivery_resumes()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        await RunFaultAsync(scenario, async () =>
        {
            // Only this database's workers: other fixtures' workers share the server and the name.
            var terminated = await scenario.ScalarAsync<long>("""
                SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE application_name = 'triggerevents' AND datname = current_database()
                """);
            Assert.That(terminated, Is.GreaterThan(0), "the worker had connections to terminate");
        });
    }

    /// <summary>
    /// Delivers with slow answers, strikes with <paramref name="fault"/> while requests are in
    /// flight, then captures more and checks that everything arrives. Duplicates are allowed only
    /// for requests already sent when the fault struck: those whose result may not have been
    /// recordable. Everything captured after the fault arrives exactly once (given no attempt
    /// times out and no lease runs out: see <see cref="Options"/>).
    /// </summary>
    private static async Task RunFaultAsync(FaultScenario scenario, Func<Task> fault)
    {
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(100));
        var worker = await scenario.StartWorkerAsync(Options);
        await scenario.InsertOrdersAsync(1, 200);
        await scenario.Receiver.WaitUntilAsync(r => r.Arrivals.Count >= 20, TimeSpan.FromSeconds(60), "20 requests");

        var faultAt = await scenario.ScalarAsync<DateTime>("SELECT now()");
        await fault();
        var sentBeforeFaultEnded = scenario.Receiver.ArrivedEventIds();

        var capturedBefore = await scenario.CapturedEventIdsAsync();
        await scenario.InsertOrdersAsync(201, 300);
        var capturedAfter = (await scenario.CapturedEventIdsAsync()).Except(capturedBefore).ToHashSet();
        Assert.That(capturedAfter, Has.Count.EqualTo(100));

        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(120));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(60));

        Assert.That(worker.HasExited, Is.False, worker.Output);

        // LISTEN is re-established on a connection opened after the fault (the listener pings
        // with SELECT 1 when nothing arrives for a while).
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<long>($"""
                SELECT count(*) FROM pg_stat_activity
                WHERE datname = current_database() AND application_name = 'triggerevents'
                  AND query IN ('LISTEN trigger_events', 'SELECT 1') AND backend_start > '{faultAt:O}'::timestamptz
                """) > 0,
            TimeSpan.FromSeconds(60), "the worker to LISTEN again");
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty, "lost events");
        var duplicated = scenario.Receiver.DuplicatedEventIds();
        Assert.That(duplicated, Is.SubsetOf(sentBeforeFaultEnded), "duplicates of requests sent after the fault");
        Assert.That(duplicated.Overlaps(capturedAfter), Is.False);
        TestContext.Out.WriteLine($"sent before the fault ended: {sentBeforeFaultEnded.Count}; {await scenario.SummaryAsync()}");
    }
}
