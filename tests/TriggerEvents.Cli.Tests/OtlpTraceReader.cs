using System.Buffers.Binary;
using System.Text;

namespace TriggerEvents.Cli.Tests;

/// <summary>One span of an OTLP trace export, with its scope and resource.</summary>
/// <param name="TraceId">32 lower-case hex digits.</param>
/// <param name="SpanId">16 lower-case hex digits.</param>
/// <param name="ParentSpanId">16 lower-case hex digits, or null for a root span.</param>
/// <param name="Kind">OTLP's SpanKind: 3 is CLIENT.</param>
/// <param name="StatusCode">OTLP's Status.code: 0 unset, 1 ok, 2 error.</param>
/// <param name="Attributes">string, bool, long or double values by key.</param>
internal sealed record OtlpSpan(
    string TraceId, string SpanId, string? ParentSpanId, string Name, int Kind, int StatusCode, string? StatusMessage,
    IReadOnlyDictionary<string, object> Attributes, string Scope, IReadOnlyDictionary<string, object> Resource)
{
    public const int ClientKind = 3;
    public const int ErrorStatus = 2;

    public object? this[string attribute] => Attributes.GetValueOrDefault(attribute);
}

/// <summary>
/// Reads an <c>ExportTraceServiceRequest</c> (opentelemetry/proto/collector/trace/v1) from the
/// protobuf wire format, as much of it as the tests look at: resource attributes, scope name, and
/// each span's ids, name, kind, attributes and status. Unknown fields are skipped, as protobuf
/// readers do.
/// </summary>
internal static class OtlpTraceReader
{
    private const int Varint = 0;
    private const int Fixed64 = 1;
    private const int LengthDelimited = 2;
    private const int Fixed32 = 5;

    public static List<OtlpSpan> Read(byte[] export)
    {
        var spans = new List<OtlpSpan>();
        // ExportTraceServiceRequest: 1 resource_spans (repeated ResourceSpans).
        foreach (var (field, _, value) in Fields(export))
        {
            if (field == 1)
            {
                ReadResourceSpans(value, spans);
            }
        }

        return spans;
    }

    private static void ReadResourceSpans(ReadOnlyMemory<byte> message, List<OtlpSpan> spans)
    {
        // ResourceSpans: 1 resource (Resource: 1 attributes), 2 scope_spans (repeated ScopeSpans).
        var resource = new Dictionary<string, object>();
        var scopeSpans = new List<ReadOnlyMemory<byte>>();
        foreach (var (field, _, value) in Fields(message))
        {
            if (field == 1)
            {
                foreach (var (resourceField, _, attribute) in Fields(value))
                {
                    if (resourceField == 1)
                    {
                        AddAttribute(attribute, resource);
                    }
                }
            }
            else if (field == 2)
            {
                scopeSpans.Add(value);
            }
        }

        foreach (var scopeSpan in scopeSpans)
        {
            // ScopeSpans: 1 scope (InstrumentationScope: 1 name), 2 spans (repeated Span).
            var scope = "";
            var spanMessages = new List<ReadOnlyMemory<byte>>();
            foreach (var (field, _, value) in Fields(scopeSpan))
            {
                if (field == 1)
                {
                    foreach (var (scopeField, _, name) in Fields(value))
                    {
                        if (scopeField == 1)
                        {
                            scope = Encoding.UTF8.GetString(name.Span);
                        }
                    }
                }
                else if (field == 2)
                {
                    spanMessages.Add(value);
                }
            }

            spans.AddRange(spanMessages.Select(span => ReadSpan(span, scope, resource)));
        }
    }

    private static OtlpSpan ReadSpan(ReadOnlyMemory<byte> message, string scope, Dictionary<string, object> resource)
    {
        // Span: 1 trace_id, 2 span_id, 4 parent_span_id (bytes), 5 name, 6 kind, 9 attributes, 15 status.
        string traceId = "", spanId = "", name = "";
        string? parent = null, statusMessage = null;
        int kind = 0, status = 0;
        var attributes = new Dictionary<string, object>();
        foreach (var (field, number, value) in Fields(message))
        {
            switch (field)
            {
                case 1:
                    traceId = Convert.ToHexStringLower(value.Span);
                    break;
                case 2:
                    spanId = Convert.ToHexStringLower(value.Span);
                    break;
                case 4:
                    parent = value.IsEmpty ? null : Convert.ToHexStringLower(value.Span);
                    break;
                case 5:
                    name = Encoding.UTF8.GetString(value.Span);
                    break;
                case 6:
                    kind = (int)number;
                    break;
                case 9:
                    AddAttribute(value, attributes);
                    break;
                case 15:
                    // Status: 2 message, 3 code.
                    foreach (var (statusField, statusNumber, statusValue) in Fields(value))
                    {
                        if (statusField == 2)
                        {
                            statusMessage = Encoding.UTF8.GetString(statusValue.Span);
                        }
                        else if (statusField == 3)
                        {
                            status = (int)statusNumber;
                        }
                    }

                    break;
            }
        }

        return new OtlpSpan(traceId, spanId, parent, name, kind, status, statusMessage, attributes, scope, resource);
    }

    /// <summary>KeyValue: 1 key, 2 value (AnyValue: 1 string, 2 bool, 3 int64, 4 double; arrays and maps are skipped).</summary>
    private static void AddAttribute(ReadOnlyMemory<byte> keyValue, Dictionary<string, object> into)
    {
        string? key = null;
        object? value = null;
        foreach (var (field, _, content) in Fields(keyValue))
        {
            if (field == 1)
            {
                key = Encoding.UTF8.GetString(content.Span);
            }
            else if (field == 2)
            {
                foreach (var (valueField, number, bytes) in Fields(content))
                {
                    value = valueField switch
                    {
                        1 => Encoding.UTF8.GetString(bytes.Span),
                        2 => number != 0,
                        3 => (long)number,
                        4 => BitConverter.UInt64BitsToDouble(number),
                        _ => value,
                    };
                }
            }
        }

        if (key is not null && value is not null)
        {
            into[key] = value;
        }
    }

    /// <summary>
    /// The fields of one message in order: number, the value of a varint or fixed field, and the
    /// bytes of a length-delimited one.
    /// </summary>
    private static IEnumerable<(int Field, ulong Number, ReadOnlyMemory<byte> Bytes)> Fields(ReadOnlyMemory<byte> message)
    {
        var position = 0;
        while (position < message.Length)
        {
            var tag = ReadVarint(message.Span, ref position);
            var field = (int)(tag >> 3);
            if (field == 0)
            {
                throw new FormatException($"field number 0 at byte {position}");
            }

            switch ((int)(tag & 7))
            {
                case Varint:
                    yield return (field, ReadVarint(message.Span, ref position), ReadOnlyMemory<byte>.Empty);
                    break;
                case Fixed64:
                    Need(message, position, 8);
                    yield return (field, BinaryPrimitives.ReadUInt64LittleEndian(message.Span[position..]), ReadOnlyMemory<byte>.Empty);
                    position += 8;
                    break;
                case LengthDelimited:
                    var length = (int)ReadVarint(message.Span, ref position);
                    Need(message, position, length);
                    yield return (field, 0, message.Slice(position, length));
                    position += length;
                    break;
                case Fixed32:
                    Need(message, position, 4);
                    yield return (field, BinaryPrimitives.ReadUInt32LittleEndian(message.Span[position..]), ReadOnlyMemory<byte>.Empty);
                    position += 4;
                    break;
                default:
                    throw new FormatException($"wire type {tag & 7} of field {field} is not one OTLP uses");
            }
        }
    }

    private static void Need(ReadOnlyMemory<byte> message, int position, int length)
    {
        if (length < 0 || position + length > message.Length)
        {
            throw new FormatException($"a field of {length} bytes at byte {position} runs past the end ({message.Length})");
        }
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> bytes, ref int position)
    {
        ulong value = 0;
        for (var shift = 0; shift < 64; shift += 7)
        {
            if (position >= bytes.Length)
            {
                throw new FormatException("a varint runs past the end");
            }

            var b = bytes[position++];
            value |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0)
            {
                return value;
            }
        }

        throw new FormatException("a varint longer than 10 bytes");
    }
}
