using System.Globalization;
using System.Text;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// Durations as written in the YAML file: a whole number and a unit, <c>500ms</c>, <c>10s</c>,
/// <c>5m</c>, <c>1h</c>, <c>7d</c>, or several of them run together, largest first, <c>1h30m</c>.
/// </summary>
/// <remarks>
/// Units are lower case only, so <c>1M</c> cannot be misread as a month. A bare number is rejected
/// rather than guessed to be seconds or milliseconds. There is no sign: no setting takes a negative
/// duration.
/// </remarks>
internal static class Duration
{
    // Largest first, so a compound duration must be written in this order and each unit once.
    private static readonly (string Suffix, long TicksPerUnit)[] Units =
    [
        ("d", TimeSpan.TicksPerDay),
        ("h", TimeSpan.TicksPerHour),
        ("m", TimeSpan.TicksPerMinute),
        ("s", TimeSpan.TicksPerSecond),
        ("ms", TimeSpan.TicksPerMillisecond),
    ];

    /// <summary>The forms the error messages show as examples.</summary>
    internal const string Examples = "500ms, 10s, 5m, 1h or 7d";

    /// <summary>Parses <paramref name="text"/>; false for anything that is not a duration or does not fit a <see cref="TimeSpan"/>.</summary>
    public static bool TryParse(string? text, out TimeSpan value)
    {
        value = TimeSpan.Zero;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        long totalTicks = 0;
        var lastUnit = -1;
        var position = 0;
        while (position < text.Length)
        {
            var digitsStart = position;
            while (position < text.Length && char.IsAsciiDigit(text[position]))
            {
                position++;
            }

            if (position == digitsStart)
            {
                return false;
            }

            if (!long.TryParse(text.AsSpan(digitsStart, position - digitsStart), NumberStyles.None, CultureInfo.InvariantCulture, out var amount))
            {
                return false;
            }

            var unitStart = position;
            while (position < text.Length && char.IsAsciiLetterLower(text[position]))
            {
                position++;
            }

            var unit = FindUnit(text.AsSpan(unitStart, position - unitStart));
            if (unit <= lastUnit)
            {
                // Unknown unit (-1), or units out of order or repeated ("5m1h", "1s1s").
                return false;
            }

            lastUnit = unit;
            try
            {
                totalTicks = checked(totalTicks + checked(amount * Units[unit].TicksPerUnit));
            }
            catch (OverflowException)
            {
                return false;
            }
        }

        value = TimeSpan.FromTicks(totalTicks);
        return true;
    }

    /// <summary>
    /// Writes <paramref name="value"/> the way the YAML file would: <c>1h30m</c>, <c>500ms</c>,
    /// <c>0s</c>. Parts below a millisecond are dropped, since no setting is that fine.
    /// </summary>
    public static string Format(TimeSpan value)
    {
        var builder = new StringBuilder();
        var ticks = value.Ticks;
        if (ticks < 0)
        {
            builder.Append('-');
            // TimeSpan.MinValue has no positive counterpart; one tick less is invisible at ms precision.
            ticks = ticks == long.MinValue ? long.MaxValue : -ticks;
        }

        foreach (var (suffix, ticksPerUnit) in Units)
        {
            var amount = ticks / ticksPerUnit;
            if (amount > 0)
            {
                builder.Append(amount.ToString(CultureInfo.InvariantCulture)).Append(suffix);
                ticks -= amount * ticksPerUnit;
            }
        }

        return builder.Length == 0 || builder.ToString() == "-" ? "0s" : builder.ToString();
    }

    private static int FindUnit(ReadOnlySpan<char> suffix)
    {
        for (var i = 0; i < Units.Length; i++)
        {
            if (suffix.SequenceEqual(Units[i].Suffix))
            {
                return i;
            }
        }

        return -1;
    }
}
