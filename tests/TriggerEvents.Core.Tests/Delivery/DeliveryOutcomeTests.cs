using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class DeliveryOutcomeTests
{
    [TestCase(199, false)]
    [TestCase(200, true)]
    [TestCase(250, true)]
    [TestCase(299, true)]
    [TestCase(300, false)]
    [TestCase(410, false)]
    public void Only_a_2xx_is_success(int status, bool success)
    {
        Assert.That(DeliveryOutcome.Response(status).IsSuccess, Is.EqualTo(success));
    }

    [Test]
    public void Failures_without_a_response_are_not_success()
    {
        Assert.That(DeliveryOutcome.Timeout(TimeSpan.FromSeconds(1)).IsSuccess, Is.False);
        Assert.That(DeliveryOutcome.ConnectionError("refused").IsSuccess, Is.False);
        Assert.That(DeliveryOutcome.Failed("boom").IsSuccess, Is.False);
        Assert.That(DeliveryOutcome.Refused("private").IsSuccess, Is.False);
    }

    [Test]
    public void The_factories_set_the_flags()
    {
        Assert.That(DeliveryOutcome.Response(503), Is.EqualTo(new DeliveryOutcome(503, null, false, false)));
        Assert.That(DeliveryOutcome.Timeout(TimeSpan.FromMilliseconds(1500)), Is.EqualTo(new DeliveryOutcome(null, "no response within 1s500ms", true, false)));
        Assert.That(DeliveryOutcome.ConnectionError("refused"), Is.EqualTo(new DeliveryOutcome(null, "refused", false, true)));
        Assert.That(DeliveryOutcome.Failed("boom"), Is.EqualTo(new DeliveryOutcome(null, "boom", false, false)));
        Assert.That(DeliveryOutcome.Refused("private"), Is.EqualTo(new DeliveryOutcome(null, "private", false, false, IsRefused: true)));
    }

    [Test]
    public void Describe_gives_one_line_for_a_dead_letter()
    {
        Assert.Multiple(() =>
        {
            Assert.That(DeliveryOutcome.Response(503).Describe(), Is.EqualTo("HTTP 503"));
            Assert.That(new DeliveryOutcome(502, "body unreadable", false, false).Describe(), Is.EqualTo("HTTP 502: body unreadable"));
            Assert.That(DeliveryOutcome.Timeout(TimeSpan.FromSeconds(10)).Describe(), Is.EqualTo("timeout: no response within 10s"));
            Assert.That(DeliveryOutcome.ConnectionError("refused").Describe(), Is.EqualTo("connection error: refused"));
            Assert.That(DeliveryOutcome.Failed("boom").Describe(), Is.EqualTo("error: boom"));
            Assert.That(DeliveryOutcome.Refused("private").Describe(), Is.EqualTo("refused: private"));
            Assert.That(new DeliveryOutcome(null, null, true, false).Describe(), Is.EqualTo("timeout"));
        });
    }
}
