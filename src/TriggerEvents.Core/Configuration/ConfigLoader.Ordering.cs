namespace TriggerEvents.Core.Configuration;

/// <summary>Reads a subscription's <c>ordering</c> and <c>ordering_key</c>.</summary>
internal static partial class ConfigLoader
{
    /// <summary>
    /// <c>ordering: none | key</c> and <c>ordering_key: [columns]</c>; null for <c>none</c> (the
    /// default). An <c>ordering_key</c> without <c>ordering: key</c> is an error rather than
    /// ignored: a file that names key columns expects its events held in order.
    /// </summary>
    private static OrderingConfig? ReadOrdering(NodeReader reader, NodeReader.MappingReader subscription)
    {
        var orderingPath = subscription.PathOf("ordering");
        var keyPath = subscription.PathOf("ordering_key");
        var ordered = false;
        if (reader.Scalar(subscription["ordering"], orderingPath) is { } mode)
        {
            if (string.Equals(mode.Value, "key", StringComparison.OrdinalIgnoreCase))
            {
                ordered = true;
            }
            else if (!string.Equals(mode.Value, "none", StringComparison.OrdinalIgnoreCase))
            {
                reader.Error(mode.Location, orderingPath, $"'{mode.Value}' is not none or key");
            }
        }

        var keyNode = subscription["ordering_key"];
        if (reader.Sequence(keyNode, keyPath) is not { } items)
        {
            return ordered ? OrderingConfig.PrimaryKey with { Location = subscription["ordering"]!.Location } : null;
        }

        if (!ordered)
        {
            reader.Error(keyNode!.Location, keyPath, "needs 'ordering: key' beside it (without it events are delivered in any order)");
        }

        var columns = new List<string>();
        foreach (var item in items)
        {
            if (reader.Scalar(item, keyPath) is not { } column)
            {
                if (item is YamlTree.Scalar { IsNull: true, HasError: false })
                {
                    reader.Error(item.Location, keyPath, "an empty item is no column");
                }

                continue;
            }

            if (columns.Contains(column.Value, StringComparer.Ordinal))
            {
                reader.Error(column.Location, keyPath, $"column '{column.Value}' is named twice");
                continue;
            }

            columns.Add(column.Value);
        }

        if (items.Count == 0)
        {
            reader.Error(keyNode!.Location, keyPath, "names no column; leave the key out to order by the table's primary key");
        }

        return ordered ? new OrderingConfig(columns) { Location = keyNode!.Location } : null;
    }
}
