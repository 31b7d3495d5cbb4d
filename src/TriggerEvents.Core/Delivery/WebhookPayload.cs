using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Unicode;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// Writes the JSON body of a webhook request (SPEC "Webhook request"), compatible with Hasura's event
/// trigger payload.
/// </summary>
/// <remarks>
/// Row data, session variables and MANUAL payloads are copied into the body as the database rendered
/// them, never parsed into numbers and written back: a <c>bigint</c> beyond 2^53 or a <c>numeric</c>
/// with forty digits arrives exactly as stored. They are checked to be one well-formed JSON value
/// (nested up to 10,000 levels deep), so a broken row fails here, where the worker can
/// dead-letter it with a reason, rather than at the receiver on every retry.
/// </remarks>
internal static class WebhookPayload
{
    // Well beyond what jsonb holds in practice; Utf8JsonReader's default of 64 would refuse real rows.
    private const int MaxRowDepth = 10_000;

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        // The body is JSON for machines, never embedded in HTML, so non-ASCII names stay readable
        // instead of becoming \uXXXX; JSON-significant characters are still escaped.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    private static readonly JsonReaderOptions RowReaderOptions = new() { MaxDepth = MaxRowDepth };

    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private static readonly JsonEncodedText Id = JsonEncodedText.Encode("id");
    private static readonly JsonEncodedText CreatedAt = JsonEncodedText.Encode("created_at");
    private static readonly JsonEncodedText Trigger = JsonEncodedText.Encode("trigger");
    private static readonly JsonEncodedText Name = JsonEncodedText.Encode("name");
    private static readonly JsonEncodedText Table = JsonEncodedText.Encode("table");
    private static readonly JsonEncodedText Schema = JsonEncodedText.Encode("schema");
    private static readonly JsonEncodedText Event = JsonEncodedText.Encode("event");
    private static readonly JsonEncodedText Op = JsonEncodedText.Encode("op");
    private static readonly JsonEncodedText Data = JsonEncodedText.Encode("data");
    private static readonly JsonEncodedText Old = JsonEncodedText.Encode("old");
    private static readonly JsonEncodedText New = JsonEncodedText.Encode("new");
    private static readonly JsonEncodedText SessionVariables = JsonEncodedText.Encode("session_variables");
    private static readonly JsonEncodedText TraceContext = JsonEncodedText.Encode("trace_context");
    private static readonly JsonEncodedText ConditionError = JsonEncodedText.Encode("condition_error");
    private static readonly JsonEncodedText TraceParentName = JsonEncodedText.Encode("traceparent");
    private static readonly JsonEncodedText TraceId = JsonEncodedText.Encode("trace_id");
    private static readonly JsonEncodedText SpanId = JsonEncodedText.Encode("span_id");
    private static readonly JsonEncodedText DeliveryInfo = JsonEncodedText.Encode("delivery_info");
    private static readonly JsonEncodedText MaxRetries = JsonEncodedText.Encode("max_retries");
    private static readonly JsonEncodedText CurrentRetry = JsonEncodedText.Encode("current_retry");

    [ThreadStatic]
    private static ArrayBufferWriter<byte>? scratch;

    /// <summary>
    /// Writes the body for one attempt to <paramref name="output"/> (a pooled or reused buffer).
    /// </summary>
    /// <param name="output">Where the UTF-8 JSON goes.</param>
    /// <param name="webhookEvent">The event.</param>
    /// <param name="maxRetries"><c>delivery_info.max_retries</c>: the subscription's <c>max_attempts</c> − 1.</param>
    /// <param name="currentRetry"><c>delivery_info.current_retry</c>: attempts made before this one (0 on the first).</param>
    /// <exception cref="ArgumentException">A row, the session variables or the payload is not one well-formed JSON value.</exception>
    public static void Write(IBufferWriter<byte> output, WebhookEvent webhookEvent, int maxRetries, int currentRetry)
    {
        ArgumentNullException.ThrowIfNull(output);
        var layout = Layout(webhookEvent, maxRetries, currentRetry);
        var (old, @new, session) = (webhookEvent.OldRow, webhookEvent.NewRow, webhookEvent.SessionVariables);
        var length = checked((int)layout.Length(old?.Length, @new?.Length, session?.Length));
        var body = output.GetSpan(length)[..length];
        var slots = layout.Place(body, old?.Length, @new?.Length, session?.Length);
        Fill(body, slots.Old, old);
        Fill(body, slots.New, @new);
        Fill(body, slots.Session, session);
        Validate(body, slots);
        output.Advance(length);
    }

    /// <summary>The body as a new array; <see cref="Write"/> into a reused buffer on hot paths.</summary>
    public static byte[] ToUtf8Bytes(WebhookEvent webhookEvent, int maxRetries, int currentRetry)
    {
        var buffer = new ArrayBufferWriter<byte>(1024);
        Write(buffer, webhookEvent, maxRetries, currentRetry);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Everything of the body but the event's three JSON values (old row, new row, session
    /// variables), which are written where <see cref="BodyLayout.Place(Span{byte}, int?, int?, int?)"/> says, straight from
    /// where they are read: a large row is then copied once, into the body, and never held twice.
    /// The values in <paramref name="webhookEvent"/> are not read.
    /// </summary>
    /// <param name="webhookEvent">The event.</param>
    /// <param name="maxRetries">See <see cref="Write"/>.</param>
    /// <param name="currentRetry">See <see cref="Write"/>.</param>
    public static BodyLayout Layout(WebhookEvent webhookEvent, int maxRetries, int currentRetry)
    {
        ArgumentNullException.ThrowIfNull(webhookEvent);
        ArgumentOutOfRangeException.ThrowIfNegative(maxRetries);
        ArgumentOutOfRangeException.ThrowIfNegative(currentRetry);

        var output = scratch ??= new ArrayBufferWriter<byte>(1024);
        output.ResetWrittenCount();
        using var writer = new Utf8JsonWriter(output, WriterOptions);
        writer.WriteStartObject();

        Span<char> text = stackalloc char[32];
        webhookEvent.Id.TryFormat(text, out var idLength, provider: CultureInfo.InvariantCulture);
        writer.WriteString(Id, text[..idLength]);

        // Microseconds, the precision of a PostgreSQL timestamptz, always in UTC with a 'Z': the
        // round-trip format ("yyyy-MM-ddTHH:mm:ss.fffffffZ", fast-pathed, unlike a custom format)
        // without its seventh digit, which a timestamptz never has.
        webhookEvent.CapturedAt.UtcDateTime.TryFormat(text, out _, "O", CultureInfo.InvariantCulture);
        text[26] = 'Z';
        writer.WriteString(CreatedAt, text[..27]);

        writer.WriteStartObject(Trigger);
        writer.WriteString(Name, webhookEvent.TriggerName);
        writer.WriteEndObject();

        writer.WriteStartObject(Table);
        writer.WriteString(Schema, webhookEvent.TableSchema);
        writer.WriteString(Name, webhookEvent.TableName);
        writer.WriteEndObject();

        writer.WriteStartObject(Event);
        writer.WriteString(Op, webhookEvent.Operation);
        writer.WriteStartObject(Data);
        writer.WritePropertyName(Old);
        var oldAt = Hole(writer);
        writer.WritePropertyName(New);
        var newAt = Hole(writer);
        writer.WriteEndObject();
        writer.WritePropertyName(SessionVariables);
        var sessionAt = Hole(writer);
        WriteTraceContext(writer, webhookEvent.TraceParent);
        // Only when the condition raised: every other body stays exactly Hasura's shape.
        if (webhookEvent.ConditionError is not null)
        {
            writer.WriteString(ConditionError, webhookEvent.ConditionError);
        }

        writer.WriteEndObject();

        writer.WriteStartObject(DeliveryInfo);
        writer.WriteNumber(MaxRetries, maxRetries);
        writer.WriteNumber(CurrentRetry, currentRetry);
        writer.WriteEndObject();

        writer.WriteEndObject();
        writer.Flush();
        return new BodyLayout(output.WrittenSpan.ToArray(), oldAt, newAt, sessionAt);
    }

    /// <summary>
    /// Checks that each value placed in <paramref name="body"/> is one well-formed JSON value
    /// (nested up to 10,000 levels), so a broken row fails here, where the worker can dead-letter
    /// it with a reason, rather than at the receiver on every retry.
    /// </summary>
    /// <exception cref="ArgumentException">One is not.</exception>
    public static void Validate(ReadOnlySpan<byte> body, BodySlots slots)
    {
        Validate(body, slots.Old, "old row");
        Validate(body, slots.New, "new row");
        Validate(body, slots.Session, "session variables");
    }

    /// <summary>
    /// Checks that <paramref name="value"/>, one of the event's values in a body that is not one
    /// span, is one well-formed JSON value; see <see cref="Validate(ReadOnlySpan{byte}, BodySlots)"/>.
    /// </summary>
    /// <exception cref="ArgumentException">It is not.</exception>
    public static void Validate(ReadOnlySequence<byte> value, string what)
    {
        var decoder = StrictUtf8.GetDecoder();
        try
        {
            foreach (var piece in value)
            {
                decoder.GetCharCount(piece.Span, flush: false);
            }

            decoder.GetCharCount([], flush: true);
        }
        catch (DecoderFallbackException)
        {
            throw NotUtf8(what);
        }

        try
        {
            var reader = new Utf8JsonReader(value, RowReaderOptions);
            while (reader.Read())
            {
            }
        }
        catch (JsonException e)
        {
            // The message of the reader says where, not what: no row data in it.
            throw new ArgumentException($"The {what} is not valid JSON: {e.Message}", what, e);
        }
    }

    /// <summary>Writes <c>null</c> where a value goes and returns its offset in the output.</summary>
    private static int Hole(Utf8JsonWriter writer)
    {
        writer.WriteNullValue();
        writer.Flush();
        return checked((int)writer.BytesCommitted) - BodyLayout.Null.Length;
    }

    private static void Fill(Span<byte> body, BodySlot? slot, Utf8Json? value)
    {
        if (slot is { } place && value is { } json)
        {
            json.Utf8.Span.CopyTo(body.Slice(place.Start, place.Length));
        }
    }

    private static void Validate(ReadOnlySpan<byte> body, BodySlot? slot, string what)
    {
        if (slot is not { } place)
        {
            return;
        }

        var value = body.Slice(place.Start, place.Length);
        if (!Utf8.IsValid(value))
        {
            throw NotUtf8(what);
        }

        try
        {
            var reader = new Utf8JsonReader(value, RowReaderOptions);
            while (reader.Read())
            {
            }
        }
        catch (JsonException e)
        {
            // The message of the reader says where, not what: no row data in it.
            throw new ArgumentException($"The {what} is not valid JSON: {e.Message}", what, e);
        }
    }

    // The reader checks the UTF-8 of escaped strings only; a body must be UTF-8 throughout.
    private static ArgumentException NotUtf8(string what) =>
        new($"The {what} is not valid UTF-8 (a database in SQL_ASCII encoding holds bytes of another encoding)", what);

    private static void WriteTraceContext(Utf8JsonWriter writer, string? traceParent)
    {
        // A writer's value that is not a valid traceparent is dropped (SPEC "Roles and secrets"):
        // null, as when none was set, never passed on as written. WebhookTarget leaves out the
        // header for the same values.
        if (!TraceParent.TryParse(traceParent, out var parsed))
        {
            writer.WriteNull(TraceContext);
            return;
        }

        writer.WriteStartObject(TraceContext);
        writer.WriteString(TraceParentName, parsed.Value);
        writer.WriteString(TraceId, parsed.TraceId);
        writer.WriteString(SpanId, parsed.SpanId);
        writer.WriteEndObject();
    }
}
