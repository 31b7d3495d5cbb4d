using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class SigningSecretTests
{
    [Test]
    public void The_key_is_the_base64_after_the_prefix()
    {
        Assert.That(SigningSecret.TryDecode("whsec_AAECAwQF", out var key), Is.True);
        Assert.That(key, Is.EqualTo(new byte[] { 0, 1, 2, 3, 4, 5 }));
    }

    [TestCase("AAECAwQF")]
    [TestCase("WHSEC_AAECAwQF")]
    [TestCase("whsec_")]
    [TestCase("whsec_AAEC AwQF")]
    [TestCase("whsec_AAECAwQ")]
    [TestCase("whsec_AAEC*wQF")]
    [TestCase("whsec_====")]
    public void Anything_but_whsec_and_padded_base64_is_not_a_secret(string secret)
    {
        Assert.That(SigningSecret.TryDecode(secret, out var key), Is.False);
        Assert.That(key, Is.Empty);
    }

    [Test]
    public void Several_secrets_are_separated_by_any_whitespace()
    {
        Assert.That(SigningSecret.Split(" whsec_a \t whsec_b\nwhsec_c "), Is.EqualTo(new[] { "whsec_a", "whsec_b", "whsec_c" }));
        Assert.That(SigningSecret.Split("   "), Is.Empty);
    }
}
