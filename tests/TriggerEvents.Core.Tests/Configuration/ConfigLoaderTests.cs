using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

public class ConfigLoaderTests
{
    private static readonly Dictionary<string, string> SpecEnvironment = new()
    {
        ["BILLING_URL"] = "https://billing.internal/hooks/orders?tenant=7",
        ["BILLING_TOKEN"] = "tok-123",
        ["BILLING_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    };

    [Test]
    public void The_example_of_the_spec_loads_with_every_value()
    {
        var config = ConfigText.Parse(ConfigText.SpecExample, SpecEnvironment);

        Assert.That(config.SourcePath, Is.EqualTo(ConfigText.File));
        Assert.That(config.Subscriptions, Has.Count.EqualTo(1));
        var subscription = config.Subscriptions[0];
        Assert.Multiple(() =>
        {
            Assert.That(subscription.Name, Is.EqualTo("billing-orders"));
            Assert.That(subscription.Trigger, Is.EqualTo("orders_changed"));
            Assert.That(subscription.Operations, Is.EquivalentTo(new[] { "INSERT", "UPDATE" }));
            Assert.That(subscription.StartFrom, Is.EqualTo(new StartFrom.Now()));
            Assert.That(subscription.Webhook.Url, Is.EqualTo(new Uri("https://billing.internal/hooks/orders?tenant=7")));
            Assert.That(subscription.Webhook.Headers, Is.EquivalentTo(new Dictionary<string, string> { ["Authorization"] = "Bearer tok-123" }));
            Assert.That(subscription.Webhook.Timeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(subscription.Webhook.SigningSecrets, Is.EqualTo(new[] { "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }));
            Assert.That(subscription.Retry, Is.EqualTo(new RetryConfig { MaxAttempts = 10, InitialInterval = TimeSpan.FromSeconds(5), MaxInterval = TimeSpan.FromHours(1) }));
            Assert.That(subscription.MaxInFlight, Is.EqualTo(16));
            Assert.That(subscription.MaxEventBytes, Is.EqualTo(4L << 20));
            Assert.That(config.Worker, Is.EqualTo(new WorkerConfig()));
            Assert.That(config.Retention, Is.EqualTo(new RetentionConfig()));
        });
    }

    [Test]
    public void A_subscription_with_only_the_required_keys_gets_the_documented_defaults()
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription()).Subscriptions.Single();

        Assert.Multiple(() =>
        {
            Assert.That(subscription.Operations, Is.EquivalentTo(new[] { "INSERT", "UPDATE", "DELETE", "MANUAL", "READ" }));
            Assert.That(subscription.StartFrom, Is.InstanceOf<StartFrom.Now>());
            Assert.That(subscription.Webhook.Headers, Is.Empty);
            Assert.That(subscription.Webhook.Timeout, Is.EqualTo(TimeSpan.FromSeconds(10)));
            Assert.That(subscription.Webhook.SigningSecrets, Is.Empty);
            Assert.That(subscription.Retry.MaxAttempts, Is.EqualTo(10));
            Assert.That(subscription.Retry.InitialInterval, Is.EqualTo(TimeSpan.FromSeconds(5)));
            Assert.That(subscription.Retry.MaxInterval, Is.EqualTo(TimeSpan.FromHours(1)));
            Assert.That(subscription.MaxInFlight, Is.EqualTo(16));
        });
    }

    [Test]
    public void Worker_and_retention_default_when_absent()
    {
        var config = ConfigText.Parse(ConfigText.Subscription());

        Assert.Multiple(() =>
        {
            Assert.That(config.Worker.BatchSize, Is.EqualTo(100));
            Assert.That(config.Worker.PollInterval, Is.EqualTo(TimeSpan.FromSeconds(1)));
            Assert.That(config.Worker.Lease, Is.EqualTo(TimeSpan.FromSeconds(60)));
            Assert.That(config.Worker.HttpPort, Is.EqualTo(8080));
            Assert.That(config.Worker.ShutdownTimeout, Is.EqualTo(TimeSpan.FromSeconds(30)));
            Assert.That(config.Worker.Concurrency, Is.EqualTo(64));
            Assert.That(config.Worker.DenyPrivateNetworks, Is.False, "any URL is called unless an operator says otherwise");
            Assert.That(config.Retention.DeliveredEvents, Is.EqualTo(TimeSpan.FromDays(7)));
            Assert.That(config.Retention.Attempts, Is.EqualTo(TimeSpan.FromDays(7)));
            Assert.That(config.Retention.CleanupInterval, Is.EqualTo(TimeSpan.FromMinutes(5)));
        });
    }

    [Test]
    public void Every_worker_and_retention_key_is_read()
    {
        var config = ConfigText.Parse(ConfigText.Subscription("""
            worker:
              batch_size: 500
              poll_interval: 250ms
              lease: 2m
              http_port: 9090
              shutdown_timeout: 45s
              concurrency: 8
              metrics_interval: 5s
              summary_interval: 10m
              deny_private_networks: true
            retention:
              delivered_events: 1d
              attempts: 12h
              cleanup_interval: 1m
            """));

        Assert.That(config.Worker, Is.EqualTo(new WorkerConfig
        {
            BatchSize = 500,
            PollInterval = TimeSpan.FromMilliseconds(250),
            Lease = TimeSpan.FromMinutes(2),
            HttpPort = 9090,
            ShutdownTimeout = TimeSpan.FromSeconds(45),
            Concurrency = 8,
            MetricsInterval = TimeSpan.FromSeconds(5),
            SummaryInterval = TimeSpan.FromMinutes(10),
            DenyPrivateNetworks = true,
        }));
        Assert.That(config.Retention, Is.EqualTo(new RetentionConfig
        {
            DeliveredEvents = TimeSpan.FromDays(1),
            Attempts = TimeSpan.FromHours(12),
            CleanupInterval = TimeSpan.FromMinutes(1),
        }));
    }

    [Test]
    public void Retention_forever_keeps_everything()
    {
        var config = ConfigText.Parse(ConfigText.Subscription("""
            retention:
              delivered_events: forever
              attempts: forever
            """));

        Assert.That(config.Retention.DeliveredEvents, Is.Null);
        Assert.That(config.Retention.Attempts, Is.Null);
    }

    [Test]
    public void Retention_of_zero_is_allowed()
    {
        var config = ConfigText.Parse(ConfigText.Subscription("retention:\n  delivered_events: 0s\n"));

        Assert.That(config.Retention.DeliveredEvents, Is.EqualTo(TimeSpan.Zero));
    }

    [Test]
    public void Operations_may_be_written_in_any_case_and_are_kept_in_capitals()
    {
        var subscription = ConfigText.Parse("""
            subscriptions:
              - name: s
                trigger: t
                operations: [insert, Delete, MANUAL, insert]
                webhook: { url: "http://receiver:8080/" }
            """).Subscriptions.Single();

        Assert.That(subscription.Operations, Is.EquivalentTo(new[] { "INSERT", "DELETE", "MANUAL" }));
        Assert.That(subscription.Operations.Contains("INSERT"), Is.True);
        Assert.That(subscription.Operations.Contains("UPDATE"), Is.False);
    }

    [Test]
    public void A_subscription_may_list_read_to_receive_backfilled_rows()
    {
        var subscription = ConfigText.Parse("""
            subscriptions:
              - name: s
                trigger: t
                operations: [read, INSERT]
                webhook: { url: "http://receiver:8080/" }
            """).Subscriptions.Single();

        Assert.That(subscription.Operations, Is.EqualTo(new[] { "INSERT", "READ" }));
    }

    [TestCase("now", null)]
    [TestCase("NOW", null)]
    [TestCase("2026-01-31T09:00:00Z", "2026-01-31T09:00:00+00:00")]
    [TestCase("2026-01-31T09:00:00.123456Z", "2026-01-31T09:00:00.1234560+00:00")]
    [TestCase("2026-01-31T11:00:00+02:00", "2026-01-31T09:00:00+00:00")]
    [TestCase("2026-01-31 09:00Z", "2026-01-31T09:00:00+00:00")]
    [TestCase("2026-01-31", "2026-01-31T00:00:00+00:00")]
    [TestCase("'2026-01-31T09:00:00-0130'", "2026-01-31T10:30:00+00:00")]
    public void Start_from_is_now_or_a_time_with_a_zone(string written, string? expected)
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription().Replace("    webhook:", $"    start_from: {written}\n    webhook:", StringComparison.Ordinal)).Subscriptions.Single();

        var expectedStart = expected is null ? (StartFrom)new StartFrom.Now() : new StartFrom.At(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture));
        Assert.That(subscription.StartFrom, Is.EqualTo(expectedStart));
        if (subscription.StartFrom is StartFrom.At at)
        {
            Assert.That(at.Time.Offset, Is.EqualTo(TimeSpan.Zero));
        }
    }

    [Test]
    public void Start_from_earliest_backfills()
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription().Replace("    webhook:", "    start_from: earliest\n    webhook:", StringComparison.Ordinal)).Subscriptions.Single();

        Assert.That(subscription.StartFrom, Is.EqualTo(new StartFrom.Earliest()));
    }

    [Test]
    public void Several_signing_secrets_are_separated_by_spaces_for_rotation()
    {
        var subscription = ConfigText.Parse(
            ConfigText.Subscription().Replace("https://example.com/hook", "https://example.com/hook\n      signing_secret: ${SECRETS}", StringComparison.Ordinal),
            new Dictionary<string, string> { ["SECRETS"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw   whsec_AAECAwQF" }).Subscriptions.Single();

        Assert.That(subscription.Webhook.SigningSecrets, Is.EqualTo(new[] { "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_AAECAwQF" }));
    }

    [TestCase("signing_secret: none")]
    [TestCase("signing_secret: ${SECRET}")]
    [TestCase("signing_secret: ${SECRET:-none}")]
    public void None_sends_unsigned_requests_on_purpose_also_through_a_variable(string line)
    {
        var subscription = ConfigText.Parse(
            ConfigText.Subscription().Replace("https://example.com/hook", "https://example.com/hook\n      " + line, StringComparison.Ordinal),
            new Dictionary<string, string> { ["SECRET"] = "none" }).Subscriptions.Single();

        Assert.That(subscription.Webhook.SigningSecrets, Is.Empty);
    }

    [Test]
    public void Without_the_signing_secret_key_requests_are_unsigned()
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription()).Subscriptions.Single();

        Assert.That(subscription.Webhook.SigningSecrets, Is.Empty);
    }

    [Test]
    public void Header_names_are_looked_up_ignoring_case()
    {
        var subscription = ConfigText.Parse("""
            subscriptions:
              - name: s
                trigger: t
                webhook:
                  url: https://example.com/
                  headers:
                    X-Api-Key: abc
                    X-Tenant: "42"
            """).Subscriptions.Single();

        Assert.That(subscription.Webhook.Headers["x-api-key"], Is.EqualTo("abc"));
        Assert.That(subscription.Webhook.Headers["X-TENANT"], Is.EqualTo("42"));
    }

    [Test]
    public void Numbers_may_be_quoted()
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription("    retry:\n      max_attempts: \"3\"\n")).Subscriptions.Single();

        Assert.That(subscription.Retry.MaxAttempts, Is.EqualTo(3));
    }

    [Test]
    public void Substituted_values_are_typed_after_substitution()
    {
        var config = ConfigText.Parse(
            ConfigText.Subscription("worker:\n  batch_size: ${BATCH:-250}\n  lease: ${LEASE}\n"),
            new Dictionary<string, string> { ["LEASE"] = "90s" });

        Assert.That(config.Worker.BatchSize, Is.EqualTo(250));
        Assert.That(config.Worker.Lease, Is.EqualTo(TimeSpan.FromSeconds(90)));
    }

    [Test]
    public void A_substituted_value_is_not_read_as_yaml()
    {
        var subscription = ConfigText.Parse(
            ConfigText.Subscription().Replace("https://example.com/hook", "https://example.com/hook\n      headers:\n        Authorization: ${AUTH}", StringComparison.Ordinal),
            new Dictionary<string, string> { ["AUTH"] = "Bearer a: b # c [d]" }).Subscriptions.Single();

        Assert.That(subscription.Webhook.Headers["Authorization"], Is.EqualTo("Bearer a: b # c [d]"));
    }

    [Test]
    public void An_empty_value_counts_as_absent_so_an_empty_default_means_the_built_in_default()
    {
        var config = ConfigText.Parse(ConfigText.Subscription("worker:\n  lease:\n  batch_size: ${BATCH:-}\n  http_port: ~\n"));

        Assert.That(config.Worker, Is.EqualTo(new WorkerConfig()));
    }

    [Test]
    public void An_empty_section_counts_as_absent()
    {
        var config = ConfigText.Parse(ConfigText.Subscription("worker:\nretention:\n"));

        Assert.That(config.Worker, Is.EqualTo(new WorkerConfig()));
        Assert.That(config.Retention, Is.EqualTo(new RetentionConfig()));
    }

    [Test]
    public void An_empty_subscription_list_is_allowed()
    {
        Assert.That(ConfigText.Parse("subscriptions: []\n").Subscriptions, Is.Empty);
    }

    [Test]
    public void Subscriptions_keep_the_order_of_the_file()
    {
        var config = ConfigText.Parse("""
            subscriptions:
              - { name: c, trigger: t, webhook: { url: "https://example.com/c" } }
              - { name: a, trigger: t, webhook: { url: "https://example.com/a" } }
              - { name: b, trigger: t, webhook: { url: "https://example.com/b" } }
            """);

        Assert.That(config.Subscriptions.Select(s => s.Name), Is.EqualTo(new[] { "c", "a", "b" }));
    }

    [Test]
    public void Anchors_and_merge_keys_share_settings_and_keys_written_in_the_map_win()
    {
        var config = ConfigText.Parse("""
            subscriptions:
              - &first
                name: z
                trigger: t
                webhook: { url: "https://example.com/z" }
                retry: &retry { max_attempts: 3, initial_interval: 1s }
              - name: a
                trigger: t
                webhook: { url: "https://example.com/a" }
                retry: *retry
              - <<: *first
                name: b
                webhook: { url: "https://example.com/b" }
                retry:
                  <<: *retry
                  max_attempts: 5
            """);

        Assert.That(config.Subscriptions.Select(s => s.Name), Is.EqualTo(new[] { "z", "a", "b" }));
        Assert.That(config.Subscriptions.Select(s => s.Retry.MaxAttempts), Is.EqualTo(new[] { 3, 3, 5 }));
        Assert.That(config.Subscriptions.Select(s => s.Retry.InitialInterval), Is.All.EqualTo(TimeSpan.FromSeconds(1)));
        Assert.That(config.Subscriptions[2].Trigger, Is.EqualTo("t"));
        Assert.That(config.Subscriptions[2].Webhook.Url.AbsolutePath, Is.EqualTo("/b"));
    }

    [Test]
    public void In_a_list_of_merged_maps_the_earlier_map_wins()
    {
        var config = ConfigText.Parse("""
            subscriptions:
              - name: s
                trigger: t
                webhook: { url: "https://example.com/" }
                retry:
                  <<: [{ max_attempts: 2 }, { max_attempts: 9, initial_interval: 2s }]
            """);

        Assert.That(config.Subscriptions[0].Retry.MaxAttempts, Is.EqualTo(2));
        Assert.That(config.Subscriptions[0].Retry.InitialInterval, Is.EqualTo(TimeSpan.FromSeconds(2)));
    }

    [Test]
    public void The_subscription_and_its_trigger_keep_their_place_in_the_file()
    {
        var subscription = ConfigText.Parse(ConfigText.Subscription()).Subscriptions.Single();

        Assert.That(subscription.Location, Is.EqualTo(new ConfigLocation(ConfigText.File, 2, 5)));
        Assert.That(subscription.TriggerLocation, Is.EqualTo(new ConfigLocation(ConfigText.File, 3, 14)));
        Assert.That(subscription.TriggerLocation!.Error("not attached").ToString(), Is.EqualTo("te.yaml:3:14: not attached"));
    }

    [Test]
    public void A_webhook_printed_for_a_log_shows_no_secret_or_header_value()
    {
        var webhook = new WebhookConfig
        {
            Url = new Uri("https://example.com/hook?token=query-secret"),
            Headers = new Dictionary<string, string> { ["Authorization"] = "Bearer header-secret" },
            SigningSecrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        };
        var printed = new SubscriptionConfig { Name = "s", Trigger = "t", Webhook = webhook }.ToString();

        Assert.That(printed, Does.Contain("Authorization").And.Contains("1 secret(s)").And.Contains("https://example.com/..."));
        Assert.That(printed, Does.Not.Contain("header-secret").And.Not.Contain("whsec_").And.Not.Contain("query-secret").And.Not.Contain("/hook"));
    }

    [Test]
    public void Load_reads_the_file_and_names_it_in_errors()
    {
        var path = Path.Combine(Path.GetTempPath(), $"triggerevents-{Guid.NewGuid():N}.yaml");
        try
        {
            File.WriteAllText(path, ConfigText.Subscription());
            Assert.That(ConfigLoader.Load(path, _ => null).SourcePath, Is.EqualTo(path));

            File.WriteAllText(path, "subscriptions: 5\n");
            var error = Assert.Throws<ConfigException>(() => ConfigLoader.Load(path, _ => null))!.Errors.Single();
            Assert.That(error.ToString(), Is.EqualTo($"{path}:1:16: subscriptions: expected a list, found a single value"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void Load_of_a_directory_says_so()
    {
        var exception = Assert.Throws<ConfigException>(() => ConfigLoader.Load(Path.GetTempPath(), _ => null))!;

        Assert.That(exception.Message, Does.EndWith(": cannot read the configuration: it is a directory"));
    }

    [Test]
    public void Load_of_a_missing_file_is_a_config_error_without_a_line()
    {
        var path = Path.Combine(Path.GetTempPath(), $"triggerevents-{Guid.NewGuid():N}.yaml");

        var exception = Assert.Throws<ConfigException>(() => ConfigLoader.Load(path, _ => null))!;

        Assert.That(exception.Message, Is.EqualTo($"{path}: cannot read the configuration: no such file"));
    }

    [Test]
    public void Max_event_bytes_and_body_memory_take_binary_and_decimal_sizes()
    {
        var config = ConfigText.Parse(ConfigText.Subscription("    max_event_bytes: 512KiB\nworker:\n  body_memory: 100MB\n"));

        Assert.That(config.Subscriptions[0].MaxEventBytes, Is.EqualTo(512 * 1024));
        Assert.That(config.Worker.BodyMemory, Is.EqualTo(100_000_000));
        Assert.That(new WorkerConfig().BodyMemory, Is.EqualTo(64L << 20), "the default");
    }
}
