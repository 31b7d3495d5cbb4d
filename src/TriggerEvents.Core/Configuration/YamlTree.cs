using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// A YAML document as a small tree of maps, lists and values that remembers where each node was
/// written, built from YamlDotNet's parser events.
/// </summary>
/// <remarks>
/// Built by hand rather than with YamlDotNet's representation model so that every problem becomes an
/// error at a line and column instead of an exception that stops at the first: duplicate keys, a list
/// used as a key, an unknown alias. Anchors and aliases work, and so do merge keys
/// (<c>&lt;&lt;: *defaults</c>), so a file with many subscriptions can share their retry settings.
/// Environment variables are substituted here, in values but not in keys, so the checks that follow
/// see the final text.
/// </remarks>
internal static class YamlTree
{
    /// <summary>Deeper nesting than any configuration needs; the limit keeps a hostile file from exhausting the stack.</summary>
    public const int MaxDepth = 64;

    private const string MergeKey = "<<";
    private const string NullTag = "tag:yaml.org,2002:null";

    /// <summary>A node and where it starts.</summary>
    public abstract class Node(ConfigLocation location)
    {
        /// <summary>Where the node starts in the file.</summary>
        public ConfigLocation Location { get; } = location;

        /// <summary>How messages name this kind of node.</summary>
        public abstract string Kind { get; }
    }

    /// <summary>A value, after environment substitution.</summary>
    public sealed class Scalar(ConfigLocation location, string value, bool isNull, bool hasError) : Node(location)
    {
        /// <summary>The text; empty when <see cref="IsNull"/>.</summary>
        public string Value { get; } = value;

        /// <summary>
        /// YAML null (an empty value, <c>~</c>, <c>null</c>), or an unquoted value that substitution left
        /// empty (<c>${TIMEOUT:-}</c>): either way, as if the key were absent.
        /// </summary>
        public bool IsNull { get; } = isNull;

        /// <summary>Substitution failed and has been reported; whoever reads the value says nothing more.</summary>
        public bool HasError { get; } = hasError;

        /// <inheritdoc />
        public override string Kind => IsNull ? "nothing" : "a single value";
    }

    /// <summary>A list.</summary>
    public sealed class Sequence(ConfigLocation location, IReadOnlyList<Node> items) : Node(location)
    {
        /// <summary>The items in order.</summary>
        public IReadOnlyList<Node> Items { get; } = items;

        /// <inheritdoc />
        public override string Kind => "a list";
    }

    /// <summary>A map with unique keys; merged entries follow the ones written in it.</summary>
    public sealed class Mapping(ConfigLocation location, IReadOnlyList<KeyValuePair<Scalar, Node>> entries) : Node(location)
    {
        /// <summary>The entries, keys unique.</summary>
        public IReadOnlyList<KeyValuePair<Scalar, Node>> Entries { get; } = entries;

        /// <inheritdoc />
        public override string Kind => "a map";
    }

    /// <summary>
    /// Parses <paramref name="text"/>. Returns the root of the only document, or null when there is no
    /// document or the YAML is not well formed; problems go to <paramref name="errors"/>.
    /// </summary>
    public static Node? Load(string text, string file, Func<string, string?> environment, List<ConfigError> errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        var builder = new Builder(new Parser(new StringReader(text)), file, environment, errors);
        try
        {
            return builder.ReadStream();
        }
        catch (YamlException e)
        {
            errors.Add(new ConfigError(file, (int)Math.Min(e.Start.Line, int.MaxValue), (int)Math.Min(e.Start.Column, int.MaxValue), "invalid YAML: " + e.Message));
            return null;
        }
    }

    private sealed class Builder(IParser parser, string file, Func<string, string?> environment, List<ConfigError> errors)
    {
        private readonly Dictionary<string, Node> _anchors = new(StringComparer.Ordinal);
        private Mark _lastEnd = Mark.Empty;

        public Node? ReadStream()
        {
            Expect<StreamStart>();
            if (Peek() is StreamEnd)
            {
                return null;
            }

            Expect<DocumentStart>();
            var root = ReadNode(depth: 0, isKey: false);
            Expect<DocumentEnd>();
            if (Peek() is DocumentStart second)
            {
                errors.Add(new ConfigError(file, Line(second.Start), Column(second.Start), "the file holds more than one YAML document; write one"));
            }

            return root;
        }

        private Node ReadNode(int depth, bool isKey)
        {
            var parsingEvent = Next();
            if (depth > MaxDepth)
            {
                throw new YamlException(parsingEvent.Start, parsingEvent.End, $"nested deeper than {MaxDepth} levels");
            }

            var location = At(parsingEvent.Start);
            switch (parsingEvent)
            {
                case AnchorAlias alias:
                    if (_anchors.TryGetValue(alias.Value.Value, out var anchored))
                    {
                        return anchored;
                    }

                    errors.Add(location.Error($"alias '*{alias.Value.Value}' refers to no anchor defined before it"));
                    return new Scalar(location, string.Empty, isNull: true, hasError: true);

                case YamlDotNet.Core.Events.Scalar scalar:
                    return Anchor(scalar, ReadScalar(scalar, location, isKey));

                case SequenceStart start:
                    var items = new List<Node>();
                    while (Peek() is not SequenceEnd)
                    {
                        items.Add(ReadNode(depth + 1, isKey: false));
                    }

                    Next();
                    return Anchor(start, new Sequence(location, items));

                case MappingStart start:
                    return Anchor(start, ReadMapping(location, depth));

                default:
                    throw new YamlException(parsingEvent.Start, parsingEvent.End, $"unexpected {parsingEvent.GetType().Name}");
            }
        }

        private Mapping ReadMapping(ConfigLocation location, int depth)
        {
            var entries = new List<KeyValuePair<Scalar, Node>>();
            var written = new Dictionary<string, ConfigLocation>(StringComparer.Ordinal);
            var merged = new List<Mapping>();
            while (Peek() is not MappingEnd)
            {
                var keyEvent = Peek();
                var key = ReadNode(depth + 1, isKey: true);
                var value = ReadNode(depth + 1, isKey: false);
                if (key is not Scalar keyScalar)
                {
                    errors.Add(key.Location.Error($"a map key must be a single value, not {key.Kind}"));
                    continue;
                }

                if (keyEvent is YamlDotNet.Core.Events.Scalar { Style: ScalarStyle.Plain, Value: MergeKey })
                {
                    AddMergeSources(value, merged);
                    continue;
                }

                if (written.TryGetValue(keyScalar.Value, out var first))
                {
                    errors.Add(keyScalar.Location.Error($"duplicate key '{keyScalar.Value}' (first written at line {first.Line})"));
                    continue;
                }

                written.Add(keyScalar.Value, keyScalar.Location);
                entries.Add(new(keyScalar, value));
            }

            Next();

            // YAML merge keys: keys written in the map win over merged ones, and an earlier map in
            // '<<: [*a, *b]' wins over a later one.
            foreach (var source in merged)
            {
                foreach (var entry in source.Entries)
                {
                    if (written.TryAdd(entry.Key.Value, entry.Key.Location))
                    {
                        entries.Add(entry);
                    }
                }
            }

            return new Mapping(location, entries);
        }

        private void AddMergeSources(Node value, List<Mapping> merged)
        {
            switch (value)
            {
                case Mapping mapping:
                    merged.Add(mapping);
                    break;
                case Sequence sequence when sequence.Items.All(item => item is Mapping):
                    merged.AddRange(sequence.Items.Cast<Mapping>());
                    break;
                case Scalar { HasError: true }:
                    break;
                default:
                    errors.Add(value.Location.Error("'<<' merges a map or a list of maps"));
                    break;
            }
        }

        private Scalar ReadScalar(YamlDotNet.Core.Events.Scalar scalar, ConfigLocation location, bool isKey)
        {
            var untagged = scalar.Tag.IsEmpty || scalar.Tag.IsNonSpecific;
            var plain = scalar.Style == ScalarStyle.Plain;
            if ((plain && untagged && scalar.Value is "" or "~" or "null" or "Null" or "NULL")
                || (!scalar.Tag.IsEmpty && scalar.Tag.Value == NullTag))
            {
                return new Scalar(location, string.Empty, isNull: true, hasError: false);
            }

            if (isKey)
            {
                return new Scalar(location, scalar.Value, isNull: false, hasError: false);
            }

            var value = EnvironmentSubstitution.TrySubstitute(scalar.Value, environment, out var error);
            if (value is null)
            {
                errors.Add(location.Error(error!));
                return new Scalar(location, string.Empty, isNull: true, hasError: true);
            }

            return new Scalar(location, value, isNull: plain && value.Length == 0, hasError: false);
        }

        private Node Anchor(NodeEvent nodeEvent, Node node)
        {
            if (!nodeEvent.Anchor.IsEmpty)
            {
                _anchors[nodeEvent.Anchor.Value] = node;
            }

            return node;
        }

        private ParsingEvent Peek()
        {
            if (parser.Current is null && !MoveNext())
            {
                throw new YamlException(_lastEnd, _lastEnd, "unexpected end of the file");
            }

            return parser.Current!;
        }

        private ParsingEvent Next()
        {
            var current = Peek();
            _lastEnd = current.End;
            MoveNext();
            return current;
        }

        private bool MoveNext()
        {
            try
            {
                return parser.MoveNext();
            }
            catch (Exception e) when (e is InvalidOperationException || e.GetType() == typeof(Exception))
            {
                // YamlDotNet's scanner throws these instead of a YamlException on some malformed input,
                // such as an unclosed '[' followed by a new key (aaubry/YamlDotNet#541); report it
                // where parsing stopped rather than crash.
                throw new YamlException(_lastEnd, _lastEnd, "cannot parse what follows here; look for an unclosed '[', '{' or quote", e);
            }
        }

        private void Expect<T>()
            where T : ParsingEvent
        {
            var parsingEvent = Next();
            if (parsingEvent is not T)
            {
                throw new YamlException(parsingEvent.Start, parsingEvent.End, $"expected {typeof(T).Name}, found {parsingEvent.GetType().Name}");
            }
        }

        private ConfigLocation At(Mark mark) => new(file, Line(mark), Column(mark));

        private static int Line(Mark mark) => (int)Math.Min(mark.Line, int.MaxValue);

        private static int Column(Mark mark) => (int)Math.Min(mark.Column, int.MaxValue);
    }
}
