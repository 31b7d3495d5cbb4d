using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary><c>batch</c> (SPEC "Configuration", "Batches").</summary>
public class BatchConfigTests
{
    [Test]
    public void Without_batch_each_request_carries_one_event()
    {
        Assert.That(ConfigText.Parse(ConfigText.Subscription()).Subscriptions.Single().Batch, Is.Null);
        Assert.That(ConfigText.Parse(ConfigText.Subscription("    batch:\n")).Subscriptions.Single().Batch, Is.Null);
    }

    [Test]
    public void Max_events_and_max_wait_are_read()
    {
        var batch = ConfigText.Parse(ConfigText.Subscription("    batch:\n      max_events: 100\n      max_wait: 250ms\n")).Subscriptions.Single().Batch;

        Assert.That(batch, Is.EqualTo(new BatchConfig(100, TimeSpan.FromMilliseconds(250))));
    }

    [Test]
    public void Max_wait_defaults_to_50ms()
    {
        var batch = ConfigText.Parse(ConfigText.Subscription("    batch: {max_events: 1}\n")).Subscriptions.Single().Batch;

        Assert.That(batch, Is.EqualTo(new BatchConfig(1, TimeSpan.FromMilliseconds(50))));
    }

    [TestCase("    batch:\n      max_events: 0\n", "te.yaml:7:19: subscriptions[0].batch.max_events: must be from 1 to 1000, not 0")]
    [TestCase("    batch:\n      max_events: 1001\n", "te.yaml:7:19: subscriptions[0].batch.max_events: must be from 1 to 1000, not 1001")]
    [TestCase("    batch:\n      max_events: lots\n", "te.yaml:7:19: subscriptions[0].batch.max_events: 'lots' is not a whole number")]
    [TestCase("    batch:\n      max_wait: 1s\n", "te.yaml:7:7: subscriptions[0].batch.max_events: is required: the most events one request carries")]
    [TestCase("    batch:\n      max_events:\n      max_wait: 1s\n", "te.yaml:7:7: subscriptions[0].batch.max_events: is required: the most events one request carries")]
    [TestCase("    batch:\n      max_events: 5\n      size: 5\n", "te.yaml:8:7: subscriptions[0].batch: unknown key 'size' (expected max_events, max_wait)")]
    [TestCase("    batch: 5\n", "te.yaml:6:12: subscriptions[0].batch: expected a map, found a single value")]
    public void A_bad_batch_is_an_error_at_its_place(string yaml, string expected)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription(yaml)), Is.EqualTo(expected));
    }

    [Test]
    public void A_bad_max_wait_is_an_error_at_its_value()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    batch:\n      max_events: 5\n      max_wait: soon\n")),
            Does.StartWith("te.yaml:8:17: subscriptions[0].batch.max_wait: "));
    }
}
