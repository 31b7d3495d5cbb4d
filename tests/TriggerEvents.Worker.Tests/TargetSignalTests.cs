using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Delivery;

namespace TriggerEvents.Worker.Tests;

/// <summary>What an attempt's outcome tells its subscription's breaker and hold (SPEC "Protecting targets").</summary>
public sealed class TargetSignalTests
{
    private static readonly SubscriptionConfig WithBreaker = new()
    {
        Name = "hook",
        Trigger = "orders_changed",
        Webhook = new WebhookConfig { Url = new Uri("http://127.0.0.1:9/hook") },
        Retry = new RetryConfig { InitialInterval = TimeSpan.FromSeconds(1), MaxInterval = TimeSpan.FromMinutes(1) },
        CircuitBreaker = new CircuitBreakerConfig(),
    };

    private static readonly SubscriptionConfig WithoutBreaker = WithBreaker with { CircuitBreaker = null };

    [TestCase("200", "Success")]
    [TestCase("500", "Failure")]
    [TestCase("503", "Failure")]
    [TestCase("timeout", "Failure")]
    [TestCase("connection error", "Failure")]
    [TestCase("410", "Other")]
    [TestCase("429", "Other")]
    [TestCase("404", "Other")]
    [TestCase("302", "Other")]
    public void An_outcome_moves_the_breaker_as_the_spec_says(string outcome, string expected)
    {
        var result = outcome switch
        {
            "timeout" => WebhookOutcome.Timeout(TimeSpan.FromSeconds(10)),
            "connection error" => WebhookOutcome.ConnectionError("connection refused"),
            _ => WebhookOutcome.Response(int.Parse(outcome, System.Globalization.CultureInfo.InvariantCulture)),
        };

        Assert.That(TargetProtection.Signal(WithBreaker, result), Is.EqualTo(new TargetSignal(Enum.Parse<BreakerSignal>(expected), null)));
    }

    [Test]
    public void Without_a_breaker_and_without_Retry_After_an_attempt_tells_the_row_nothing()
    {
        Assert.That(TargetProtection.Signal(WithoutBreaker, WebhookOutcome.Response(500)), Is.Null);
        Assert.That(TargetProtection.Signal(WithoutBreaker, WebhookOutcome.Response(500, TimeSpan.FromSeconds(5))), Is.Null,
            "only 429 and 503 hold the subscription back");
    }

    [Test]
    public void A_refused_request_says_nothing_about_the_target()
    {
        Assert.That(TargetProtection.Signal(WithBreaker, WebhookOutcome.Refused("private address")), Is.Null);
    }

    [TestCase(429)]
    [TestCase(503)]
    public void A_Retry_After_on_429_or_503_holds_the_subscription_capped_at_max_interval(int status)
    {
        Assert.That(TargetProtection.Signal(WithoutBreaker, WebhookOutcome.Response(status, TimeSpan.FromSeconds(5)))?.Hold, Is.EqualTo(TimeSpan.FromSeconds(5)));
        Assert.That(TargetProtection.Signal(WithoutBreaker, WebhookOutcome.Response(status, TimeSpan.FromHours(3)))?.Hold, Is.EqualTo(TimeSpan.FromMinutes(1)));
        Assert.That(TargetProtection.Signal(WithBreaker, WebhookOutcome.Response(status, TimeSpan.Zero))?.Hold, Is.Null, "Retry-After: 0 holds nothing");
    }
}
