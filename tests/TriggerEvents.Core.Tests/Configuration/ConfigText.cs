using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary>Parses YAML written in a test, with a fixed file name and a dictionary for the environment.</summary>
internal static class ConfigText
{
    public const string File = "te.yaml";

    /// <summary>The example of SPEC.md "Configuration", as written there.</summary>
    public const string SpecExample = """
        subscriptions:
          - name: billing-orders          # unique; letters, digits, '-' and '_'
            trigger: orders_changed       # an attached event trigger
            operations: [INSERT, UPDATE]  # optional filter; default all
            start_from: now               # now | earliest | an ISO time: where a new subscription begins
            webhook:
              url: ${BILLING_URL}
              headers:
                Authorization: Bearer ${BILLING_TOKEN}
              timeout: 10s
              signing_secret: ${BILLING_SECRET}   # whsec_...; enables signatures
            retry:
              max_attempts: 10
              initial_interval: 5s
              max_interval: 1h            # exponential backoff with full jitter
            max_in_flight: 16             # across all worker replicas together
        worker:                           # all optional
          batch_size: 100
          poll_interval: 1s
          lease: 60s
          http_port: 8080
        retention:
          delivered_events: 7d            # delete events whose deliveries all succeeded, after this
        """;

    public static TriggerEventsConfig Parse(string yaml, IReadOnlyDictionary<string, string>? environment = null) =>
        ConfigLoader.Parse(yaml, File, name => environment?.GetValueOrDefault(name));

    /// <summary>The errors, formatted as <c>file:line:col: message</c>.</summary>
    public static IReadOnlyList<string> Errors(string yaml, IReadOnlyDictionary<string, string>? environment = null)
    {
        var exception = Assert.Throws<ConfigException>(() => Parse(yaml, environment));
        return exception.Errors.Select(error => error.ToString()).ToList();
    }

    /// <summary>The single error of <paramref name="yaml"/>, failing the test if there are more.</summary>
    public static string Error(string yaml, IReadOnlyDictionary<string, string>? environment = null)
    {
        var errors = Errors(yaml, environment);
        Assert.That(errors, Has.Count.EqualTo(1), string.Join('\n', errors));
        return errors[0];
    }

    /// <summary>One subscription with only the required keys, at lines 2 to 5, followed by <paramref name="extra"/>.</summary>
    public static string Subscription(string extra = "") =>
        """
        subscriptions:
          - name: orders
            trigger: orders_changed
            webhook:
              url: https://example.com/hook

        """ + extra;
}
