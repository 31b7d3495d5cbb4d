using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary>Parses YAML written in a test, with a fixed file name and a dictionary for the environment.</summary>
internal static class ConfigText
{
    public const string File = "te.yaml";

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
