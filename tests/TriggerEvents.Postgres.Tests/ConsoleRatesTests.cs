using TriggerEvents.Postgres.Operations;
using TriggerEvents.Testing;

namespace TriggerEvents.Postgres.Tests;

/// <summary>The overview's delivery and failure rates: counted over the window, or over the latest attempts when they are many.</summary>
public sealed class ConsoleRatesTests
{
    private static readonly TimeSpan Window = TimeSpan.FromMinutes(5);

    [Test]
    public async Task A_quiet_window_is_counted_whole_and_older_attempts_are_left_out()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("""
            INSERT INTO trigger_events.subscriptions (id, name, trigger_name) OVERRIDING SYSTEM VALUE VALUES (1, 'hook', 't'), (2, 'audit', 't');
            INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status) VALUES
                (1, 1, 1, now() - interval '1 minute', 1, 200), (1, 2, 1, now() - interval '2 minutes', 1, 500),
                (1, 3, 1, now() - interval '3 minutes', 1, NULL), (1, 4, 1, now() - interval '10 minutes', 1, 200),
                (2, 1, 1, now() - interval '4 minutes', 1, 204);
            """);

        var rates = (await ConsoleQueries.RatesAsync(database.DataSource, Window, CancellationToken.None)).ToDictionary(r => r.Subscription);

        Assert.That(rates["hook"], Is.EqualTo(new SubscriptionRate("hook", 3, 2, Window)));
        Assert.That(rates["audit"], Is.EqualTo(new SubscriptionRate("audit", 1, 0, Window)));
        Assert.That(rates["hook"].PerMinute(3), Is.EqualTo(0.6).Within(1e-9));
    }

    [Test]
    public async Task A_busy_window_is_counted_over_the_latest_attempts_and_the_time_they_cover()
    {
        await using var database = await TestDatabase.CreateAsync();
        var sinceInsert = System.Diagnostics.Stopwatch.StartNew();
        // Fifty a second for the last 20 minutes: 15,000 in the window, more than the sample.
        await database.ExecuteAsync($"""
            INSERT INTO trigger_events.subscriptions (id, name, trigger_name) OVERRIDING SYSTEM VALUE VALUES (1, 'hook', 't');
            INSERT INTO trigger_events.attempts (subscription_id, event_id, attempt, started_at, duration_ms, http_status)
            SELECT 1, g, 1, now() - (60000 - g) * interval '20 milliseconds', 1, CASE WHEN g % 10 = 0 THEN 503 ELSE 200 END
            FROM generate_series(1, 60000) g;
            """);

        var rate = (await ConsoleQueries.RatesAsync(database.DataSource, Window, CancellationToken.None)).Single();
        var elapsed = sinceInsert.Elapsed.TotalSeconds;

        // The sample covers its own span plus the time between the insert and the reading.
        var span = (ConsoleQueries.RateSample - 1) / 50.0;
        Assert.That(rate.Attempts, Is.EqualTo(ConsoleQueries.RateSample));
        Assert.That(rate.Failures, Is.EqualTo(ConsoleQueries.RateSample / 10));
        Assert.That(rate.Covered.TotalSeconds, Is.InRange(span, span + elapsed));
        Assert.That(rate.PerMinute(rate.Attempts), Is.InRange(ConsoleQueries.RateSample * 60 / (span + elapsed), ConsoleQueries.RateSample * 60 / span), "fifty a second");
    }
}
