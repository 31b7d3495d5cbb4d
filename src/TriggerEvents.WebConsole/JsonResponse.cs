using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace TriggerEvents.WebConsole;

/// <summary>
/// Writes a JSON response with <see cref="Utf8JsonWriter"/>: no reflection, so it works in the
/// natively compiled executable, and snake_case keys as every <c>--json</c> of the command line.
/// </summary>
internal static class JsonResponse
{
    public static async Task WriteAsync(HttpContext context, Action<Utf8JsonWriter> write, int status = StatusCodes.Status200OK)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        await using (var writer = new Utf8JsonWriter(buffer))
        {
            write(writer);
        }

        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }

    public static Task ErrorAsync(HttpContext context, int status, string message) =>
        WriteAsync(context, w =>
        {
            w.WriteStartObject();
            w.WriteString("error", message);
            w.WriteEndObject();
        }, status);

    public static void Nullable(this Utf8JsonWriter writer, string name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }

    public static void Nullable(this Utf8JsonWriter writer, string name, int? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteNumber(name, value.Value);
        }
    }

    public static void Nullable(this Utf8JsonWriter writer, string name, double? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteNumber(name, Math.Round(value.Value, 3));
        }
    }

    /// <summary>A UTC time from PostgreSQL's timestamptz, ISO 8601 with a Z.</summary>
    public static void Time(this Utf8JsonWriter writer, string name, DateTime? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, DateTime.SpecifyKind(value.Value, DateTimeKind.Utc));
        }
    }

    /// <summary>A jsonb column's text, written as the JSON it is (not as a string).</summary>
    public static void Raw(this Utf8JsonWriter writer, string name, string? json)
    {
        writer.WritePropertyName(name);
        if (json is null)
        {
            writer.WriteNullValue();
        }
        else
        {
            writer.WriteRawValue(json, skipInputValidation: false);
        }
    }
}
