using System.Security.Cryptography;
using System.Text;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class WebhookSignerTests
{
    // The published Standard Webhooks test vector.
    private const string Secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    private const string MsgId = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    private const long Timestamp = 1614265330;
    private const string Signature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    private const string OtherSecret = "whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    private static readonly byte[] Body = Encoding.UTF8.GetBytes("""{"test": 2432232314}""");
    private static readonly DateTimeOffset AtTimestamp = DateTimeOffset.FromUnixTimeSeconds(Timestamp);

    [Test]
    public void Signs_the_published_test_vector()
    {
        Assert.That(WebhookSigner.Sign(MsgId, Timestamp, Body, [Secret]), Is.EqualTo(Signature));
    }

    [Test]
    public void An_instance_signs_as_the_static_method_does()
    {
        Assert.That(new WebhookSigner([Secret]).Sign(MsgId, Timestamp, Body), Is.EqualTo(Signature));
    }

    [Test]
    public void Every_secret_signs_in_order_separated_by_spaces()
    {
        var header = WebhookSigner.Sign(MsgId, Timestamp, Body, [Secret, OtherSecret]);

        var parts = header.Split(' ');
        Assert.That(parts, Has.Length.EqualTo(2));
        Assert.That(parts[0], Is.EqualTo(Signature));
        Assert.That(parts[1], Is.EqualTo(WebhookSigner.Sign(MsgId, Timestamp, Body, [OtherSecret])));
    }

    [Test]
    public void The_signature_is_the_hmac_of_id_timestamp_and_body_for_a_long_id_and_a_large_body()
    {
        var id = "msg_" + new string('x', 1000);
        var body = new byte[2 * 1024 * 1024];
        new Random(7).NextBytes(body);
        var key = Convert.FromBase64String(OtherSecret["whsec_".Length..]);
        byte[] signed = [.. Encoding.UTF8.GetBytes($"{id}.{Timestamp}."), .. body];
        var expected = HMACSHA256.HashData(key, signed);

        Assert.That(WebhookSigner.Sign(id, Timestamp, body, [OtherSecret]), Is.EqualTo("v1," + Convert.ToBase64String(expected)));
    }

    [Test]
    public void A_changed_id_timestamp_or_body_changes_the_signature()
    {
        Assert.That(WebhookSigner.Sign(MsgId + "x", Timestamp, Body, [Secret]), Is.Not.EqualTo(Signature));
        Assert.That(WebhookSigner.Sign(MsgId, Timestamp + 1, Body, [Secret]), Is.Not.EqualTo(Signature));
        Assert.That(WebhookSigner.Sign(MsgId, Timestamp, Body.AsSpan(1), [Secret]), Is.Not.EqualTo(Signature));
    }

    [Test]
    public void An_id_with_a_dot_is_refused_since_dots_separate_the_signed_parts()
    {
        Assert.Throws<ArgumentException>(() => WebhookSigner.Sign("msg.1", Timestamp, Body, [Secret]));
    }

    [Test]
    public void A_signer_needs_a_secret()
    {
        Assert.Throws<ArgumentException>(() => _ = new WebhookSigner([]));
    }

    [Test]
    public void An_invalid_secret_is_refused_without_quoting_it()
    {
        var exception = Assert.Throws<ArgumentException>(() => _ = new WebhookSigner(["whsec_hunter2!"]))!;

        Assert.That(exception.Message, Does.Not.Contain("hunter2"));
    }

    [Test]
    public void Verify_accepts_the_test_vector()
    {
        Assert.That(Verify(Signature), Is.EqualTo(WebhookVerification.Valid));
    }

    [Test]
    public void Verify_accepts_any_matching_signature_among_several()
    {
        var rotated = WebhookSigner.Sign(MsgId, Timestamp, Body, [OtherSecret, Secret]);

        Assert.That(Verify(rotated, [Secret]), Is.EqualTo(WebhookVerification.Valid));
        Assert.That(Verify(Signature, [OtherSecret, Secret]), Is.EqualTo(WebhookVerification.Valid));
    }

    [Test]
    public void Verify_skips_other_schemes_and_malformed_entries()
    {
        Assert.That(Verify("v1a,abc v2,xyz v1,!!! v1 " + Signature), Is.EqualTo(WebhookVerification.Valid));
    }

    [Test]
    public void Verify_refuses_a_changed_body_id_or_secret()
    {
        Assert.That(WebhookSigner.Verify(MsgId, "1614265330", Encoding.UTF8.GetBytes("""{"test": 2432232315}"""), Signature, [Secret], AtTimestamp), Is.EqualTo(WebhookVerification.NoMatchingSignature));
        Assert.That(WebhookSigner.Verify("msg_other", "1614265330", Body, Signature, [Secret], AtTimestamp), Is.EqualTo(WebhookVerification.NoMatchingSignature));
        Assert.That(Verify(Signature, [OtherSecret]), Is.EqualTo(WebhookVerification.NoMatchingSignature));
        Assert.That(Verify(Signature, ["not a secret"]), Is.EqualTo(WebhookVerification.NoMatchingSignature));
    }

    [Test]
    public void Verify_refuses_a_timestamp_outside_the_tolerance_either_way()
    {
        var tolerance = TimeSpan.FromMinutes(5);

        Assert.That(Verify(Signature, now: AtTimestamp + tolerance), Is.EqualTo(WebhookVerification.Valid));
        Assert.That(Verify(Signature, now: AtTimestamp - tolerance), Is.EqualTo(WebhookVerification.Valid));
        Assert.That(Verify(Signature, now: AtTimestamp + tolerance + TimeSpan.FromSeconds(1)), Is.EqualTo(WebhookVerification.TimestampOutsideTolerance));
        Assert.That(Verify(Signature, now: AtTimestamp - tolerance - TimeSpan.FromSeconds(1)), Is.EqualTo(WebhookVerification.TimestampOutsideTolerance));
        Assert.That(
            WebhookSigner.Verify(MsgId, "1614265330", Body, Signature, [Secret], AtTimestamp + TimeSpan.FromHours(1), TimeSpan.FromHours(2)),
            Is.EqualTo(WebhookVerification.Valid));
    }

    [TestCase("")]
    [TestCase("abc")]
    [TestCase("-1614265330")]
    [TestCase("1614265330.5")]
    [TestCase("99999999999999999")]
    public void Verify_refuses_a_timestamp_that_is_not_unix_seconds(string timestamp)
    {
        var expected = timestamp.Length == 0 ? WebhookVerification.MissingHeader : WebhookVerification.InvalidTimestamp;

        Assert.That(WebhookSigner.Verify(MsgId, timestamp, Body, Signature, [Secret], AtTimestamp), Is.EqualTo(expected));
    }

    [Test]
    public void Verify_reports_a_missing_header()
    {
        Assert.That(WebhookSigner.Verify(null, "1614265330", Body, Signature, [Secret], AtTimestamp), Is.EqualTo(WebhookVerification.MissingHeader));
        Assert.That(WebhookSigner.Verify(MsgId, null, Body, Signature, [Secret], AtTimestamp), Is.EqualTo(WebhookVerification.MissingHeader));
        Assert.That(WebhookSigner.Verify(MsgId, "1614265330", Body, null, [Secret], AtTimestamp), Is.EqualTo(WebhookVerification.MissingHeader));
    }

    private static WebhookVerification Verify(string signatureHeader, IReadOnlyList<string>? secrets = null, DateTimeOffset? now = null) =>
        WebhookSigner.Verify(MsgId, "1614265330", Body, signatureHeader, secrets ?? [Secret], now ?? AtTimestamp);
}
