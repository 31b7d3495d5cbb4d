using System.Globalization;
using System.Text;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The body of a batch's request (SPEC "Webhook request"):
/// <c>{"batch": {"size": N}, "events": [&lt;event body&gt;, …]}</c>, each element exactly the body
/// the event would have on its own (<see cref="EventBodies"/>), copied in as it is.
/// </summary>
internal static class BatchBody
{
    /// <summary>
    /// The most bytes a batch's body may have: it is made in one array. A batch of events that
    /// large together is refused as a whole rather than split, since a split batch would no
    /// longer be the same batch when retried.
    /// </summary>
    public const long MaxBytes = 1L << 30;

    private static readonly byte[] Separator = ","u8.ToArray();
    private static readonly byte[] End = "]}"u8.ToArray();

    /// <summary>A new body holding <paramref name="elements"/> in order; the caller disposes both.</summary>
    /// <exception cref="UndeliverableEventException">Together they are over <see cref="MaxBytes"/>.</exception>
    public static RequestBody Write(IReadOnlyList<byte[]> elements)
    {
        ArgumentOutOfRangeException.ThrowIfZero(elements.Count);
        var start = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{{\"batch\":{{\"size\":{elements.Count}}},\"events\":["));
        var length = (long)start.Length + End.Length + (elements.Count - 1);
        foreach (var element in elements)
        {
            length += element.Length;
        }

        if (length > MaxBytes)
        {
            throw new UndeliverableEventException(string.Create(CultureInfo.InvariantCulture,
                $"not deliverable: a batch of {elements.Count} events would be {length} bytes, over {MaxBytes} bytes in one request"));
        }

        var body = RequestBody.Rent((int)length);
        try
        {
            var span = body.Span;
            start.CopyTo(span);
            var at = start.Length;
            for (var i = 0; i < elements.Count; i++)
            {
                if (i > 0)
                {
                    Separator.CopyTo(span[at..]);
                    at += Separator.Length;
                }

                elements[i].CopyTo(span[at..]);
                at += elements[i].Length;
            }

            End.CopyTo(span[at..]);
            return body;
        }
        catch
        {
            body.Dispose();
            throw;
        }
    }
}
