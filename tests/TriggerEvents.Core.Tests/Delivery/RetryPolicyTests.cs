using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class RetryPolicyTests
{
    private static readonly RetryPolicy Default = new(new RetryConfig());

    [TestCase(1, 5)]
    [TestCase(2, 10)]
    [TestCase(3, 20)]
    [TestCase(4, 40)]
    [TestCase(10, 2560)]
    [TestCase(11, 3600)]
    [TestCase(12, 3600)]
    public void The_ceiling_doubles_from_the_initial_interval_up_to_the_maximum(int attemptsMade, int seconds)
    {
        Assert.That(Default.Ceiling(attemptsMade), Is.EqualTo(TimeSpan.FromSeconds(seconds)));
        Assert.That(Default.Backoff(attemptsMade, 1.0), Is.EqualTo(TimeSpan.FromSeconds(seconds)));
    }

    [TestCase(0.0, 0)]
    [TestCase(0.25, 5)]
    [TestCase(0.5, 10)]
    [TestCase(0.999, 19.98)]
    public void Backoff_is_the_random_fraction_of_the_ceiling(double random01, double seconds)
    {
        Assert.That(Default.Backoff(3, random01), Is.EqualTo(TimeSpan.FromSeconds(seconds)).Within(TimeSpan.FromTicks(1)));
    }

    [TestCase(62)]
    [TestCase(63)]
    [TestCase(64)]
    [TestCase(1000)]
    [TestCase(int.MaxValue)]
    public void Large_attempt_numbers_do_not_overflow(int attemptsMade)
    {
        Assert.That(Default.Ceiling(attemptsMade), Is.EqualTo(TimeSpan.FromHours(1)));
        Assert.That(Default.Backoff(attemptsMade, 0.5), Is.EqualTo(TimeSpan.FromMinutes(30)));
    }

    [Test]
    public void An_interval_near_the_largest_timespan_does_not_overflow()
    {
        var policy = new RetryPolicy(new RetryConfig { InitialInterval = TimeSpan.MaxValue / 4, MaxInterval = TimeSpan.MaxValue });

        Assert.That(policy.Ceiling(2), Is.EqualTo(TimeSpan.FromTicks((TimeSpan.MaxValue / 4).Ticks * 2)));
        Assert.That(policy.Ceiling(5), Is.EqualTo(TimeSpan.MaxValue));
        Assert.That(policy.Backoff(5, 1.0), Is.EqualTo(TimeSpan.MaxValue));
    }

    [Test]
    public void Backoff_stays_within_zero_and_the_ceiling_for_any_random_number()
    {
        var random = new Random(1234);
        var policy = new RetryPolicy(new RetryConfig { InitialInterval = TimeSpan.FromMilliseconds(100), MaxInterval = TimeSpan.FromMinutes(10) });
        for (var i = 0; i < 10_000; i++)
        {
            var attempts = random.Next(1, 100);
            var backoff = policy.Backoff(attempts, random.NextDouble());
            Assert.That(backoff, Is.InRange(TimeSpan.Zero, policy.Ceiling(attempts)));
        }
    }

    [TestCase(-0.1)]
    [TestCase(1.1)]
    [TestCase(double.NaN)]
    [TestCase(double.PositiveInfinity)]
    public void A_random_number_outside_zero_to_one_is_refused(double random01)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Backoff(1, random01));
    }

    [Test]
    public void Attempts_are_counted_from_one()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Backoff(0, 0.5));
        Assert.Throws<ArgumentOutOfRangeException>(() => Default.Decide(0, WebhookOutcome.Response(500), 0.5));
    }

    [Test]
    public void An_invalid_configuration_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new RetryPolicy(new RetryConfig { MaxAttempts = 0 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new RetryPolicy(new RetryConfig { InitialInterval = TimeSpan.Zero }));
        Assert.Throws<ArgumentOutOfRangeException>(() => _ = new RetryPolicy(new RetryConfig { InitialInterval = TimeSpan.FromHours(2) }));
    }

    [TestCase(200)]
    [TestCase(201)]
    [TestCase(204)]
    [TestCase(299)]
    public void Any_2xx_is_delivered(int status)
    {
        Assert.That(Default.Decide(1, WebhookOutcome.Response(status), 0.5), Is.EqualTo(new RetryDecision.Delivered()));
    }

    [Test]
    public void A_2xx_on_the_last_attempt_is_delivered()
    {
        Assert.That(Default.Decide(10, WebhookOutcome.Response(200, TimeSpan.FromSeconds(5)), 0.5), Is.EqualTo(new RetryDecision.Delivered()));
    }

    [Test]
    public void A_410_is_dead_at_once()
    {
        var decision = Default.Decide(1, WebhookOutcome.Response(410), 0.5);

        Assert.That(decision, Is.InstanceOf<RetryDecision.Dead>());
        Assert.That(((RetryDecision.Dead)decision).Reason, Does.StartWith("HTTP 410"));
    }

    [Test]
    public void A_request_the_worker_refused_is_dead_at_once_with_the_reason()
    {
        var refused = WebhookOutcome.Refused("destination 127.0.0.1 is a private address and worker.deny_private_networks is on");

        var decision = Default.Decide(1, refused, 0.5);

        Assert.That(decision, Is.EqualTo(new RetryDecision.Dead(
            "refused: destination 127.0.0.1 is a private address and worker.deny_private_networks is on; not retried")));
    }

    [TestCase(100)]
    [TestCase(301)]
    [TestCase(302)]
    [TestCase(304)]
    [TestCase(307)]
    [TestCase(400)]
    [TestCase(401)]
    [TestCase(404)]
    [TestCase(409)]
    [TestCase(429)]
    [TestCase(500)]
    [TestCase(503)]
    public void Any_other_status_is_retried_with_backoff(int status)
    {
        Assert.That(Default.Decide(2, WebhookOutcome.Response(status), 0.5), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromSeconds(5))));
    }

    [Test]
    public void A_timeout_or_a_connection_error_is_retried_with_backoff()
    {
        Assert.That(Default.Decide(1, WebhookOutcome.Timeout(TimeSpan.FromSeconds(10)), 1.0), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromSeconds(5))));
        Assert.That(Default.Decide(1, WebhookOutcome.ConnectionError("connection refused"), 1.0), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromSeconds(5))));
        Assert.That(Default.Decide(1, WebhookOutcome.Response(413), 1.0), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromSeconds(5))));
    }

    [Test]
    public void Retry_after_replaces_the_jittered_backoff()
    {
        Assert.That(Default.Decide(1, WebhookOutcome.Response(429, TimeSpan.FromSeconds(42)), 0.0), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromSeconds(42))));
        Assert.That(Default.Decide(1, WebhookOutcome.Response(503, TimeSpan.Zero), 1.0), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.Zero)));
    }

    [Test]
    public void Retry_after_is_capped_at_the_maximum_interval()
    {
        Assert.That(Default.Decide(1, WebhookOutcome.Response(503, TimeSpan.FromDays(3)), 0.5), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromHours(1))));
        Assert.That(Default.Decide(1, WebhookOutcome.Response(503, TimeSpan.MaxValue), 0.5), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.FromHours(1))));
    }

    [Test]
    public void A_negative_retry_after_means_now()
    {
        Assert.That(Default.Decide(1, WebhookOutcome.Response(503, TimeSpan.FromSeconds(-5)), 0.5), Is.EqualTo(new RetryDecision.RetryAfter(TimeSpan.Zero)));
    }

    [Test]
    public void After_max_attempts_the_delivery_is_dead_with_the_last_outcome()
    {
        Assert.That(Default.Decide(9, WebhookOutcome.Response(503), 0.5), Is.InstanceOf<RetryDecision.RetryAfter>());
        Assert.That(Default.Decide(10, WebhookOutcome.Response(503), 0.5), Is.EqualTo(new RetryDecision.Dead("gave up after 10 attempts; last: HTTP 503")));
        Assert.That(Default.Decide(11, WebhookOutcome.ConnectionError("connection refused"), 0.5), Is.EqualTo(new RetryDecision.Dead("gave up after 11 attempts; last: connection error: connection refused")));
    }

    [Test]
    public void Retry_after_does_not_add_attempts()
    {
        Assert.That(Default.Decide(10, WebhookOutcome.Response(429, TimeSpan.FromSeconds(1)), 0.5), Is.InstanceOf<RetryDecision.Dead>());
    }

    [Test]
    public void With_one_attempt_the_first_failure_is_dead()
    {
        var policy = new RetryPolicy(new RetryConfig { MaxAttempts = 1 });

        Assert.That(policy.Decide(1, WebhookOutcome.Timeout(TimeSpan.FromSeconds(10)), 0.5), Is.EqualTo(new RetryDecision.Dead("gave up after 1 attempt; last: timeout: no response within 10s")));
    }
}
