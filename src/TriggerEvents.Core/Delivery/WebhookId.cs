using System.Globalization;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// The <c>webhook-id</c> of a delivery: <c>msg_&lt;subscription&gt;_&lt;event id&gt;</c>, for example
/// <c>msg_billing-orders_1042</c>.
/// </summary>
/// <remarks>
/// Derived from the event and the subscription alone, so it is the same on every retry, after a lease
/// is taken over, and on a <c>replay</c> or <c>dead retry</c>: a receiver that drops ids it has seen
/// drops exactly the duplicates. It is readable rather than a hash so that an operator can find the
/// event from a receiver's log. It is unique because the event id, the part after the last '_', has
/// no '_' in it, and subscription names are unique. Characters other than letters, digits, '-' and
/// '_' (which a checked name never has) become '_'; there is never a '.', which Standard Webhooks
/// uses to separate the signed parts. Renaming a subscription changes its ids.
/// </remarks>
internal static class WebhookId
{
    /// <summary>What every id starts with, as in the Standard Webhooks examples.</summary>
    public const string Prefix = "msg_";

    /// <summary>The id of delivering event <paramref name="eventId"/> to <paramref name="subscriptionName"/>.</summary>
    public static string For(long eventId, string subscriptionName)
    {
        ArgumentException.ThrowIfNullOrEmpty(subscriptionName);
        var id = eventId.ToString(CultureInfo.InvariantCulture);
        return string.Create(Prefix.Length + subscriptionName.Length + 1 + id.Length, (subscriptionName, id), static (span, state) =>
        {
            Prefix.CopyTo(span);
            var name = span.Slice(Prefix.Length, state.subscriptionName.Length);
            for (var i = 0; i < name.Length; i++)
            {
                var c = state.subscriptionName[i];
                name[i] = char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '_';
            }

            span[Prefix.Length + name.Length] = '_';
            state.id.CopyTo(span[(Prefix.Length + name.Length + 1)..]);
        });
    }

    /// <summary>
    /// The id of a batch's request (SPEC "Webhook request"): <c>msg_&lt;subscription&gt;_b&lt;first
    /// element's event id&gt;_&lt;count&gt;</c>. A batch is retried as the same events, so the id is
    /// stable across its retries; the <c>b</c> keeps it apart from every single event's id.
    /// </summary>
    public static string ForBatch(long firstEventId, int count, string subscriptionName)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        var single = For(firstEventId, subscriptionName);
        var idAt = single.Length - firstEventId.ToString(CultureInfo.InvariantCulture).Length;
        return $"{single[..idAt]}b{single[idAt..]}_{count.ToString(CultureInfo.InvariantCulture)}";
    }
}
