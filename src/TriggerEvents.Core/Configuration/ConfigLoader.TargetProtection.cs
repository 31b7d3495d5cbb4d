using System.Globalization;

namespace TriggerEvents.Core.Configuration;

/// <summary><c>rate_limit</c> and <c>circuit_breaker</c> of a subscription (SPEC "Protecting targets").</summary>
internal static partial class ConfigLoader
{
    private static readonly string[] CircuitBreakerKeys = ["failure_rate", "min_requests", "window", "open_for", "pause_after"];

    private static RateLimit? ReadRateLimit(NodeReader reader, YamlTree.Node? node, string path)
    {
        if (reader.Scalar(node, path) is not { } scalar)
        {
            return null;
        }

        if (!RateLimit.TryParse(scalar.Value, out var perSecond))
        {
            reader.Error(scalar.Location, path, $"'{scalar.Value}' is not a rate: write {RateLimit.Examples}");
            return null;
        }

        if (perSecond <= 0 || perSecond > RateLimit.MaxPerSecond)
        {
            reader.Error(scalar.Location, path, string.Create(CultureInfo.InvariantCulture,
                $"must be more than 0 and at most {RateLimit.MaxPerSecond:0}/s, not {scalar.Value}"));
            return null;
        }

        return new RateLimit(perSecond);
    }

    private static CircuitBreakerConfig? ReadCircuitBreaker(NodeReader reader, YamlTree.Node? node, string path)
    {
        // Absent or empty (as every key): off. `circuit_breaker: {}` turns it on with the defaults.
        if (reader.Mapping(node, path, CircuitBreakerKeys) is not { } map)
        {
            return null;
        }

        var failureRate = CircuitBreakerConfig.DefaultFailureRate;
        if (reader.Scalar(map["failure_rate"], map.PathOf("failure_rate")) is { } rate)
        {
            if (!CircuitBreakerConfig.TryParseRate(rate.Value, out failureRate))
            {
                reader.Error(rate.Location, map.PathOf("failure_rate"), $"'{rate.Value}' is not a percentage: write 50%");
                failureRate = CircuitBreakerConfig.DefaultFailureRate;
            }
            else if (failureRate is <= 0 or > 1)
            {
                reader.Error(rate.Location, map.PathOf("failure_rate"), $"must be more than 0% and at most 100%, not {rate.Value}");
                failureRate = CircuitBreakerConfig.DefaultFailureRate;
            }
        }

        return new CircuitBreakerConfig
        {
            FailureRate = failureRate,
            MinRequests = reader.Int(map["min_requests"], map.PathOf("min_requests"), CircuitBreakerConfig.DefaultMinRequests, min: 1),
            Window = reader.Duration(map["window"], map.PathOf("window"), CircuitBreakerConfig.DefaultWindow, TimeSpan.FromSeconds(1)),
            OpenFor = reader.Duration(map["open_for"], map.PathOf("open_for"), CircuitBreakerConfig.DefaultOpenFor, TimeSpan.FromMilliseconds(100)),
            PauseAfter = reader.Int(map["pause_after"], map.PathOf("pause_after"), CircuitBreakerConfig.DefaultPauseAfter, min: 1),
        };
    }
}
