using System.Text;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

/// <summary>SPEC "Roles and secrets": failed attempts keep a short excerpt of the response, never a credential.</summary>
public class ResponseExcerptTests
{
    private const string Token = "tok-5f1e9c0a7b3d2e4f6a8b";

    private static readonly string[] Configured = [$"Bearer {Token}", "key-0123456789abcdef", "acme"];

    private static string? Excerpt(string body, bool truncated = false, IReadOnlyList<string>? known = null) =>
        ResponseExcerpt.Create(Encoding.UTF8.GetBytes(body), truncated, known ?? Configured);

    [Test]
    public void An_ordinary_error_body_is_kept_as_it_is()
    {
        const string body = "{\"error\":\"amount must be positive\",\"field\":\"amount\"}\nsee https://example.com/docs?page=2";

        Assert.That(Excerpt(body), Is.EqualTo(body));
    }

    [TestCase("""{"x-partner-pass":"Zm9v\/YmFy+YmF6"}""", TestName = "escaped by PHP's json_encode")]
    [TestCase("""{"x-partner-pass":"Zm9v/YmFy\u002BYmF6"}""", TestName = "escaped by .NET's encoder")]
    [TestCase("""{"x-partner-pass":"Zm9v/YmFy\u002bYmF6"}""", TestName = "escaped by Go's encoder")]
    [TestCase("missing field; got x-partner-pass=Zm9v%2FYmFy%2BYmF6", TestName = "percent-encoded in a query")]
    public void A_configured_value_under_an_ordinary_name_is_redacted_as_receivers_escape_it(string body)
    {
        var excerpt = Excerpt(body, known: ["Zm9v/YmFy+YmF6"]);

        Assert.That(excerpt, Does.Contain(ResponseExcerpt.Redacted));
        Assert.That(excerpt, Does.Not.Contain("YmFy").IgnoreCase);
    }

    [Test]
    public void An_empty_body_keeps_nothing()
    {
        Assert.That(ResponseExcerpt.Create([], truncated: false, Configured), Is.Null);
    }

    [Test]
    public void A_header_dump_echoing_the_request_keeps_no_credential()
    {
        var body = $"""
            POST /hook HTTP/1.1
            Host: 127.0.0.1:8080
            Authorization: Bearer {Token}
            X-Api-Key: key-0123456789abcdef
            Proxy-Authorization: Basic dXNlcjpwYXNzd29yZA==
            Cookie: session=abc123def456
            webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=
            X-Tenant: acme
            """;

        var excerpt = Excerpt(body)!;

        Assert.Multiple(() =>
        {
            Assert.That(excerpt, Does.Not.Contain(Token).And.Not.Contain("0123456789abcdef").And.Not.Contain("dXNlcjpwYXNzd29yZA")
                .And.Not.Contain("abc123def456").And.Not.Contain("K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN"));
            Assert.That(excerpt, Does.Contain("Authorization: [redacted]").And.Contain("X-Api-Key: [redacted]")
                .And.Contain("Proxy-Authorization: [redacted]").And.Contain("Cookie: [redacted]").And.Contain("webhook-signature: [redacted]"));
            Assert.That(excerpt, Does.Contain("Host: 127.0.0.1:8080").And.Contain("X-Tenant: acme"), "what is not a credential stays");
        });
    }

    [Test]
    public void A_json_echo_keeps_no_credential()
    {
        // As http-https-echo (the compose sample's receiver) and many frameworks' error pages write it.
        var body = $$"""{"path":"/webhooks/orders","headers":{"host":"receiver:8080","authorization":"Bearer {{Token}}","x-api-key":["key-0123456789abcdef"],"x-auth-token":"a\"quoted\"secret","content-type":"application/json"},"method":"POST"}""";

        var excerpt = Excerpt(body)!;

        Assert.That(excerpt, Does.Not.Contain(Token).And.Not.Contain("0123456789abcdef").And.Not.Contain("quoted"));
        Assert.That(excerpt, Does.Contain("\"authorization\":\"[redacted]\"").And.Contain("\"x-auth-token\":\"[redacted]\"")
            .And.Contain("\"content-type\":\"application/json\"").And.Contain("\"method\":\"POST\""));
    }

    [Test]
    public void A_python_repr_keeps_no_credential()
    {
        var excerpt = Excerpt("{'Authorization': 'Basic dXNlcjpwYXNzd29yZA==', 'Host': 'x'}")!;

        Assert.That(excerpt, Is.EqualTo("{'Authorization': '[redacted]', 'Host': 'x'}"));
    }

    [TestCase("redirected to /login?access_token=abc123&next=/", "redirected to /login?access_token=[redacted]&next=/")]
    [TestCase("client_id=42&client_secret=s3cr3t&grant_type=x", "client_id=42&client_secret=[redacted]&grant_type=x")]
    [TestCase("<a href=\"/x?api_key=AIzaSyA-123\">", "<a href=\"/x?api_key=[redacted]\">")]
    [TestCase("password=hunter2", "password=[redacted]")]
    public void Query_and_form_parameters_with_credential_names_are_redacted(string body, string kept)
    {
        Assert.That(Excerpt(body, known: []), Is.EqualTo(kept));
    }

    [TestCase("upstream said: Bearer abc.def-ghi~jkl+/== was rejected", "upstream said: Bearer [redacted] was rejected")]
    [TestCase("got basic dXNlcjpwYXNzd29yZA== instead", "got basic [redacted] instead")]
    [TestCase("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig_nature-x expired", "jwt [redacted] expired")]
    public void Bearer_and_basic_credentials_and_json_web_tokens_are_redacted_anywhere(string body, string kept)
    {
        Assert.That(Excerpt(body, known: []), Is.EqualTo(kept));
    }

    [Test]
    public void A_configured_header_value_is_redacted_wherever_it_appears()
    {
        var excerpt = Excerpt($"<pre>you sent {Token} and KEY-0123456789ABCDEF</pre>")!;

        Assert.That(excerpt, Is.EqualTo("<pre>you sent [redacted] and [redacted]</pre>"));
    }

    [Test]
    public void A_short_configured_value_is_not_redacted_everywhere()
    {
        Assert.That(Excerpt("tenant acme is over its quota"), Is.EqualTo("tenant acme is over its quota"));
    }

    [Test]
    public void A_configured_value_cut_off_by_the_end_of_the_excerpt_is_redacted()
    {
        var excerpt = Excerpt("<td>" + Token[..9], truncated: true)!;

        Assert.That(excerpt, Is.EqualTo("<td>[redacted]"));
    }

    [Test]
    public void The_excerpt_is_at_most_a_kilobyte_whatever_the_body()
    {
        var body = string.Concat(Enumerable.Repeat("key=v&", 1000));
        var bytes = Encoding.UTF8.GetBytes(body)[..ResponseExcerpt.MaxBytes];

        var excerpt = ResponseExcerpt.Create(bytes, truncated: true, Configured)!;

        Assert.That(excerpt, Has.Length.LessThanOrEqualTo(ResponseExcerpt.MaxBytes));
        Assert.That(excerpt, Does.StartWith("key=[redacted]&key=[redacted]&"), "a redaction may lengthen it; it is cut again");
    }
}
