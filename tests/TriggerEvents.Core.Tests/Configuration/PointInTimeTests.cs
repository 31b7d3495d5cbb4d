using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary>The times operators give to the command line and the console.</summary>
public sealed class PointInTimeTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 12, 0, 0, TimeSpan.Zero);

    [TestCase("2026-11-26T17:00:00Z", "2026-11-26T17:00:00+00:00")]
    [TestCase("2026-11-26T18:00:00+01:00", "2026-11-26T17:00:00+00:00")]
    [TestCase("2026-11-26", "2026-11-26T00:00:00+00:00")]
    [TestCase("2h", "2026-11-30T10:00:00+00:00")]
    [TestCase("7d", "2026-11-23T12:00:00+00:00")]
    public void A_time_or_an_age_back_from_now_is_read(string text, string expected)
    {
        Assert.That(PointInTime.TryParse(text, Now, out var time), Is.True);
        Assert.That(time, Is.EqualTo(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture)));
    }

    [TestCase("yesterday")]
    [TestCase("2h ago")]
    [TestCase("2026-13-40")]
    public void Anything_else_is_refused(string text) =>
        Assert.That(PointInTime.TryParse(text, Now, out _), Is.False);
}
