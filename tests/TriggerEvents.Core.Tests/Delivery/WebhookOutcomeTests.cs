using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

/// <summary>A webhook's HTTP answers as protocol-neutral outcomes (SPEC "Webhook request").</summary>
public class WebhookOutcomeTests
{
    [TestCase(199, "Declined")]
    [TestCase(200, "Accepted")]
    [TestCase(250, "Accepted")]
    [TestCase(299, "Accepted")]
    [TestCase(300, "Declined")]
    [TestCase(301, "Declined")]
    [TestCase(400, "Declined")]
    [TestCase(404, "Declined")]
    [TestCase(410, "Gone")]
    [TestCase(429, "Declined")]
    [TestCase(500, "Failed")]
    [TestCase(503, "Failed")]
    [TestCase(599, "Failed")]
    public void A_status_maps_to_a_verdict_and_only_a_2xx_is_success(int status, string verdictName)
    {
        var verdict = Enum.Parse<TargetVerdict>(verdictName);
        var outcome = WebhookOutcome.Response(status);
        Assert.That(outcome.Verdict, Is.EqualTo(verdict));
        Assert.That(outcome.IsSuccess, Is.EqualTo(verdict == TargetVerdict.Accepted));
        Assert.That(outcome.Status, Is.EqualTo(status));
        Assert.That(outcome.ErrorType, Is.EqualTo(outcome.IsSuccess ? null : status.ToString(System.Globalization.CultureInfo.InvariantCulture)));
    }

    [Test]
    public void Failures_without_a_response_have_no_status_and_name_their_kind()
    {
        Assert.Multiple(() =>
        {
            Assert.That(WebhookOutcome.Timeout(TimeSpan.FromMilliseconds(1500)),
                Is.EqualTo(new DeliveryOutcome(TargetVerdict.Failed, "timeout: no response within 1s500ms") { ErrorType = "timeout" }));
            Assert.That(WebhookOutcome.ConnectionError("connection refused (127.0.0.1:9)"),
                Is.EqualTo(new DeliveryOutcome(TargetVerdict.Failed, "connection error: connection refused (127.0.0.1:9)") { ErrorType = "connection_error" }));
            Assert.That(WebhookOutcome.Refused("private"),
                Is.EqualTo(new DeliveryOutcome(TargetVerdict.Refused, "refused: private") { ErrorType = "refused" }));
        });
    }

    [Test]
    public void Describe_gives_one_line_for_a_dead_letter()
    {
        Assert.Multiple(() =>
        {
            Assert.That(WebhookOutcome.Response(503).Describe(), Is.EqualTo("HTTP 503"));
            Assert.That(WebhookOutcome.Timeout(TimeSpan.FromSeconds(10)).Describe(), Is.EqualTo("timeout: no response within 10s"));
            Assert.That(WebhookOutcome.ConnectionError("refused").Describe(), Is.EqualTo("connection error: refused"));
            Assert.That(WebhookOutcome.Refused("private").Describe(), Is.EqualTo("refused: private"));
        });
    }

    [TestCase(429, 5, true)]
    [TestCase(503, 5, true)]
    [TestCase(503, 0, false)]
    [TestCase(500, 5, false)]
    [TestCase(400, 5, false)]
    public void Only_a_429_or_503_with_a_positive_Retry_After_holds_the_whole_target(int status, int seconds, bool holds)
    {
        var outcome = WebhookOutcome.Response(status, TimeSpan.FromSeconds(seconds));
        Assert.That(outcome.HoldsTarget, Is.EqualTo(holds));
        Assert.That(outcome.RetryAfter, Is.EqualTo(TimeSpan.FromSeconds(seconds)), "the delivery's own wait, held or not");
        Assert.That(WebhookOutcome.Response(status).HoldsTarget, Is.False, "no Retry-After, no hold");
    }

    [TestCase(413, true)]
    [TestCase(400, false)]
    [TestCase(414, false)]
    [TestCase(500, false)]
    [TestCase(200, false)]
    public void Only_a_413_says_the_body_was_too_large_and_it_is_declined_like_other_4xx(int status, bool tooLarge)
    {
        var outcome = WebhookOutcome.Response(status);
        Assert.That(outcome.IsTooLarge, Is.EqualTo(tooLarge));
        Assert.That(WebhookOutcome.Timeout(TimeSpan.FromSeconds(1)).IsTooLarge, Is.False);
        if (tooLarge)
        {
            Assert.That(outcome.Verdict, Is.EqualTo(TargetVerdict.Declined), "no sign of the target's health for the breaker");
        }
    }
}
