using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

public class DurationTests
{
    private static readonly object[] Parsed =
    [
        new object[] { "500ms", TimeSpan.FromMilliseconds(500) },
        new object[] { "10s", TimeSpan.FromSeconds(10) },
        new object[] { "5m", TimeSpan.FromMinutes(5) },
        new object[] { "1h", TimeSpan.FromHours(1) },
        new object[] { "7d", TimeSpan.FromDays(7) },
        new object[] { "0s", TimeSpan.Zero },
        new object[] { "1h30m", TimeSpan.FromMinutes(90) },
        new object[] { "1d2h3m4s5ms", new TimeSpan(1, 2, 3, 4, 5) },
        new object[] { "90s", TimeSpan.FromSeconds(90) },
        new object[] { "0010s", TimeSpan.FromSeconds(10) },
    ];

    [TestCaseSource(nameof(Parsed))]
    public void Parses_the_written_forms(string text, TimeSpan expected)
    {
        Assert.That(Duration.TryParse(text, out var value), Is.True);
        Assert.That(value, Is.EqualTo(expected));
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("10")]
    [TestCase("s")]
    [TestCase("10 s")]
    [TestCase(" 10s")]
    [TestCase("10s ")]
    [TestCase("10S")]
    [TestCase("1M")]
    [TestCase("10sec")]
    [TestCase("1.5h")]
    [TestCase("-5s")]
    [TestCase("+5s")]
    [TestCase("5w")]
    [TestCase("5m1h")]
    [TestCase("1s1s")]
    [TestCase("1h30")]
    [TestCase("１０s")]
    public void Rejects_anything_else(string? text)
    {
        Assert.That(Duration.TryParse(text, out _), Is.False);
    }

    [TestCase("99999999999999999999s")]
    [TestCase("10675200d")]
    [TestCase("10675199d100000h")]
    public void Rejects_a_duration_that_does_not_fit_a_TimeSpan(string text)
    {
        Assert.That(Duration.TryParse(text, out _), Is.False);
    }

    [TestCase(0L, "0s")]
    [TestCase(500L * TimeSpan.TicksPerMillisecond, "500ms")]
    [TestCase(10L * TimeSpan.TicksPerSecond, "10s")]
    [TestCase(90L * TimeSpan.TicksPerSecond, "1m30s")]
    [TestCase(TimeSpan.TicksPerHour, "1h")]
    [TestCase(7L * TimeSpan.TicksPerDay, "7d")]
    [TestCase(TimeSpan.TicksPerDay + TimeSpan.TicksPerMillisecond, "1d1ms")]
    [TestCase(1L, "0s")]
    [TestCase(-10L * TimeSpan.TicksPerSecond, "-10s")]
    public void Formats_as_the_file_would_write_it(long ticks, string expected)
    {
        Assert.That(Duration.Format(TimeSpan.FromTicks(ticks)), Is.EqualTo(expected));
    }

    [TestCase("500ms")]
    [TestCase("1d2h3m4s5ms")]
    [TestCase("10675199d")]
    public void Format_and_parse_round_trip(string text)
    {
        Assert.That(Duration.TryParse(text, out var value), Is.True);
        Assert.That(Duration.Format(value), Is.EqualTo(text));
    }

    [Test]
    public void Formats_the_extremes_without_overflow()
    {
        Assert.That(Duration.Format(TimeSpan.MaxValue), Does.StartWith("10675199d"));
        Assert.That(Duration.Format(TimeSpan.MinValue), Does.StartWith("-10675199d"));
    }
}
