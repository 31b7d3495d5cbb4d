using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class TraceParentTests
{
    [Test]
    public void A_version_00_traceparent_is_split_into_its_ids()
    {
        Assert.That(TraceParent.TryParse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", out var parsed), Is.True);
        Assert.That(parsed, Is.EqualTo(new TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")));
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0")]
    [TestCase("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G")]
    [TestCase("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01")]
    [TestCase("00-00000000000000000000000000000000-00f067aa0ba902b7-01")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")]
    [TestCase("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    public void Anything_else_is_not_read(string? value)
    {
        Assert.That(TraceParent.TryParse(value, out var parsed), Is.False);
        Assert.That(parsed, Is.EqualTo(default(TraceParent)));
    }
}
