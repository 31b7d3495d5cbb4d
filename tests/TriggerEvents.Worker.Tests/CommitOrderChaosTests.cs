using System.Text.Json;
using Npgsql;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// The fan-out under interleaved commits and crashes, end to end with the real executable:
/// writers that commit after random delays (some rolling back), one transaction open for most of
/// the run, and the worker killed with SIGKILL at random points. Nothing may be lost, and nothing
/// may be sent twice except what a killed worker had in flight.
/// </summary>
public sealed class CommitOrderChaosTests
{
    [TestCase(20261129)]
    [TestCase(7)]
        public async Task Interleaved_commits_and_killed_workers_lose_nothing_and_duplicate_nothing(int seed)
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var random = new Random(seed);
        var options = new FaultWorkerOptions { MaxInFlight = 16, Concurrency = 16, BatchSize = 10, Lease = "3s", WebhookTimeout = "2s" };
        scenario.Receiver.Answer = _ => new ReceiverResponse(200, TimeSpan.FromMilliseconds(Random.Shared.Next(0, 20)));

        // The first worker registers the subscription (start_from: now) before anything is written.
        var worker = await scenario.StartWorkerAsync(options);
        await using var longRunning = await scenario.DataSource.OpenConnectionAsync();
        var open = await longRunning.BeginTransactionAsync();
        await Execute(longRunning, open, "INSERT INTO orders (id, amount) VALUES (0, 0)");

        using var writing = new CancellationTokenSource();
        var writerSeeds = Enumerable.Range(0, 3).Select(_ => random.Next()).ToArray();
        var writers = writerSeeds.Select((writerSeed, writer) => Task.Run(async () =>
        {
            var rng = new Random(writerSeed);
            await using var connection = await scenario.DataSource.OpenConnectionAsync();
            var id = (writer + 1) * 100_000;
            while (!writing.IsCancellationRequested)
            {
                await using var transaction = await connection.BeginTransactionAsync();
                var rows = rng.Next(1, 4);
                await Execute(connection, transaction, $"INSERT INTO orders (id, amount) SELECT g, g FROM generate_series({id + 1}, {id + rows}) g");
                id += rows;
                await Task.Delay(rng.Next(0, 40));
                if (rng.Next(10) == 0)
                {
                    await transaction.RollbackAsync();
                }
                else
                {
                    await transaction.CommitAsync();
                }
            }
        })).ToArray();

        // Four workers in turn, each killed after a random while; the long transaction commits
        // while the third runs, its capture by then older than everything since.
        for (var round = 0; round < 4; round++)
        {
            worker = round == 0 ? worker : await scenario.StartWorkerAsync(options);
            await Task.Delay(random.Next(300, 1500));
            if (round == 2)
            {
                await Execute(longRunning, open, "INSERT INTO orders (id, amount) VALUES (1, 1)");
                await open.CommitAsync();
            }

            await worker.KillAsync();
        }

        await writing.CancelAsync();
        await Task.WhenAll(writers);
        scenario.Receiver.Answer = _ => ReceiverResponse.Ok;
        await scenario.StartWorkerAsync(options);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(120));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(60));

        var captured = await scenario.CapturedEventIdsAsync();
        var lost = (await scenario.LostEventIdsAsync()).Count;
        // A killed worker's request may have reached the receiver: the next worker sends it again
        // as a later attempt. A second request for the same event and the same attempt would be
        // one the fan-out gave twice.
        var sends = scenario.Receiver.Inner.Requests.Where(r => r.Succeeded && r.EventId is not null)
            .GroupBy(r => (r.EventId!.Value, Attempt: CurrentRetry(r.Body))).ToList();
        var duplicated = sends.Sum(g => g.Count() - 1);
        var resentAfterKill = sends.Count - captured.Count;
        TestContext.Out.WriteLine(
            $"seed {seed}: captured {captured.Count}, lost {lost}, duplicated {duplicated}, sent again after a kill {resentAfterKill}; {await scenario.SummaryAsync()}");
        Assert.That((lost, duplicated), Is.EqualTo((0, 0)));
        Assert.That(captured, Has.Count.GreaterThan(50), "the writers committed work throughout");
        Assert.That(captured, Does.Contain(await scenario.ScalarAsync<long>("SELECT id FROM trigger_events.event_log WHERE (new_data->>'id')::bigint = 0")));
    }

    private static async Task Execute(NpgsqlConnection connection, NpgsqlTransaction transaction, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync();
    }

    private static int CurrentRetry(byte[] body)
    {
        using var json = JsonDocument.Parse(body);
        return json.RootElement.GetProperty("delivery_info").GetProperty("current_retry").GetInt32();
    }
}
