using System.Globalization;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// Sizes as written in the YAML file: a whole number and a unit, binary (<c>512KiB</c>,
/// <c>4MiB</c>, <c>1GiB</c>) or decimal (<c>500kB</c>, <c>2MB</c>, <c>1GB</c>), or bytes (<c>800B</c>).
/// </summary>
/// <remarks>
/// As with durations, a bare number is refused rather than guessed to be bytes or megabytes, and
/// units are matched exactly (<c>KB</c> is also taken for <c>kB</c>), so <c>4mb</c> (millibits)
/// or <c>4Mb</c> (megabits) is an error, not a guess.
/// </remarks>
internal static class ByteSize
{
    private static readonly (string Suffix, long BytesPerUnit)[] Units =
    [
        ("B", 1),
        ("KiB", 1L << 10),
        ("MiB", 1L << 20),
        ("GiB", 1L << 30),
        ("kB", 1000),
        ("KB", 1000),
        ("MB", 1000 * 1000),
        ("GB", 1000 * 1000 * 1000),
    ];

    /// <summary>The forms the error messages show as examples.</summary>
    internal const string Examples = "512KiB, 4MiB or 2MB";

    /// <summary>Parses <paramref name="text"/>; false for anything that is not a size or does not fit a <see cref="long"/>.</summary>
    public static bool TryParse(string? text, out long bytes)
    {
        bytes = 0;
        if (string.IsNullOrEmpty(text))
        {
            return false;
        }

        var digits = 0;
        while (digits < text.Length && char.IsAsciiDigit(text[digits]))
        {
            digits++;
        }

        if (digits == 0 || !long.TryParse(text.AsSpan(0, digits), NumberStyles.None, CultureInfo.InvariantCulture, out var amount))
        {
            return false;
        }

        var suffix = text.AsSpan(digits);
        foreach (var (unit, bytesPerUnit) in Units)
        {
            if (suffix.SequenceEqual(unit))
            {
                try
                {
                    bytes = checked(amount * bytesPerUnit);
                    return true;
                }
                catch (OverflowException)
                {
                    return false;
                }
            }
        }

        return false;
    }

    /// <summary>
    /// Writes <paramref name="bytes"/> for people, in the largest binary unit it reaches, with one
    /// decimal where it is not whole: <c>4 MiB</c>, <c>5.2 MiB</c>, <c>512 KiB</c>, <c>900 B</c>.
    /// </summary>
    public static string Format(long bytes)
    {
        var (unit, size) = bytes switch
        {
            >= 1L << 30 => ("GiB", 1L << 30),
            >= 1L << 20 => ("MiB", 1L << 20),
            >= 1L << 10 => ("KiB", 1L << 10),
            _ => ("B", 1L),
        };
        if (bytes % size == 0)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{bytes / size} {unit}");
        }

        // One decimal, rounded down: a size just over a limit reads "4.0 MiB", never "4 MiB".
        var tenths = bytes * 10 / size;
        return string.Create(CultureInfo.InvariantCulture, $"{tenths / 10}.{tenths % 10} {unit}");
    }
}
