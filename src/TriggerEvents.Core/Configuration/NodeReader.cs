using System.Globalization;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// Reads typed values out of a <see cref="YamlTree"/>, collecting an error for each one that is
/// missing, of the wrong kind or out of range, and carrying on with the default so that one pass
/// finds every problem.
/// </summary>
/// <remarks>
/// Paths in messages are written as in the file: <c>subscriptions[0].retry.max_attempts</c>. Values
/// are quoted back only by readers of values that are never secret (numbers, durations, names).
/// </remarks>
internal sealed class NodeReader(List<ConfigError> errors)
{
    /// <summary>Reports a problem at <paramref name="location"/>.</summary>
    public void Error(ConfigLocation location, string path, string message) =>
        errors.Add(location.Error(path.Length == 0 ? message : $"{path}: {message}"));

    /// <summary>
    /// The map at <paramref name="node"/>, allowing only <paramref name="keys"/>; null (and an error
    /// unless it is absent) when there is no map.
    /// </summary>
    public MappingReader? Mapping(YamlTree.Node? node, string path, params string[] keys)
    {
        switch (node)
        {
            case null or YamlTree.Scalar { IsNull: true }:
                return null;
            case YamlTree.Mapping mapping:
                return new MappingReader(this, mapping, path, keys);
            default:
                Error(node.Location, path, $"expected a map, found {node.Kind}");
                return null;
        }
    }

    /// <summary>A map with any keys (such as <c>headers</c>); null (and an error unless it is absent) when there is no map.</summary>
    public YamlTree.Mapping? AnyMapping(YamlTree.Node? node, string path)
    {
        switch (node)
        {
            case null or YamlTree.Scalar { IsNull: true }:
                return null;
            case YamlTree.Mapping mapping:
                return mapping;
            default:
                Error(node.Location, path, $"expected a map, found {node.Kind}");
                return null;
        }
    }

    /// <summary>The items of the list at <paramref name="node"/>; null (and an error unless it is absent) when there is no list.</summary>
    public IReadOnlyList<YamlTree.Node>? Sequence(YamlTree.Node? node, string path)
    {
        switch (node)
        {
            case null or YamlTree.Scalar { IsNull: true }:
                return null;
            case YamlTree.Sequence sequence:
                return sequence.Items;
            default:
                Error(node.Location, path, $"expected a list, found {node.Kind}");
                return null;
        }
    }

    /// <summary>
    /// The value at <paramref name="node"/>; null when absent, when substitution failed (already
    /// reported), or when it is a list or map (reported here).
    /// </summary>
    public YamlTree.Scalar? Scalar(YamlTree.Node? node, string path)
    {
        switch (node)
        {
            case null:
                return null;
            case YamlTree.Scalar scalar:
                return scalar.IsNull ? null : scalar;
            default:
                Error(node.Location, path, $"expected a single value, found {node.Kind}");
                return null;
        }
    }

    /// <summary>A whole number in [<paramref name="min"/>, <paramref name="max"/>], or <paramref name="defaultValue"/>.</summary>
    public int Int(YamlTree.Node? node, string path, int defaultValue, int min, int max = int.MaxValue)
    {
        if (Scalar(node, path) is not { } scalar)
        {
            return defaultValue;
        }

        if (!int.TryParse(scalar.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value))
        {
            var message = long.TryParse(scalar.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _)
                ? $"{scalar.Value} is too large"
                : $"'{scalar.Value}' is not a whole number";
            Error(scalar.Location, path, message);
            return defaultValue;
        }

        if (value < min || value > max)
        {
            Error(scalar.Location, path, max == int.MaxValue
                ? string.Create(CultureInfo.InvariantCulture, $"must be at least {min}, not {value}")
                : string.Create(CultureInfo.InvariantCulture, $"must be from {min} to {max}, not {value}"));
            return defaultValue;
        }

        return value;
    }

    /// <summary><c>true</c> or <c>false</c> (as YAML writes them, in any case), or <paramref name="defaultValue"/>.</summary>
    public bool Bool(YamlTree.Node? node, string path, bool defaultValue)
    {
        if (Scalar(node, path) is not { } scalar)
        {
            return defaultValue;
        }

        if (bool.TryParse(scalar.Value, out var value))
        {
            return value;
        }

        Error(scalar.Location, path, $"'{scalar.Value}' is not true or false");
        return defaultValue;
    }

    /// <summary>A duration of at least <paramref name="min"/>, or <paramref name="defaultValue"/>.</summary>
    public TimeSpan Duration(YamlTree.Node? node, string path, TimeSpan defaultValue, TimeSpan min) =>
        Scalar(node, path) is { } scalar && ParseDuration(scalar, path, min) is { } value ? value : defaultValue;

    /// <summary>A size in bytes in [<paramref name="min"/>, <paramref name="max"/>] (see <see cref="ByteSize"/>), or <paramref name="defaultValue"/>.</summary>
    public long Size(YamlTree.Node? node, string path, long defaultValue, long min, long max = long.MaxValue)
    {
        if (Scalar(node, path) is not { } scalar)
        {
            return defaultValue;
        }

        if (!ByteSize.TryParse(scalar.Value, out var value))
        {
            Error(scalar.Location, path, $"'{scalar.Value}' is not a size: write {ByteSize.Examples}");
            return defaultValue;
        }

        if (value < min || value > max)
        {
            Error(scalar.Location, path, max == long.MaxValue
                ? $"must be at least {ByteSize.Format(min)}, not {ByteSize.Format(value)}"
                : $"must be from {ByteSize.Format(min)} to {ByteSize.Format(max)}, not {ByteSize.Format(value)}");
            return defaultValue;
        }

        return value;
    }

    /// <summary>
    /// A duration of at least <paramref name="min"/>, or <c>forever</c> (null), or
    /// <paramref name="defaultValue"/> when absent or wrong.
    /// </summary>
    public TimeSpan? DurationOrForever(YamlTree.Node? node, string path, TimeSpan? defaultValue, TimeSpan min)
    {
        if (Scalar(node, path) is not { } scalar)
        {
            return defaultValue;
        }

        if (scalar.Value == "forever")
        {
            return null;
        }

        return ParseDuration(scalar, path, min, orForever: true) ?? defaultValue;
    }

    private TimeSpan? ParseDuration(YamlTree.Scalar scalar, string path, TimeSpan min, bool orForever = false)
    {
        if (!Configuration.Duration.TryParse(scalar.Value, out var value))
        {
            Error(scalar.Location, path, $"'{scalar.Value}' is not a duration: write {Configuration.Duration.Examples}{(orForever ? ", or forever" : "")}");
            return null;
        }

        if (value < min)
        {
            Error(scalar.Location, path, min.Ticks <= 1
                ? "must be longer than 0"
                : $"must be at least {Configuration.Duration.Format(min)}, not {Configuration.Duration.Format(value)}");
            return null;
        }

        return value;
    }

    /// <summary>Reads the keys of one map and reports those it does not know.</summary>
    internal sealed class MappingReader
    {
        private readonly NodeReader _reader;
        private readonly Dictionary<string, YamlTree.Node> _values = new(StringComparer.Ordinal);

        public MappingReader(NodeReader reader, YamlTree.Mapping mapping, string path, string[] keys)
        {
            _reader = reader;
            Path = path;
            Location = mapping.Location;
            foreach (var (key, value) in mapping.Entries)
            {
                if (keys.Contains(key.Value, StringComparer.Ordinal))
                {
                    _values.Add(key.Value, value);
                }
                else
                {
                    reader.Error(key.Location, path, UnknownKey(key.Value, keys));
                }
            }
        }

        /// <summary>The path of the map, as messages write it.</summary>
        public string Path { get; }

        /// <summary>Where the map starts.</summary>
        public ConfigLocation Location { get; }

        /// <summary>The path of one of its keys.</summary>
        public string PathOf(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

        /// <summary>The value of <paramref name="key"/>, or null when it is absent.</summary>
        public YamlTree.Node? this[string key] => _values.GetValueOrDefault(key);

        /// <summary>
        /// The value of a required key that must be a single value; null (and an error, unless one was
        /// already given for the value) when it is absent, empty or a list or map.
        /// </summary>
        public YamlTree.Scalar? RequiredScalar(string key)
        {
            var node = this[key];
            if (node is YamlTree.Scalar { HasError: true })
            {
                return null;
            }

            if (node is null or YamlTree.Scalar { IsNull: true })
            {
                _reader.Error(node?.Location ?? Location, Path, $"missing required key '{key}'");
                return null;
            }

            return _reader.Scalar(node, PathOf(key));
        }

        private static string UnknownKey(string key, string[] keys)
        {
            var suggestion = keys
                .Select(known => (Known: known, Distance: EditDistance(key, known)))
                .Where(candidate => candidate.Distance <= Math.Max(2, candidate.Known.Length / 3))
                .OrderBy(candidate => candidate.Distance)
                .Select(candidate => candidate.Known)
                .FirstOrDefault();
            return suggestion is null
                ? $"unknown key '{key}' (expected {string.Join(", ", keys)})"
                : $"unknown key '{key}' (did you mean '{suggestion}'?)";
        }

        // Levenshtein distance, ignoring case so "maxAttempts" and "Max_Attempts" find max_attempts.
        private static int EditDistance(string a, string b)
        {
            a = a.Replace("_", "", StringComparison.Ordinal).ToUpperInvariant();
            b = b.Replace("_", "", StringComparison.Ordinal).ToUpperInvariant();
            var previous = new int[b.Length + 1];
            var current = new int[b.Length + 1];
            for (var j = 0; j <= b.Length; j++)
            {
                previous[j] = j;
            }

            for (var i = 1; i <= a.Length; i++)
            {
                current[0] = i;
                for (var j = 1; j <= b.Length; j++)
                {
                    var substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                    current[j] = Math.Min(substitution, Math.Min(previous[j], current[j - 1]) + 1);
                }

                (previous, current) = (current, previous);
            }

            return previous[b.Length];
        }
    }
}
