using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary><c>rate_limit</c> and <c>circuit_breaker</c> (SPEC "Configuration", "Protecting targets").</summary>
public class TargetProtectionConfigTests
{
    [Test]
    public void Neither_is_on_unless_given()
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription()).Subscriptions.Single();

        Assert.That(subscription.RateLimit, Is.Null);
        Assert.That(subscription.CircuitBreaker, Is.Null);
    }

    [TestCase("200/s", 200.0)]
    [TestCase("0.5/s", 0.5)]
    [TestCase("30/m", 0.5)]
    [TestCase("1/m", 1.0 / 60)]
    public void A_rate_limit_is_read_as_requests_per_second(string value, double perSecond)
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription($"    rate_limit: {value}\n")).Subscriptions.Single();

        Assert.That(subscription.RateLimit!.PerSecond, Is.EqualTo(perSecond).Within(1e-12));
    }

    [TestCase("200", "te.yaml:6:17: subscriptions[0].rate_limit: '200' is not a rate: write 200/s or 30/m")]
    [TestCase("200/h", "te.yaml:6:17: subscriptions[0].rate_limit: '200/h' is not a rate: write 200/s or 30/m")]
    [TestCase("-5/s", "te.yaml:6:17: subscriptions[0].rate_limit: '-5/s' is not a rate: write 200/s or 30/m")]
    [TestCase("0/s", "te.yaml:6:17: subscriptions[0].rate_limit: must be more than 0 and at most 1000000/s, not 0/s")]
    [TestCase("2000000/s", "te.yaml:6:17: subscriptions[0].rate_limit: must be more than 0 and at most 1000000/s, not 2000000/s")]
    [TestCase("[1/s]", "te.yaml:6:17: subscriptions[0].rate_limit: expected a single value, found a list")]
    public void A_bad_rate_limit_is_an_error_at_its_value(string value, string expected)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"    rate_limit: {value}\n")), Is.EqualTo(expected));
    }

    [Test]
    public void An_empty_circuit_breaker_map_is_on_with_the_documented_defaults()
    {
        var breaker = ConfigText.Parse(ConfigText.Subscription("    circuit_breaker: {}\n")).Subscriptions.Single().CircuitBreaker;

        Assert.That(breaker, Is.EqualTo(new CircuitBreakerConfig
        {
            FailureRate = 0.5,
            MinRequests = 20,
            Window = TimeSpan.FromMinutes(1),
            OpenFor = TimeSpan.FromSeconds(30),
            PauseAfter = 10,
        }));
    }

    [Test]
    public void Every_circuit_breaker_value_is_read()
    {
        var breaker = ConfigText.Parse(ConfigText.Subscription("""
                circuit_breaker:
                  failure_rate: 25%
                  min_requests: 5
                  window: 10s
                  open_for: 2s
                  pause_after: 3

            """)).Subscriptions.Single().CircuitBreaker;

        Assert.That(breaker, Is.EqualTo(new CircuitBreakerConfig
        {
            FailureRate = 0.25,
            MinRequests = 5,
            Window = TimeSpan.FromSeconds(10),
            OpenFor = TimeSpan.FromSeconds(2),
            PauseAfter = 3,
        }));
    }

    [TestCase("failure_rate: 50", "te.yaml:7:21: subscriptions[0].circuit_breaker.failure_rate: '50' is not a percentage: write 50%")]
    [TestCase("failure_rate: 0%", "te.yaml:7:21: subscriptions[0].circuit_breaker.failure_rate: must be more than 0% and at most 100%, not 0%")]
    [TestCase("failure_rate: 150%", "te.yaml:7:21: subscriptions[0].circuit_breaker.failure_rate: must be more than 0% and at most 100%, not 150%")]
    [TestCase("min_requests: 0", "te.yaml:7:21: subscriptions[0].circuit_breaker.min_requests: must be at least 1, not 0")]
    [TestCase("window: 500ms", "te.yaml:7:15: subscriptions[0].circuit_breaker.window: must be at least 1s, not 500ms")]
    [TestCase("open_for: soon", "te.yaml:7:17: subscriptions[0].circuit_breaker.open_for: 'soon' is not a duration: write 500ms, 10s, 5m, 1h or 7d")]
    [TestCase("pause_after: 0", "te.yaml:7:20: subscriptions[0].circuit_breaker.pause_after: must be at least 1, not 0")]
    [TestCase("colour: red", "te.yaml:7:7: subscriptions[0].circuit_breaker: unknown key 'colour' (expected failure_rate, min_requests, window, open_for, pause_after)")]
    public void A_bad_circuit_breaker_value_is_an_error_at_its_place(string line, string expected)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"    circuit_breaker:\n      {line}\n")), Is.EqualTo(expected));
    }

    [Test]
    public void A_circuit_breaker_that_is_not_a_map_is_an_error()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    circuit_breaker: on\n")),
            Is.EqualTo("te.yaml:6:22: subscriptions[0].circuit_breaker: expected a map, found a single value"));
    }
}
