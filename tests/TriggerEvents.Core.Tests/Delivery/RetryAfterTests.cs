using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class RetryAfterTests
{
    private static readonly DateTimeOffset Now = new(2015, 10, 21, 7, 27, 0, TimeSpan.Zero);

    [TestCase("120", 120)]
    [TestCase("0", 0)]
    [TestCase(" 5 ", 5)]
    [TestCase("007", 7)]
    public void Delta_seconds_are_a_delay(string header, int seconds)
    {
        Assert.That(RetryAfter.TryParse(header, Now, out var delay), Is.True);
        Assert.That(delay, Is.EqualTo(TimeSpan.FromSeconds(seconds)));
    }

    [TestCase("99999999999999999999")]
    [TestCase("922337203686")]
    public void Seconds_beyond_a_timespan_are_the_longest_delay(string header)
    {
        Assert.That(RetryAfter.TryParse(header, Now, out var delay), Is.True);
        Assert.That(delay, Is.EqualTo(TimeSpan.MaxValue));
    }

    [TestCase("Wed, 21 Oct 2015 07:28:00 GMT")]
    [TestCase("Wednesday, 21-Oct-15 07:28:00 GMT")]
    [TestCase("Wed Oct 21 07:28:00 2015")]
    public void An_http_date_in_any_of_its_three_forms_is_the_time_until_then(string header)
    {
        Assert.That(RetryAfter.TryParse(header, Now, out var delay), Is.True);
        Assert.That(delay, Is.EqualTo(TimeSpan.FromMinutes(1)));
    }

    [Test]
    public void An_asctime_date_with_a_padded_day_is_read()
    {
        var now = new DateTimeOffset(1994, 11, 6, 8, 49, 0, TimeSpan.Zero);

        Assert.That(RetryAfter.TryParse("Sun Nov  6 08:49:37 1994", now, out var delay), Is.True);
        Assert.That(delay, Is.EqualTo(TimeSpan.FromSeconds(37)));
    }

    [Test]
    public void A_date_in_the_past_is_no_delay()
    {
        Assert.That(RetryAfter.TryParse("Wed, 21 Oct 2015 07:00:00 GMT", Now, out var delay), Is.True);
        Assert.That(delay, Is.EqualTo(TimeSpan.Zero));
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("  ")]
    [TestCase("-5")]
    [TestCase("+5")]
    [TestCase("1.5")]
    [TestCase("5s")]
    [TestCase("soon")]
    [TestCase("Wed, 21 Oct 2015 07:28:00")]
    [TestCase("2015-10-21T07:28:00Z")]
    [TestCase("Wed, 32 Oct 2015 07:28:00 GMT")]
    public void Anything_else_is_not_a_retry_after(string? header)
    {
        Assert.That(RetryAfter.TryParse(header, Now, out var delay), Is.False);
        Assert.That(delay, Is.EqualTo(TimeSpan.Zero));
    }
}
