using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary>Sizes as the YAML file writes them (<c>max_event_bytes</c>, <c>worker.body_memory</c>).</summary>
public class ByteSizeTests
{
    [TestCase("4MiB", 4L * 1024 * 1024)]
    [TestCase("512KiB", 512L * 1024)]
    [TestCase("1GiB", 1L << 30)]
    [TestCase("2MB", 2_000_000L)]
    [TestCase("500kB", 500_000L)]
    [TestCase("500KB", 500_000L)]
    [TestCase("1GB", 1_000_000_000L)]
    [TestCase("800B", 800L)]
    [TestCase("0B", 0L)]
    public void Parses_binary_and_decimal_units(string text, long expected)
    {
        Assert.That(ByteSize.TryParse(text, out var bytes), Is.True);
        Assert.That(bytes, Is.EqualTo(expected));
    }

    [TestCase(null)]
    [TestCase("")]
    [TestCase("4096")]
    [TestCase("MiB")]
    [TestCase("4 MiB")]
    [TestCase("4mb")]
    [TestCase("4Mb")]
    [TestCase("4mib")]
    [TestCase("1.5MiB")]
    [TestCase("-1MiB")]
    [TestCase("4TiB")]
    [TestCase("9999999999999GiB")]
    public void Refuses_what_is_not_a_size(string? text)
    {
        Assert.That(ByteSize.TryParse(text, out _), Is.False);
    }

    [TestCase(4L << 20, "4 MiB")]
    [TestCase(512L << 10, "512 KiB")]
    [TestCase(900L, "900 B")]
    [TestCase(5_505_024L, "5.2 MiB")]
    [TestCase((4L << 20) + 1, "4.0 MiB")]
    [TestCase(1L << 30, "1 GiB")]
    public void Formats_for_people_without_rounding_a_size_down_to_a_limit(long bytes, string expected)
    {
        Assert.That(ByteSize.Format(bytes), Is.EqualTo(expected));
    }
}
