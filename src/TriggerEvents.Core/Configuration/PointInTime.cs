using System.Globalization;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// A time an operator gives (<c>--since</c>, <c>--until</c>, the console's time filters and
/// replay): an ISO 8601 time with a zone, a date (midnight UTC), or an age back from now
/// (<c>30m</c>, <c>2h</c>, <c>7d</c>).
/// </summary>
internal static class PointInTime
{
    /// <summary>What <see cref="TryParse"/> takes, for error messages.</summary>
    public const string Expected = "an ISO time (2026-11-26T17:00:00Z) or an age (30m, 2h, 7d)";

    public static bool TryParse(string text, DateTimeOffset now, out DateTimeOffset time)
    {
        if (Duration.TryParse(text, out var age))
        {
            time = now - age;
            return true;
        }

        return DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out time);
    }
}
