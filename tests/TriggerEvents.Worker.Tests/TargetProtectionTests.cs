using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Protecting targets" with two real worker processes and a real receiver: the rate limit
/// holds across the replicas, a Retry-After holds the whole subscription back, and the circuit
/// breaker stops sending to a failing target without spending attempts, probes it, closes when
/// it recovers and pauses the subscription when it never does.
/// </summary>
public sealed partial class TargetProtectionTests
{
    private const int Replicas = 2;

    private static Dictionary<string, string?> Cli(FaultScenario scenario) =>
        new() { ["TRIGGER_EVENTS_DATABASE_URL"] = scenario.ConnectionString };

    private static async Task StartReplicasAsync(FaultScenario scenario, FaultWorkerOptions options) =>
        await Task.WhenAll(Enumerable.Range(0, Replicas).Select(_ => scenario.StartWorkerAsync(options)));

    /// <summary>A counter summed over the replicas' <c>/metrics</c>.</summary>
    private static async Task<double> CounterAsync(IEnumerable<WorkerProcess> workers, string name)
    {
        var total = 0.0;
        foreach (var worker in workers)
        {
            var (_, body) = await worker.GetAsync("/metrics");
            foreach (Match match in Regex.Matches(body, $@"^{name}\{{subscription=""orders-hook""\}} (\S+)$", RegexOptions.Multiline))
            {
                total += double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            }
        }

        return total;
    }

    private static async Task<JsonElement> SubscriptionJsonAsync(FaultScenario scenario)
    {
        var (exitCode, output, error) = await WorkerProcess.RunToEndAsync(Cli(scenario), "subscriptions", "--json");
        Assert.That(exitCode, Is.Zero, error);
        return JsonDocument.Parse(output).RootElement.EnumerateArray().Single(s => s.GetProperty("name").GetString() == "orders-hook").Clone();
    }

    [Test]
    public async Task The_rate_limit_holds_across_two_replicas_within_one_burst()
    {
        const int Rate = 20;
        const int Events = 100;
        await using var scenario = await FaultScenario.CreateAsync();
        var options = new FaultWorkerOptions { MaxInFlight = 64, SubscriptionYaml = $"    rate_limit: {Rate}/s" };
        var workers = await Task.WhenAll(Enumerable.Range(0, Replicas).Select(_ => scenario.StartWorkerAsync(options)));

        // Warm-up: both replicas claim, send and record under the limit before the measured run,
        // so that a first request's start-up (a connection, compiling the path) does not bunch
        // requests claimed a second apart at the receiver. Then the bucket fills again.
        await scenario.InsertOrdersAsync(1, 2 * Rate);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(1));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));
        var warmUp = scenario.Receiver.Arrivals.Count;
        await Task.Delay(TimeSpan.FromSeconds(1.5));

        await scenario.InsertOrdersAsync(1000, 1000 + Events - 1);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(1));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        var arrivals = scenario.Receiver.Arrivals.Skip(warmUp).Select(a => a.ReceivedAt).Order().ToList();
        var span = arrivals[^1] - arrivals[0];
        // Token bucket: in any second at most one second's worth plus the burst (a request or two
        // of slack for the time between the claim and the arrival).
        var busiestSecond = arrivals.Select((at, i) => arrivals.Skip(i).TakeWhile(later => later - at < TimeSpan.FromSeconds(1)).Count()).Max();
        var limited = await CounterAsync(workers, "triggerevents_rate_limited_total");
        var workersThatSent = await scenario.ScalarAsync<long>("SELECT count(DISTINCT worker) FROM trigger_events.attempt_counts");
        TestContext.Out.WriteLine(
            $"{Events} requests in {span.TotalSeconds:0.00} s ({(Events - 1) / span.TotalSeconds:0.0}/s), busiest second {busiestSecond}, " +
            $"rate_limited_total {limited}, replicas that sent {workersThatSent}");

        Assert.That(arrivals, Has.Count.EqualTo(Events), "each event once");
        Assert.That(span, Is.GreaterThanOrEqualTo(TimeSpan.FromSeconds((Events - Rate) / (double)Rate) - TimeSpan.FromMilliseconds(100)),
            "after the first second's burst, no faster than the rate");
        Assert.That(busiestSecond, Is.LessThanOrEqualTo(2 * Rate + 2));
        Assert.That(limited, Is.GreaterThan(0));
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE attempts <> 1"), Is.Zero,
            "waiting for the budget spent no attempt");
    }

    [Test]
    public async Task A_503_with_Retry_After_holds_the_whole_subscription_back()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        var answered = 0;
        scenario.Receiver.Answer = _ =>
        {
            if (Interlocked.Increment(ref answered) == 1)
            {
                return new ReceiverResponse(503, Headers: new Dictionary<string, string> { ["Retry-After"] = "30" });
            }

            return ReceiverResponse.Ok;
        };
        await StartReplicasAsync(scenario, new FaultWorkerOptions { RetryMaxInterval = "2s" });

        await scenario.InsertOrdersAsync(1, 1);
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<bool>("SELECT held_until IS NOT NULL FROM trigger_events.subscriptions WHERE name = 'orders-hook'"),
            TimeSpan.FromSeconds(30), "the 503's hold recorded");
        await scenario.InsertOrdersAsync(2, 21);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromSeconds(30));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        // From the end of the 503's request: the hold starts when its result is written, just after.
        var heldFor = await scenario.ScalarAsync<double>(
            """
            SELECT extract(epoch FROM s.held_until - (a.started_at + a.duration_ms * interval '1 millisecond'))::float8
            FROM trigger_events.subscriptions s, trigger_events.attempts a WHERE a.http_status = 503
            """);
        var othersStartedAfterHold = await scenario.ScalarAsync<double>(
            """
            SELECT extract(epoch FROM (SELECT min(a.started_at) FROM trigger_events.attempt_history a WHERE a.event_id <> (SELECT min(event_id) FROM trigger_events.attempt_history f))
                                      - s.held_until)::float8
            FROM trigger_events.subscriptions s
            """);
        TestContext.Out.WriteLine($"held for {heldFor:0.000} s after the 503 answer; the first other request {othersStartedAfterHold:0.000} s after the hold ended");

        Assert.That(heldFor, Is.InRange(2.0, 5.0), "Retry-After: 30, capped at max_interval (2s), from when the answer was recorded");
        Assert.That(othersStartedAfterHold, Is.GreaterThanOrEqualTo(-0.01), "events that never failed waited for the hold too");
        Assert.That(await scenario.ScalarAsync<long>("SELECT sum(attempts) FROM trigger_events.deliveries"), Is.EqualTo(22));
    }

    [Test]
    public async Task A_target_that_fails_and_recovers_opens_the_breaker_is_probed_and_loses_nothing_or_attempts()
    {
        const int Events = 40;
        await using var scenario = await FaultScenario.CreateAsync();
        var gate = new Lock();
        DateTimeOffset? failUntil = null;
        var failures = 0;
        scenario.Receiver.Answer = request =>
        {
            lock (gate)
            {
                // The target is down for three seconds from the first request.
                failUntil ??= request.ReceivedAt + TimeSpan.FromSeconds(3);
                if (request.ReceivedAt < failUntil)
                {
                    failures++;
                    return new ReceiverResponse(503);
                }

                return ReceiverResponse.Ok;
            }
        };
        var options = new FaultWorkerOptions
        {
            MaxInFlight = 4,
            MaxAttempts = 5,
            SubscriptionYaml = """
                    circuit_breaker:
                      failure_rate: 50%
                      min_requests: 4
                      window: 10s
                      open_for: 500ms
                      pause_after: 20
                """,
        };
        var workers = await Task.WhenAll(Enumerable.Range(0, Replicas).Select(_ => scenario.StartWorkerAsync(options)));

        await scenario.InsertOrdersAsync(1, Events);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(1));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        var attempts = await scenario.ScalarAsync<long>("SELECT sum(attempts) FROM trigger_events.deliveries");
        var opens = await CounterAsync(workers, "triggerevents_circuit_opens_total");
        var json = await SubscriptionJsonAsync(scenario);
        TestContext.Out.WriteLine($"{failures} failed requests, {opens} opens, {attempts} attempts for {Events} events; {await scenario.SummaryAsync()}");

        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty);
        Assert.That(opens, Is.GreaterThanOrEqualTo(2), "opened, and opened again by failed probes while the target was down");
        Assert.That(attempts, Is.EqualTo(scenario.Receiver.Arrivals.Count), "every attempt is a request: none spent while the circuit was open");
        // Before the first open at most a window's worth and what was in flight fail; after it one
        // probe per open_for (three seconds down: about six), with room for a slow machine.
        Assert.That(failures, Is.LessThanOrEqualTo(4 + 2 * 4 + 10), "an open circuit stopped the requests to the failing target");
        Assert.That(json.GetProperty("circuit").GetString(), Is.EqualTo("closed"));
        Assert.That(json.GetProperty("state").GetString(), Is.EqualTo("active"));
    }

    [Test]
    public async Task An_open_circuit_sends_nothing_and_shows_in_subscriptions_and_the_state_metric()
    {
        await using var scenario = await FaultScenario.CreateAsync();
        scenario.Receiver.Answer = _ => new ReceiverResponse(500);
        var options = new FaultWorkerOptions
        {
            MaxInFlight = 2,
            SubscriptionYaml = """
                    circuit_breaker:
                      min_requests: 2
                      open_for: 1h
                """,
            WorkerYaml = "  metrics_interval: 200ms",
        };
        var worker = await scenario.StartWorkerAsync(options);

        await scenario.InsertOrdersAsync(1, 10);
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<string>("SELECT circuit FROM trigger_events.subscriptions WHERE name = 'orders-hook'") == "open",
            TimeSpan.FromSeconds(30), "the circuit open");
        await scenario.WaitForDatabaseAsync(
            async _ => (await worker.GetAsync("/metrics")).Body.Contains(
                "triggerevents_subscription_state{subscription=\"orders-hook\",state=\"circuit_open\"} 1", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30), "subscription_state circuit_open");
        await Task.Delay(500); // requests in flight when it opened finish
        var sentBefore = scenario.Receiver.Arrivals.Count;
        await Task.Delay(1500);

        var json = await SubscriptionJsonAsync(scenario);
        Assert.That(scenario.Receiver.Arrivals.Count - sentBefore, Is.Zero, "nothing is sent while the circuit is open");
        Assert.That((json.GetProperty("state").GetString(), json.GetProperty("circuit").GetString()), Is.EqualTo(("active", "open")));
        Assert.That(await scenario.ScalarAsync<long>("SELECT sum(attempts) FROM trigger_events.deliveries"), Is.EqualTo(sentBefore),
            "the waiting deliveries spent no attempts");
        Assert.That(await CounterAsync([worker], "triggerevents_circuit_opens_total"), Is.EqualTo(1));
    }

    [Test]
    public async Task A_target_that_never_recovers_pauses_the_subscription_until_resume_closes_the_breaker()
    {
        const int Events = 20;
        await using var scenario = await FaultScenario.CreateAsync();
        var down = true;
        scenario.Receiver.Answer = _ => Volatile.Read(ref down) ? new ReceiverResponse(500) : ReceiverResponse.Ok;
        var options = new FaultWorkerOptions
        {
            MaxInFlight = 2,
            MaxAttempts = 10,
            SubscriptionYaml = """
                    circuit_breaker:
                      min_requests: 3
                      open_for: 300ms
                      pause_after: 3
                """,
        };
        await StartReplicasAsync(scenario, options);

        await scenario.InsertOrdersAsync(1, Events);
        await scenario.WaitForDatabaseAsync(
            async s => await s.ScalarAsync<bool>("SELECT NOT enabled FROM trigger_events.subscriptions WHERE name = 'orders-hook'"),
            TimeSpan.FromSeconds(60), "the breaker paused the subscription");
        await Task.Delay(500); // requests in flight when it paused finish
        var sentBefore = scenario.Receiver.Arrivals.Count;
        var paused = await SubscriptionJsonAsync(scenario);
        await Task.Delay(1500);
        var sentWhilePaused = scenario.Receiver.Arrivals.Count - sentBefore;

        Assert.That(paused.GetProperty("state").GetString(), Is.EqualTo("paused"));
        Assert.That(paused.GetProperty("paused_by").GetString(), Is.EqualTo("breaker"));
        Assert.That(paused.GetProperty("paused_reason").GetString(), Does.StartWith("circuit breaker opened 3 times in a row without a success; last: HTTP 500"));
        Assert.That(paused.GetProperty("circuit").GetString(), Is.EqualTo("open"));
        Assert.That(sentWhilePaused, Is.Zero, "nothing is sent while paused");
        Assert.That(await scenario.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'dead'"), Is.Zero,
            "the open circuit spent no attempts: nothing ran out of them");

        Volatile.Write(ref down, false);
        var (exitCode, output, error) = await WorkerProcess.RunToEndAsync(Cli(scenario), "subscriptions", "resume", "orders-hook");
        Assert.That((exitCode, output.Trim()), Is.EqualTo((0, "orders-hook: resumed")), error);
        await scenario.WaitUntilAllCapturedDeliveredAsync(TimeSpan.FromMinutes(1));
        await scenario.WaitUntilAllRecordedAsync(TimeSpan.FromSeconds(30));

        var resumed = await SubscriptionJsonAsync(scenario);
        Assert.That((resumed.GetProperty("state").GetString(), resumed.GetProperty("circuit").GetString()), Is.EqualTo(("active", "closed")));
        Assert.That(await scenario.LostEventIdsAsync(), Is.Empty);
    }
}
