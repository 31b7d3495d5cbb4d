namespace TriggerEvents.Core.Configuration;

/// <summary>Reads a subscription's <c>batch</c>.</summary>
internal static partial class ConfigLoader
{
    private static readonly string[] BatchKeys = ["max_events", "max_wait"];

    /// <summary>
    /// <c>batch: {max_events: N, max_wait: duration}</c>; null when absent (one event per request).
    /// <c>max_events</c> is required: a batch of an unstated size is a guess about the receiver.
    /// </summary>
    private static BatchConfig? ReadBatch(NodeReader reader, YamlTree.Node? node, string path)
    {
        // Absent or empty (as every key): one event per request.
        if (reader.Mapping(node, path, BatchKeys) is not { } map)
        {
            return null;
        }

        if (map["max_events"] is null or YamlTree.Scalar { IsNull: true })
        {
            reader.Error(map.Location, map.PathOf("max_events"), "is required: the most events one request carries");
        }

        var maxEvents = reader.Int(map["max_events"], map.PathOf("max_events"), 1, min: 1, max: BatchConfig.MaxMaxEvents);
        var maxWait = reader.Duration(map["max_wait"], map.PathOf("max_wait"), BatchConfig.DefaultMaxWait, TimeSpan.FromMilliseconds(1));
        return new BatchConfig(maxEvents, maxWait);
    }
}
