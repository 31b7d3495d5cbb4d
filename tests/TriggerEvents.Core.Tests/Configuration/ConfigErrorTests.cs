using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

public class ConfigErrorTests
{
    private static string WithWebhookLine(string line) =>
        ConfigText.Subscription().Replace("https://example.com/hook\n", $"https://example.com/hook\n      {line}\n", StringComparison.Ordinal);

    private static string WithUrl(string url) =>
        ConfigText.Subscription().Replace("https://example.com/hook", url, StringComparison.Ordinal);

    [TestCase("")]
    [TestCase("# only a comment\n")]
    [TestCase("---\n")]
    [TestCase("~\n")]
    public void An_empty_file_is_an_error(string yaml)
    {
        Assert.That(ConfigText.Error(yaml), Is.EqualTo("te.yaml:1:1: the file is empty: expected a map with a 'subscriptions' list"));
    }

    [Test]
    public void A_missing_variable_does_not_hide_the_other_problems_of_the_file()
    {
        var yaml = WithWebhookLine("timeout: soon").Replace("https://example.com/hook", "${NOT_SET_ANYWHERE}", StringComparison.Ordinal) + "colour: blue\n";

        var errors = ConfigText.Errors(yaml);

        Assert.That(errors, Has.Count.EqualTo(3));
        Assert.That(errors[0], Does.Contain("NOT_SET_ANYWHERE"));
        Assert.That(errors[1], Does.Contain("'soon' is not a duration"));
        Assert.That(errors[2], Does.Contain("unknown key 'colour'"));
    }

    [Test]
    public void A_yaml_syntax_error_has_file_line_and_column()
    {
        Assert.That(ConfigText.Error("subscriptions: [a, b\n"), Does.StartWith("te.yaml:2:1: invalid YAML: "));
    }

    [Test]
    public void Input_that_trips_the_yaml_scanner_is_still_an_error_at_a_place()
    {
        Assert.That(ConfigText.Error("subscriptions: [a, b\nworker: {}\n"), Does.StartWith("te.yaml:1:18: invalid YAML: cannot parse what follows here"));
    }

    [Test]
    public void An_unterminated_quote_is_a_syntax_error_at_the_quote()
    {
        Assert.That(ConfigText.Error("subscriptions:\n  - name: \"orders\n"), Does.StartWith("te.yaml:2:11: invalid YAML: "));
    }

    [Test]
    public void Several_documents_are_an_error()
    {
        Assert.That(ConfigText.Error("subscriptions: []\n---\nsubscriptions: []\n"), Is.EqualTo("te.yaml:2:1: the file holds more than one YAML document; write one"));
    }

    [Test]
    public void A_file_that_is_not_a_map_is_an_error()
    {
        Assert.That(ConfigText.Error("- name: a\n"), Is.EqualTo("te.yaml:1:1: expected a map, found a list"));
    }

    [Test]
    public void A_file_without_subscriptions_is_an_error()
    {
        Assert.That(ConfigText.Error("worker:\n  lease: 60s\n"), Is.EqualTo("te.yaml:1:1: missing required key 'subscriptions' (a list; write 'subscriptions: []' for none)"));
    }

    [Test]
    public void A_misspelt_key_is_an_error_suggesting_the_right_one()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    retry:\n      max_attempt: 3\n")),
            Is.EqualTo("te.yaml:7:7: subscriptions[0].retry: unknown key 'max_attempt' (did you mean 'max_attempts'?)"));
    }

    [Test]
    public void A_misspelt_top_level_key_is_reported_with_the_missing_one()
    {
        Assert.That(ConfigText.Errors("subscription:\n  - name: a\n"), Is.EqualTo(new[]
        {
            "te.yaml:1:1: unknown key 'subscription' (did you mean 'subscriptions'?)",
            "te.yaml:1:1: missing required key 'subscriptions' (a list; write 'subscriptions: []' for none)",
        }));
    }

    [Test]
    public void An_unknown_key_with_no_near_match_lists_the_known_keys()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    colour: blue\n")),
            Is.EqualTo("te.yaml:6:5: subscriptions[0]: unknown key 'colour' (expected name, trigger, operations, start_from, webhook, retry, max_in_flight, max_event_bytes, ordering, ordering_key, batch, rate_limit, circuit_breaker)"));
    }

    [Test]
    public void A_duplicate_key_is_an_error_at_the_second_one()
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription("    name: again\n")), Is.EqualTo("te.yaml:6:5: duplicate key 'name' (first written at line 2)"));
    }

    [Test]
    public void A_list_where_a_map_belongs_is_an_error()
    {
        Assert.That(
            ConfigText.Error("subscriptions:\n  - name: a\n    trigger: t\n    webhook: [https://example.com/]\n"),
            Is.EqualTo("te.yaml:4:14: subscriptions[0].webhook: expected a map, found a list"));
    }

    [Test]
    public void A_map_where_a_list_belongs_is_an_error()
    {
        Assert.That(ConfigText.Error("subscriptions:\n  name: a\n"), Is.EqualTo("te.yaml:2:3: subscriptions: expected a list, found a map"));
    }

    [TestCase("abc", "'abc' is not a whole number")]
    [TestCase("1.5", "'1.5' is not a whole number")]
    [TestCase("1e3", "'1e3' is not a whole number")]
    [TestCase("99999999999", "99999999999 is too large")]
    [TestCase("0", "must be at least 1, not 0")]
    [TestCase("-4", "must be at least 1, not -4")]
    [TestCase("[1]", "expected a single value, found a list")]
    [TestCase("{a: 1}", "expected a single value, found a map")]
    public void A_bad_number_is_an_error_at_its_value(string written, string message)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"    max_in_flight: {written}\n")), Is.EqualTo($"te.yaml:6:20: subscriptions[0].max_in_flight: {message}"));
    }

    [TestCase("0")]
    [TestCase("65536")]
    public void A_port_outside_the_tcp_range_is_an_error(string port)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"worker:\n  http_port: {port}\n")), Is.EqualTo($"te.yaml:7:14: worker.http_port: must be from 1 to 65535, not {port}"));
    }

    [TestCase("lease: 60", "te.yaml:7:10: worker.lease: '60' is not a duration: write 500ms, 10s, 5m, 1h or 7d")]
    [TestCase("lease: 1 minute", "te.yaml:7:10: worker.lease: '1 minute' is not a duration: write 500ms, 10s, 5m, 1h or 7d")]
    [TestCase("poll_interval: 0s", "te.yaml:7:18: worker.poll_interval: must be longer than 0")]
    [TestCase("shutdown_timeout: -1s", "te.yaml:7:21: worker.shutdown_timeout: '-1s' is not a duration: write 500ms, 10s, 5m, 1h or 7d")]
    public void A_bad_duration_is_an_error_at_its_value(string line, string error)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"worker:\n  {line}\n")), Is.EqualTo(error));
    }

    [TestCase("deny_private_networks: yes", "te.yaml:7:26: worker.deny_private_networks: 'yes' is not true or false")]
    [TestCase("deny_private_networks: 1", "te.yaml:7:26: worker.deny_private_networks: '1' is not true or false")]
    [TestCase("deny_private_networks: [true]", "te.yaml:7:26: worker.deny_private_networks: expected a single value, found a list")]
    public void A_flag_that_is_not_true_or_false_is_an_error_at_its_value(string line, string error)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"worker:\n  {line}\n")), Is.EqualTo(error));
    }

    [Test]
    public void A_bad_retention_mentions_forever()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("retention:\n  delivered_events: a week\n")),
            Is.EqualTo("te.yaml:7:21: retention.delivered_events: 'a week' is not a duration: write 500ms, 10s, 5m, 1h or 7d, or forever"));
    }

    [Test]
    public void A_zero_webhook_timeout_is_an_error()
    {
        Assert.That(ConfigText.Error(WithWebhookLine("timeout: 0s")), Is.EqualTo("te.yaml:6:16: subscriptions[0].webhook.timeout: must be longer than 0"));
    }

    [TestCase("not a url")]
    [TestCase("/relative/path")]
    [TestCase("example.com/hook")]
    [TestCase("http://")]
    public void A_url_that_is_not_absolute_http_is_an_error(string url)
    {
        Assert.That(ConfigText.Error(WithUrl($"'{url}'")), Is.EqualTo("te.yaml:5:12: subscriptions[0].webhook.url: is not an absolute http:// or https:// URL"));
    }

    [Test]
    public void A_url_of_another_scheme_is_an_error_naming_the_scheme()
    {
        Assert.That(ConfigText.Error(WithUrl("ftp://example.com/drop")), Is.EqualTo("te.yaml:5:12: subscriptions[0].webhook.url: scheme 'ftp' is not supported: use http or https"));
    }

    [Test]
    public void A_url_with_credentials_is_an_error_that_does_not_quote_them()
    {
        var error = ConfigText.Error(WithUrl("${URL}"), new Dictionary<string, string> { ["URL"] = "https://admin:hunter2@example.com/hook" });

        Assert.That(error, Is.EqualTo("te.yaml:5:12: subscriptions[0].webhook.url: holds a user name or password, which would not be sent: put credentials in an Authorization header"));
    }

    [Test]
    public void A_url_with_a_fragment_is_an_error()
    {
        Assert.That(ConfigText.Error(WithUrl("'https://example.com/hook#part'")), Does.EndWith("has a '#' fragment, which is never sent: remove it"));
    }

    [Test]
    public void A_bad_url_is_never_quoted_since_it_may_hold_a_token()
    {
        var error = ConfigText.Error(WithUrl("${URL}"), new Dictionary<string, string> { ["URL"] = "hooks.example.com/services/T0/B0/secret-token-xyz" });

        Assert.That(error, Does.Not.Contain("secret-token-xyz"));
    }

    [Test]
    public void Duplicate_subscription_names_are_an_error_even_in_another_case()
    {
        var errors = ConfigText.Errors("""
            subscriptions:
              - { name: orders, trigger: t, webhook: { url: "https://example.com/" } }
              - { name: other, trigger: t, webhook: { url: "https://example.com/" } }
              - { name: Orders, trigger: t, webhook: { url: "https://example.com/" } }
            """);

        Assert.That(errors, Is.EqualTo(new[] { "te.yaml:4:5: subscriptions[2].name: subscription name 'Orders' is already used at line 2 (names are compared ignoring case)" }));
    }

    [Test]
    public void Missing_required_keys_are_each_an_error_at_the_subscription()
    {
        Assert.That(ConfigText.Errors("subscriptions:\n  - max_in_flight: 4\n"), Is.EqualTo(new[]
        {
            "te.yaml:2:5: subscriptions[0]: missing required key 'name'",
            "te.yaml:2:5: subscriptions[0]: missing required key 'trigger'",
            "te.yaml:2:5: subscriptions[0]: missing required key 'webhook'",
        }));
    }

    [Test]
    public void A_webhook_without_a_url_is_an_error()
    {
        Assert.That(
            ConfigText.Error("subscriptions:\n  - name: a\n    trigger: t\n    webhook:\n      timeout: 5s\n"),
            Is.EqualTo("te.yaml:5:7: subscriptions[0].webhook: missing required key 'url'"));
    }

    [Test]
    public void A_required_key_with_an_empty_value_is_missing()
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription().Replace("name: orders", "name: \n    # comment", StringComparison.Ordinal)), Does.EndWith("subscriptions[0]: missing required key 'name'"));
    }

    [Test]
    public void An_empty_subscription_item_is_an_error()
    {
        Assert.That(ConfigText.Error("subscriptions:\n  -\n  - { name: a, trigger: t, webhook: { url: \"https://example.com/\" } }\n"), Does.EndWith("subscriptions[0]: expected a map, found nothing"));
    }

    [TestCase("billing orders")]
    [TestCase("billing.orders")]
    [TestCase("bestellungen-ä")]
    [TestCase("'a/b'")]
    public void A_subscription_name_with_other_characters_is_an_error(string name)
    {
        var error = ConfigText.Error(ConfigText.Subscription().Replace("name: orders", $"name: {name}", StringComparison.Ordinal));

        Assert.That(error, Does.StartWith("te.yaml:2:11: subscriptions[0].name: '").And.EndWith("' is not a subscription name: use only letters, digits, '-' and '_'"));
    }

    [Test]
    public void A_subscription_name_may_have_63_characters_but_not_64()
    {
        var ok = new string('a', 63);
        var tooLong = new string('b', 64);

        Assert.That(ConfigText.Parse(ConfigText.Subscription().Replace("name: orders", $"name: {ok}", StringComparison.Ordinal)).Subscriptions[0].Name, Is.EqualTo(ok));
        Assert.That(
            ConfigText.Error(ConfigText.Subscription().Replace("name: orders", $"name: {tooLong}", StringComparison.Ordinal)),
            Is.EqualTo("te.yaml:2:11: subscriptions[0].name: a subscription name may be at most 63 characters long, this one has 64"));
    }

    [Test]
    public void A_trigger_name_follows_the_same_rule()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription().Replace("trigger: orders_changed", "trigger: public.orders", StringComparison.Ordinal)),
            Is.EqualTo("te.yaml:3:14: subscriptions[0].trigger: 'public.orders' is not a trigger name: use only letters, digits, '-' and '_'"));
    }

    [Test]
    public void A_name_with_a_trailing_line_break_from_the_environment_is_an_error()
    {
        var error = ConfigText.Error(
            ConfigText.Subscription().Replace("name: orders", "name: ${NAME}", StringComparison.Ordinal),
            new Dictionary<string, string> { ["NAME"] = "orders\n" });

        Assert.That(error, Does.Contain("is not a subscription name"));
    }

    [Test]
    public void Missing_variable_without_default_is_an_error_naming_it()
    {
        Assert.That(ConfigText.Errors(ConfigText.SpecExample), Is.EqualTo(new[]
        {
            "te.yaml:7:12: environment variable 'BILLING_URL' is not set and has no default (write ${BILLING_URL:-default} to give one)",
            "te.yaml:9:24: environment variable 'BILLING_TOKEN' is not set and has no default (write ${BILLING_TOKEN:-default} to give one)",
            "te.yaml:11:23: environment variable 'BILLING_SECRET' is not set and has no default (write ${BILLING_SECRET:-default} to give one)",
        }));
    }

    [Test]
    public void Every_problem_in_the_file_is_reported_in_the_order_of_the_file()
    {
        const string yaml = """
            subscriptions:
              - name: "bad name"
                trigger: t
                webhook:
                  url: ftp://example.com/
                retry:
                  max_attempts: zero
            worker:
              lease: forever
            """;

        var exception = Assert.Throws<ConfigException>(() => ConfigText.Parse(yaml))!;

        Assert.That(exception.Errors.Select(e => (e.Line, e.Column)), Is.EqualTo(new[] { (2, 11), (5, 12), (7, 21), (9, 10) }));
        Assert.That(exception.Errors.Select(e => e.File), Is.All.EqualTo("te.yaml"));
        Assert.That(exception.Message, Is.EqualTo(string.Join('\n', exception.Errors)));
    }

    [Test]
    public void An_interval_ceiling_below_the_first_interval_is_an_error()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    retry:\n      initial_interval: 5s\n      max_interval: 1s\n")),
            Is.EqualTo("te.yaml:8:21: subscriptions[0].retry.max_interval: max_interval (1s) must be at least initial_interval (5s)"));
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    retry:\n      initial_interval: 2h\n")),
            Is.EqualTo("te.yaml:7:25: subscriptions[0].retry.initial_interval: max_interval (1h, the default) must be at least initial_interval (2h)"));
    }

    [Test]
    public void A_webhook_timeout_as_long_as_the_lease_is_an_error()
    {
        Assert.That(
            ConfigText.Errors(WithWebhookLine("timeout: 60s")),
            Has.Some.StartWith("te.yaml:6:16: subscriptions[0].webhook.timeout: 1m must be shorter than worker.lease (1m)"));
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("worker:\n  lease: 5s\n")),
            Does.StartWith("te.yaml:7:10: subscriptions[0].webhook.timeout: 10s must be shorter than worker.lease (5s)"));
    }

    [Test]
    public void A_webhook_timeout_as_long_as_the_shutdown_timeout_is_an_error_at_the_timeout_or_else_at_the_shutdown_timeout()
    {
        Assert.That(
            ConfigText.Error(WithWebhookLine("timeout: 30s")),
            Is.EqualTo("te.yaml:6:16: subscriptions[0].webhook.timeout: 30s must be shorter than worker.shutdown_timeout (30s), or a request still running at SIGTERM is released and delivered twice"));
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("worker:\n  shutdown_timeout: 5s\n")),
            Is.EqualTo("te.yaml:7:21: subscriptions[0].webhook.timeout: 10s must be shorter than worker.shutdown_timeout (5s), or a request still running at SIGTERM is released and delivered twice"));
        Assert.That(ConfigText.Parse(ConfigText.Subscription("worker:\n  shutdown_timeout: 11s\n")).Worker.ShutdownTimeout, Is.EqualTo(TimeSpan.FromSeconds(11)));
    }

    [Test]
    public void A_webhook_timeout_longer_than_both_bounds_names_both()
    {
        var errors = ConfigText.Errors(WithWebhookLine("timeout: 2m"));

        Assert.That(errors, Has.Count.EqualTo(2));
        Assert.That(errors[0], Does.Contain("must be shorter than worker.lease (1m)"));
        Assert.That(errors[1], Does.Contain("must be shorter than worker.shutdown_timeout (30s)"));
    }

    [TestCase("signing_secret: ${SECRET}", "")]
    [TestCase("signing_secret: ${SECRET}", "   ")]
    [TestCase("signing_secret: ${UNSET:-}", "")]
    [TestCase("signing_secret:", "")]
    [TestCase("signing_secret: ''", "")]
    public void An_empty_signing_secret_is_an_error_that_says_how_to_send_unsigned(string line, string secret)
    {
        var error = ConfigText.Error(WithWebhookLine(line), new Dictionary<string, string> { ["SECRET"] = secret });

        Assert.That(error, Does.StartWith("te.yaml:6:").And.EndWith(
            "subscriptions[0].webhook.signing_secret: is empty: give a 'whsec_...' secret, or write 'none' to send unsigned requests"));
    }

    [Test]
    public void An_empty_operations_list_is_an_error()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    operations: []\n")),
            Is.EqualTo("te.yaml:6:17: subscriptions[0].operations: lists no operation, so nothing would be delivered; leave the key out to receive all"));
    }

    [Test]
    public void An_unknown_operation_is_an_error()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    operations: [INSERT, TRUNCATE]\n")),
            Is.EqualTo("te.yaml:6:26: subscriptions[0].operations: 'TRUNCATE' is not an operation: use INSERT, UPDATE, DELETE, MANUAL or READ"));
    }

    [Test]
    public void Operations_as_a_single_value_is_an_error()
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription("    operations: INSERT\n")), Is.EqualTo("te.yaml:6:17: subscriptions[0].operations: expected a list, found a single value"));
    }

    [TestCase("yesterday")]
    [TestCase("2026-01-31T09:00:00")]
    [TestCase("2026-13-01")]
    [TestCase("31.01.2026")]
    public void A_start_that_is_not_now_earliest_or_a_zoned_time_is_an_error(string written)
    {
        var error = ConfigText.Error(ConfigText.Subscription($"    start_from: '{written}'\n"));

        Assert.That(error, Is.EqualTo($"te.yaml:6:17: subscriptions[0].start_from: '{written}' is not now, earliest or an ISO 8601 time with a zone, such as 2026-01-31T09:00:00Z"));
    }

    [Test]
    public void A_signing_secret_without_the_prefix_is_an_error_that_does_not_quote_it()
    {
        var error = ConfigText.Error(WithWebhookLine("signing_secret: ${SECRETS}"), new Dictionary<string, string> { ["SECRETS"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw hunter2" });

        Assert.That(error, Is.EqualTo("te.yaml:6:23: subscriptions[0].webhook.signing_secret: secret 2 of 2 does not start with 'whsec_'"));
    }

    [TestCase("whsec_not*base64!")]
    [TestCase("whsec_abc")]
    [TestCase("whsec_")]
    public void A_signing_secret_that_is_not_base64_is_an_error_that_does_not_quote_it(string secret)
    {
        var error = ConfigText.Error(WithWebhookLine($"signing_secret: '{secret}'"));

        Assert.That(error, Is.EqualTo("te.yaml:6:23: subscriptions[0].webhook.signing_secret: the secret is not valid base64 after 'whsec_'"));
    }

    [Test]
    public void Signing_secrets_as_a_list_is_an_error_saying_how_to_write_several()
    {
        Assert.That(
            ConfigText.Error(WithWebhookLine("signing_secret: [whsec_AAECAwQF, whsec_BQQDAgEA]")),
            Is.EqualTo("te.yaml:6:23: subscriptions[0].webhook.signing_secret: write several secrets as one value, separated by spaces"));
    }

    [Test]
    public void A_header_value_with_a_line_break_is_an_error_that_does_not_quote_it()
    {
        var error = ConfigText.Error(
            WithWebhookLine("headers: { Authorization: \"${AUTH}\" }"),
            new Dictionary<string, string> { ["AUTH"] = "Bearer abc123\r\nX-Injected: 1" });

        Assert.That(error, Is.EqualTo("te.yaml:6:33: subscriptions[0].webhook.headers.Authorization: the value may hold only printable ASCII characters, no line breaks"));
        Assert.That(error, Does.Not.Contain("abc123"));
    }

    [Test]
    public void A_header_value_outside_ascii_is_an_error()
    {
        Assert.That(ConfigText.Error(WithWebhookLine("headers: { X-City: Zürich }")), Does.EndWith("headers.X-City: the value may hold only printable ASCII characters, no line breaks"));
    }

    [TestCase("Content-Type")]
    [TestCase("content-type")]
    [TestCase("User-Agent")]
    [TestCase("webhook-signature")]
    [TestCase("Webhook-Id")]
    [TestCase("traceparent")]
    [TestCase("Host")]
    public void A_header_the_engine_sets_cannot_be_configured(string header)
    {
        Assert.That(
            ConfigText.Error(WithWebhookLine($"headers: {{ {header}: x }}")),
            Is.EqualTo($"te.yaml:6:18: subscriptions[0].webhook.headers: '{header}' is set by TriggerEvents itself and cannot be configured"));
    }

    [Test]
    public void A_header_name_that_is_not_a_token_is_an_error()
    {
        Assert.That(ConfigText.Error(WithWebhookLine("headers: { 'X Tenant': x }")), Does.EndWith("headers: 'X Tenant' is not a valid HTTP header name"));
    }

    [Test]
    public void A_header_given_twice_in_different_case_is_an_error()
    {
        Assert.That(ConfigText.Error(WithWebhookLine("headers: { X-Key: a, x-key: b }")), Does.EndWith("headers: header 'x-key' is given twice (header names ignore case)"));
    }

    [Test]
    public void A_header_without_a_value_is_an_error()
    {
        Assert.That(ConfigText.Error(WithWebhookLine("headers:\n        X-Key: ${KEY:-}")), Is.EqualTo("te.yaml:7:16: subscriptions[0].webhook.headers.X-Key: has no value"));
        Assert.That(ConfigText.Error(WithWebhookLine("headers: { X-Key: \"\" }")), Does.EndWith("headers.X-Key: has no value"));
    }

    [Test]
    public void Headers_as_a_list_is_an_error()
    {
        Assert.That(ConfigText.Error(WithWebhookLine("headers: [X-Key]")), Is.EqualTo("te.yaml:6:16: subscriptions[0].webhook.headers: expected a map, found a list"));
    }

    [Test]
    public void No_message_quotes_a_secret_or_a_header_value()
    {
        var environment = new Dictionary<string, string>
        {
            ["SECRET"] = "whsec_!!hunter2!!",
            ["TOKEN"] = "Bearer hunter2\n",
            ["URL"] = "https://user:hunter2@example.com/",
        };
        var yaml = ConfigText.Subscription()
            .Replace("https://example.com/hook", "${URL}\n      signing_secret: ${SECRET}\n      headers:\n        Authorization: ${TOKEN}\n        User-Agent: hunter2", StringComparison.Ordinal);

        var exception = Assert.Throws<ConfigException>(() => ConfigText.Parse(yaml, environment))!;

        Assert.That(exception.Errors, Has.Count.EqualTo(4));
        Assert.That(exception.Message, Does.Not.Contain("hunter2"));
    }

    [Test]
    public void Nesting_deeper_than_any_configuration_needs_is_an_error()
    {
        var yaml = "subscriptions: " + new string('[', 200) + new string(']', 200) + "\n";

        Assert.That(ConfigText.Error(yaml), Does.Contain("nested deeper than 64 levels"));
    }

    [Test]
    public void An_alias_to_no_anchor_is_an_error()
    {
        Assert.That(ConfigText.Errors("subscriptions: *nothing\n")[0], Does.StartWith("te.yaml:1:16: ").And.Contain("nothing"));
    }

    [Test]
    public void A_merge_of_something_other_than_a_map_is_an_error()
    {
        Assert.That(ConfigText.Errors(ConfigText.Subscription("    <<: 5\n")), Does.Contain("te.yaml:6:9: '<<' merges a map or a list of maps"));
    }

    [Test]
    public void A_key_that_is_a_list_is_an_error()
    {
        Assert.That(ConfigText.Errors("? [a, b]\n: 1\nsubscriptions: []\n"), Does.Contain("te.yaml:1:3: a map key must be a single value, not a list"));
    }

    [TestCase("max_event_bytes: 4", "te.yaml:6:22: subscriptions[0].max_event_bytes: '4' is not a size: write 512KiB, 4MiB or 2MB")]
    [TestCase("max_event_bytes: 4 MiB", "te.yaml:6:22: subscriptions[0].max_event_bytes: '4 MiB' is not a size: write 512KiB, 4MiB or 2MB")]
    [TestCase("max_event_bytes: 4mb", "te.yaml:6:22: subscriptions[0].max_event_bytes: '4mb' is not a size: write 512KiB, 4MiB or 2MB")]
    [TestCase("max_event_bytes: 100B", "te.yaml:6:22: subscriptions[0].max_event_bytes: must be from 1 KiB to 1 GiB, not 100 B")]
    [TestCase("max_event_bytes: 2GiB", "te.yaml:6:22: subscriptions[0].max_event_bytes: must be from 1 KiB to 1 GiB, not 2 GiB")]
    [TestCase("max_event_bytes: [4MiB]", "te.yaml:6:22: subscriptions[0].max_event_bytes: expected a single value, found a list")]
    public void A_bad_max_event_bytes_is_an_error_at_its_value(string line, string expected)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"    {line}\n")), Is.EqualTo(expected));
    }

    [Test]
    public void A_max_event_bytes_over_the_workers_body_memory_is_an_error_at_the_size_or_else_at_body_memory()
    {
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("    max_event_bytes: 8MiB\nworker:\n  body_memory: 4MiB\n")),
            Is.EqualTo("te.yaml:6:22: subscriptions[0].max_event_bytes: 8 MiB must be at most worker.body_memory (4 MiB), or an event that large could never be sent"));
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("worker:\n  body_memory: 2MiB\n")),
            Is.EqualTo("te.yaml:7:16: subscriptions[0].max_event_bytes: 4 MiB (the default) must be at most worker.body_memory (2 MiB), or an event that large could never be sent"));
        Assert.That(
            ConfigText.Error(ConfigText.Subscription("worker:\n  body_memory: 512KiB\n")),
            Is.EqualTo("te.yaml:7:16: worker.body_memory: must be at least 1 MiB, not 512 KiB"));
    }
}
