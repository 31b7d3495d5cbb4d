using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

/// <summary>W3C Trace Context, "traceparent Header" and "Versioning of traceparent"; SPEC "Roles and secrets".</summary>
public class TraceParentTests
{
    private const string Valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    [Test]
    public void A_version_00_traceparent_is_split_into_its_ids_and_forwarded_as_written()
    {
        Assert.That(TraceParent.TryParse(Valid, out var parsed), Is.True);
        Assert.Multiple(() =>
        {
            Assert.That(parsed.Value, Is.SameAs(Valid));
            Assert.That(parsed.TraceId.ToString(), Is.EqualTo("4bf92f3577b34da6a3ce929d0e0e4736"));
            Assert.That(parsed.SpanId.ToString(), Is.EqualTo("00f067aa0ba902b7"));
            Assert.That(parsed.Flags.ToString(), Is.EqualTo("01"));
        });
    }

    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")]
    [TestCase("00-00000000000000000000000000000001-0000000000000001-03")]
    public void Any_flags_and_any_non_zero_ids_are_valid_in_version_00(string value)
    {
        Assert.That(TraceParent.TryParse(value, out var parsed), Is.True);
        Assert.That(parsed.Value, Is.EqualTo(value));
    }

    [TestCase(null, TestName = "null")]
    [TestCase("", TestName = "empty")]
    [TestCase("garbage")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", TestName = "flags one digit short")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", TestName = "version 00 followed by a dash")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", TestName = "version 00 with more fields")]
    [TestCase(" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TestName = "leading space")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", TestName = "trailing space")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Injected: 1", TestName = "a header injection")]
    [TestCase("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", TestName = "wrong separators")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", TestName = "trace id not hex")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0G", TestName = "flags not hex")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bé-01", TestName = "non-ASCII")]
    [TestCase("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", TestName = "upper-case trace id")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01", TestName = "upper-case parent id")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A", TestName = "upper-case flags")]
    [TestCase("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TestName = "upper-case version")]
    [TestCase("00-00000000000000000000000000000000-00f067aa0ba902b7-01", TestName = "all-zero trace id")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", TestName = "all-zero parent id")]
    [TestCase("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TestName = "version ff")]
    [TestCase("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TestName = "version not hex")]
    [TestCase("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0", TestName = "later version shorter than 55")]
    [TestCase("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", TestName = "later version, flags not followed by a dash")]
    [TestCase("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01", TestName = "later version, parent id not followed by a dash")]
    [TestCase("01-00000000000000000000000000000000-00f067aa0ba902b7-01", TestName = "later version, all-zero trace id")]
    [TestCase("4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", TestName = "no version")]
    public void Anything_else_is_not_a_traceparent(string? value)
    {
        Assert.That(TraceParent.TryParse(value, out var parsed), Is.False);
        Assert.That(parsed.Value, Is.Null);
    }

    [TestCase("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    [TestCase("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-the-future-adds", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")]
    [TestCase("02-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff-", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03")]
    public void A_later_version_is_read_by_its_version_00_fields_and_forwarded_as_version_00(string value, string forwarded)
    {
        Assert.That(TraceParent.TryParse(value, out var parsed), Is.True);
        Assert.That(parsed.Value, Is.EqualTo(forwarded));
        Assert.That(parsed.TraceId.ToString(), Is.EqualTo("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
