using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

public class EnvironmentSubstitutionTests
{
    private static readonly Dictionary<string, string> Variables = new()
    {
        ["HOST"] = "example.com",
        ["EMPTY"] = "",
        ["TOKEN"] = "s3cr3t",
        ["_under_1"] = "u",
    };

    private static string? Substitute(string text, out string? error) =>
        EnvironmentSubstitution.TrySubstitute(text, name => Variables.GetValueOrDefault(name), out error);

    [TestCase("plain text", "plain text")]
    [TestCase("https://${HOST}/hook", "https://example.com/hook")]
    [TestCase("${HOST}${HOST}", "example.comexample.com")]
    [TestCase("${MISSING:-fallback}", "fallback")]
    [TestCase("${EMPTY:-fallback}", "fallback")]
    [TestCase("${HOST:-fallback}", "example.com")]
    [TestCase("${MISSING:-}", "")]
    [TestCase("${MISSING:-a:-b}", "a:-b")]
    [TestCase("${EMPTY}", "")]
    [TestCase("${_under_1}", "u")]
    [TestCase("$$", "$")]
    [TestCase("$${HOST}", "${HOST}")]
    [TestCase("cost: 5$", "cost: 5$")]
    [TestCase("$HOST", "$HOST")]
    [TestCase("a$b", "a$b")]
    [TestCase("$$$${HOST}", "$${HOST}")]
    [TestCase("$$${HOST}", "$example.com")]
    public void Substitutes_like_a_shell(string text, string expected)
    {
        Assert.That(Substitute(text, out var error), Is.EqualTo(expected));
        Assert.That(error, Is.Null);
    }

    [Test]
    public void A_default_is_not_substituted_again()
    {
        Assert.That(Substitute("${MISSING:-${HOST}}", out _), Is.EqualTo("${HOST}"));
    }

    [Test]
    public void Missing_variable_without_default_is_an_error_naming_it()
    {
        Assert.That(Substitute("Bearer ${BILLING_TOKEN}", out var error), Is.Null);
        Assert.That(error, Does.Contain("'BILLING_TOKEN' is not set"));
    }

    [TestCase("${}")]
    [TestCase("${1ABC}")]
    [TestCase("${A-B}")]
    [TestCase("${A B}")]
    [TestCase("${:-x}")]
    public void A_reference_without_a_valid_name_is_an_error(string text)
    {
        Assert.That(Substitute(text, out var error), Is.Null);
        Assert.That(error, Does.Contain("no valid variable name"));
    }

    [Test]
    public void An_unterminated_reference_is_an_error()
    {
        Assert.That(Substitute("abc ${HOST", out var error), Is.Null);
        Assert.That(error, Does.Contain("without a closing '}'"));
    }

    [Test]
    public void An_invalid_reference_is_not_quoted_in_the_error()
    {
        Assert.That(Substitute("Bearer ${my token}", out var error), Is.Null);
        Assert.That(error, Does.Not.Contain("my token"));
    }
}
