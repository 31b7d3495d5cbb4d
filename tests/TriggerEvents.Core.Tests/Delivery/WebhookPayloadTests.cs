using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class WebhookPayloadTests
{
    private const string SpecBody = """
        {
          "id": "1042",
          "created_at": "2026-11-26T17:13:34.123456Z",
          "trigger": { "name": "orders_changed" },
          "table": { "schema": "public", "name": "orders" },
          "event": {
            "op": "UPDATE",
            "data": { "old": { "id": 7, "status": "new" }, "new": { "id": 7, "status": "paid" } },
            "session_variables": { "x-user-id": "42" },
            "trace_context": null
          },
          "delivery_info": { "max_retries": 9, "current_retry": 0 }
        }
        """;

    private static readonly WebhookEvent SpecEvent = new(
        Id: 1042,
        CapturedAt: new DateTimeOffset(2026, 11, 26, 17, 13, 34, TimeSpan.Zero).AddTicks(1_234_560),
        TriggerName: "orders_changed",
        TableSchema: "public",
        TableName: "orders",
        Operation: "UPDATE",
        OldRow: """{"id": 7, "status": "new"}""",
        NewRow: """{"id": 7, "status": "paid"}""",
        SessionVariables: """{"x-user-id": "42"}""",
        TraceParent: null);

    private static string Body(WebhookEvent webhookEvent, int maxRetries = 9, int currentRetry = 0) =>
        Encoding.UTF8.GetString(WebhookPayload.ToUtf8Bytes(webhookEvent, maxRetries, currentRetry));

    private static JsonNode Json(WebhookEvent webhookEvent) => JsonNode.Parse(Body(webhookEvent))!;

    [Test]
    public void The_body_of_the_spec_example_is_written_compactly_in_its_order()
    {
        Assert.That(Body(SpecEvent), Is.EqualTo(
            """{"id":"1042","created_at":"2026-11-26T17:13:34.123456Z","trigger":{"name":"orders_changed"},"table":{"schema":"public","name":"orders"},"event":{"op":"UPDATE","data":{"old":{"id": 7, "status": "new"},"new":{"id": 7, "status": "paid"}},"session_variables":{"x-user-id": "42"},"trace_context":null},"delivery_info":{"max_retries":9,"current_retry":0}}"""));
    }

    [Test]
    public void The_body_of_the_spec_example_means_what_the_spec_shows()
    {
        Assert.That(JsonNode.DeepEquals(Json(SpecEvent), JsonNode.Parse(SpecBody)), Is.True);
    }

    [Test]
    public void Large_integers_and_numerics_arrive_exactly_as_stored()
    {
        const string row = """{"id": 9007199254740993, "amount": 12345678901234567890.123456789012345678901234567890, "small": 1e-400}""";

        var body = Body(SpecEvent with { NewRow = row });

        Assert.That(body, Does.Contain("\"new\":" + row));
    }

    [Test]
    public void Missing_rows_session_and_trace_are_null()
    {
        var node = Json(SpecEvent with { Operation = "INSERT", OldRow = null, SessionVariables = null, TraceParent = null });

        Assert.That(node["event"]!["data"]!["old"], Is.Null);
        Assert.That(node["event"]!.AsObject().ContainsKey("session_variables"), Is.True);
        Assert.That(node["event"]!["session_variables"], Is.Null);
        Assert.That(node["event"]!["trace_context"], Is.Null);
    }

    [Test]
    public void A_condition_error_is_in_the_event_and_absent_otherwise()
    {
        var node = Json(SpecEvent with { ConditionError = "22P02: invalid input syntax for type integer: \"abc\"" });

        Assert.That(node["event"]!["condition_error"]!.GetValue<string>(), Is.EqualTo("22P02: invalid input syntax for type integer: \"abc\""));
        Assert.That(Json(SpecEvent)["event"]!.AsObject().ContainsKey("condition_error"), Is.False);
    }

    [Test]
    public void A_manual_event_may_carry_any_json_value()
    {
        var node = Json(SpecEvent with { Operation = "MANUAL", OldRow = null, NewRow = """[1, "two", {"three": 3}]""" });

        Assert.That(node["event"]!["op"]!.GetValue<string>(), Is.EqualTo("MANUAL"));
        Assert.That(node["event"]!["data"]!["new"]!.AsArray(), Has.Count.EqualTo(3));
    }

    [Test]
    public void A_read_event_shows_the_row_as_new_and_no_old_row()
    {
        var node = Json(SpecEvent with { Operation = "READ", OldRow = null, NewRow = """{"id": 7, "status": "paid"}""" });

        Assert.That(node["event"]!["op"]!.GetValue<string>(), Is.EqualTo("READ"));
        Assert.That(node["event"]!["data"]!.AsObject().ContainsKey("old"), Is.True);
        Assert.That(node["event"]!["data"]!["old"], Is.Null);
        Assert.That(node["event"]!["data"]!["new"]!["status"]!.GetValue<string>(), Is.EqualTo("paid"));
    }

    [Test]
    public void A_valid_traceparent_becomes_a_trace_context_with_its_ids()
    {
        const string traceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

        var context = Json(SpecEvent with { TraceParent = traceParent })["event"]!["trace_context"]!;

        Assert.That(context.ToJsonString(), Is.EqualTo("""{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"""));
    }

    [TestCase("garbage")]
    [TestCase("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01")]
    [TestCase("00-00000000000000000000000000000000-00f067aa0ba902b7-01")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")]
    [TestCase("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra")]
    [TestCase("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX-Injected: 1")]
    [TestCase("")]
    public void A_traceparent_that_is_not_valid_is_dropped_and_the_trace_context_is_null(string traceParent)
    {
        var node = Json(SpecEvent with { TraceParent = traceParent });

        Assert.That(node["event"]!.AsObject().ContainsKey("trace_context"), Is.True, "the key stays, as in Hasura's body");
        Assert.That(node["event"]!["trace_context"], Is.Null);
        Assert.That(node.ToJsonString(), Does.Not.Contain("4bf92f3577b34da6a3ce929d0e0e4736").IgnoreCase);
    }

    [Test]
    public void A_later_version_traceparent_is_passed_on_as_version_00()
    {
        var context = Json(SpecEvent with { TraceParent = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more" })["event"]!["trace_context"]!;

        Assert.That(context.ToJsonString(), Is.EqualTo("""{"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}"""));
    }

    [Test]
    public void Created_at_is_utc_with_microseconds_and_a_z()
    {
        var capturedAt = new DateTimeOffset(2026, 1, 2, 5, 4, 5, TimeSpan.FromHours(2)).AddTicks(9);

        Assert.That(Json(SpecEvent with { CapturedAt = capturedAt })["created_at"]!.GetValue<string>(), Is.EqualTo("2026-01-02T03:04:05.000000Z"));
    }

    [Test]
    public void Sub_microsecond_ticks_are_dropped_not_rounded()
    {
        var capturedAt = new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero).AddTicks(9_999_999);

        Assert.That(Json(SpecEvent with { CapturedAt = capturedAt })["created_at"]!.GetValue<string>(), Is.EqualTo("2026-01-02T03:04:05.999999Z"));
    }

    [Test]
    public void The_id_is_a_string_and_delivery_info_counts_retries()
    {
        var node = JsonNode.Parse(Encoding.UTF8.GetString(WebhookPayload.ToUtf8Bytes(SpecEvent with { Id = long.MaxValue }, maxRetries: 4, currentRetry: 3)))!;

        Assert.That(node["id"]!.GetValue<string>(), Is.EqualTo("9223372036854775807"));
        Assert.That(node["delivery_info"]!["max_retries"]!.GetValue<int>(), Is.EqualTo(4));
        Assert.That(node["delivery_info"]!["current_retry"]!.GetValue<int>(), Is.EqualTo(3));
    }

    [Test]
    public void Names_are_escaped_as_json_needs_and_non_ascii_stays_readable()
    {
        var body = Body(SpecEvent with { TableSchema = "Verkäufe", TableName = "odd \"name\"\\<x>" });

        Assert.That(body, Does.Contain("\"schema\":\"Verkäufe\""));
        Assert.That(JsonNode.Parse(body)!["table"]!["name"]!.GetValue<string>(), Is.EqualTo("odd \"name\"\\<x>"));
    }

    [Test]
    public void Deeply_nested_row_data_is_accepted()
    {
        var row = "{\"a\":" + string.Concat(Enumerable.Repeat("[", 500)) + string.Concat(Enumerable.Repeat("]", 500)) + "}";

        Assert.That(Body(SpecEvent with { NewRow = row }), Does.Contain(row));
    }

    [Test]
    public void A_large_row_is_copied_whole()
    {
        var row = "{\"blob\":\"" + new string('x', 2 * 1024 * 1024) + "\"}";

        var node = Json(SpecEvent with { NewRow = row });

        Assert.That(node["event"]!["data"]!["new"]!["blob"]!.GetValue<string>(), Has.Length.EqualTo(2 * 1024 * 1024));
    }

    [TestCase("")]
    [TestCase("{")]
    [TestCase("{\"a\": 1} {\"b\": 2}")]
    [TestCase("{'a': 1}")]
    [TestCase("NaN")]
    [TestCase("{\"a\": 1,}")]
    public void A_row_that_is_not_one_json_value_is_refused_without_quoting_it(string row)
    {
        var exception = Assert.Throws<ArgumentException>(() => WebhookPayload.ToUtf8Bytes(SpecEvent with { OldRow = row }, 9, 0))!;

        Assert.That(exception.Message, Does.StartWith("The old row is not valid JSON"));
    }

    [Test]
    public void Invalid_session_variables_are_refused()
    {
        Assert.Throws<ArgumentException>(() => WebhookPayload.ToUtf8Bytes(SpecEvent with { SessionVariables = "x-user-id=42" }, 9, 0));
    }

    [Test]
    public void Negative_retry_counts_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => WebhookPayload.ToUtf8Bytes(SpecEvent, -1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => WebhookPayload.ToUtf8Bytes(SpecEvent, 0, -1));
    }

    [Test]
    public void Write_fills_a_reused_buffer()
    {
        var buffer = new ArrayBufferWriter<byte>();
        WebhookPayload.Write(buffer, SpecEvent with { Id = 1 }, 9, 0);
        var first = buffer.WrittenSpan.ToArray();

        buffer.ResetWrittenCount();
        WebhookPayload.Write(buffer, SpecEvent, 9, 0);

        Assert.That(Encoding.UTF8.GetString(buffer.WrittenSpan), Is.EqualTo(Body(SpecEvent)));
        Assert.That(JsonDocument.Parse(first).RootElement.GetProperty("id").GetString(), Is.EqualTo("1"));
    }

    [Test]
    public void A_layout_says_the_bodys_length_before_its_values_are_read_and_where_each_goes()
    {
        var layout = WebhookPayload.Layout(SpecEvent with { OldRow = null, NewRow = null, SessionVariables = null }, 9, 0);
        var (old, @new) = ("""{"id": 7, "status": "new"}"""u8.ToArray(), """{"id": 7, "status": "paid"}"""u8.ToArray());

        var body = new byte[layout.Length(old.Length, @new.Length, null)];
        var slots = layout.Place(body, old.Length, @new.Length, null);
        old.CopyTo(body.AsSpan(slots.Old!.Value.Start));
        @new.CopyTo(body.AsSpan(slots.New!.Value.Start));

        Assert.That(slots.Session, Is.Null, "SQL NULL stays the layout's own null");
        Assert.That(Encoding.UTF8.GetString(body), Is.EqualTo(Body(SpecEvent with { SessionVariables = null })));
        Assert.DoesNotThrow(() => WebhookPayload.Validate(body, slots));
        body[slots.New!.Value.Start] = (byte)'[';
        Assert.Throws<ArgumentException>(() => WebhookPayload.Validate(body, slots));
    }
}
