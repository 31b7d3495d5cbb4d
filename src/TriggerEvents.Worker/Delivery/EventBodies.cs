using Npgsql;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>An event that no attempt can send: dead-lettered at once with <see cref="Exception.Message"/> as the reason.</summary>
internal sealed class UndeliverableEventException(string reason) : Exception(reason);

/// <summary>
/// Writes the request body of a claimed delivery once, at its exact size, from the event's values
/// as UTF-8. Values that came with the claim are copied in from the claim's pooled
/// array; a large event's are read from the database straight into its body, once
/// <see cref="BodyMemory"/> has room for it. An event whose body would be larger than its
/// subscription's <c>max_event_bytes</c> is refused before any of it is read.
/// </summary>
internal sealed class EventBodies(DeliveryStore store, BodyMemory memory, TimeProvider time)
{
    /// <summary>The body of <paramref name="delivery"/>'s attempt, which the caller disposes.</summary>
    /// <exception cref="UndeliverableEventException">Too large, gone from the log, or not valid JSON.</exception>
    public async Task<RequestBody> WriteAsync(ClaimedDelivery delivery, SubscriptionConfig subscription, CancellationToken cancellationToken)
    {
        if (delivery.EventGone)
        {
            throw Gone(delivery.Event.Id);
        }

        if (delivery.Unrenderable is { } error)
        {
            throw new UndeliverableEventException(
                $"event is over {ByteSize.Format(SubscriptionConfig.MaxMaxEventBytes)} as JSON text, more than PostgreSQL can render " +
                $"(\"{error}\"), and over max_event_bytes {ByteSize.Format(subscription.MaxEventBytes)}");
        }

        var layout = WebhookPayload.Layout(delivery.Event, subscription.Retry.MaxAttempts - 1, delivery.Attempt - 1);
        var sizes = delivery.Sizes;
        var length = layout.Length(sizes.Old, sizes.New, sizes.Session);
        CheckSize(length, subscription);
        if (delivery.ValuesIncluded)
        {
            var small = RequestBody.Rent((int)length);
            try
            {
                var slots = layout.Place(small.Span, sizes.Old, sizes.New, sizes.Session);
                Copy(delivery.Event.OldRow, slots.Old, small);
                Copy(delivery.Event.NewRow, slots.New, small);
                Copy(delivery.Event.SessionVariables, slots.Session, small);
                delivery.Values?.Return();
                Validate(small, slots);
                return small;
            }
            catch
            {
                small.Dispose();
                throw;
            }
        }

        var reservation = await memory.ReserveAsync(length, cancellationToken);
        try
        {
            return await ReadLargeAsync(delivery.Event.Id, layout, subscription, reservation, cancellationToken);
        }
        catch
        {
            reservation.Dispose();
            throw;
        }
    }

    private static UndeliverableEventException Gone(long eventId) =>
        new($"event {eventId} is no longer in the event log (deleted outside retention), so there is nothing to send");

    private static void CheckSize(long length, SubscriptionConfig subscription)
    {
        if (length > subscription.MaxEventBytes)
        {
            throw new UndeliverableEventException($"event is {ByteSize.Format(length)}, over max_event_bytes {ByteSize.Format(subscription.MaxEventBytes)}");
        }
    }

    private static void Copy(Utf8Json? value, BodySlot? slot, RequestBody body)
    {
        if (value is { } json && slot is { } place)
        {
            json.Utf8.Span.CopyTo(body.Span.Slice(place.Start, place.Length));
        }
    }

    private static void Validate(RequestBody body, BodySlots slots)
    {
        try
        {
            if (!body.ReleasedOnceSent)
            {
                WebhookPayload.Validate(body.Span, slots);
                return;
            }

            foreach (var (slot, what) in new[] { (slots.Old, "old row"), (slots.New, "new row"), (slots.Session, "session variables") })
            {
                if (slot is { } place)
                {
                    WebhookPayload.Validate(body.Slice(place.Start, place.Length), what);
                }
            }
        }
        catch (ArgumentException e)
        {
            throw new UndeliverableEventException($"not deliverable: {e.Message}");
        }
    }

    /// <summary>
    /// Reads a large event's values into a body of their exact size. A lost connection is tried
    /// again until it works or the worker stops (the delivery is then released, its attempt
    /// given back): the database being away is no reason to spend the event's attempts.
    /// </summary>
    private async Task<RequestBody> ReadLargeAsync(
        long eventId, BodyLayout layout, SubscriptionConfig subscription, BodyMemory.Reservation reservation, CancellationToken cancellationToken)
    {
        for (var failures = 0; ; failures++)
        {
            RequestBody? body = null;
            BodySlots slots = default;
            try
            {
                var found = await store.ReadValuesAsync(
                    eventId,
                    sizes =>
                    {
                        var length = layout.Length(sizes.Old, sizes.New, sizes.Session);
                        CheckSize(length, subscription);
                        body = RequestBody.InChunks((int)length, reservation);
                        slots = layout.Place(body.Write, sizes.Old, sizes.New, sizes.Session);
                        return new ValuePlaces(Place(body, slots.Old), Place(body, slots.New), Place(body, slots.Session));
                    },
                    cancellationToken);
                if (!found)
                {
                    throw Gone(eventId);
                }

                Validate(body!, slots);
                return body!;
            }
            catch (InvalidDataException e)
            {
                throw new UndeliverableEventException($"not deliverable: the event could not be read: {e.Message}");
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
            {
                if (e is PostgresException postgres && IsPermanent(postgres))
                {
                    throw new UndeliverableEventException($"not deliverable: the event could not be read: {postgres.MessageText}");
                }

                await Task.Delay(ReconnectBackoff.Delay(failures + 1), time, cancellationToken);
            }
        }
    }

    private static List<Memory<byte>>? Place(RequestBody body, BodySlot? slot) =>
        slot is { } place ? body.Pieces(place.Start, place.Length) : null;

    /// <summary>Errors that reading the same row again would meet again (data, limits).</summary>
    private static bool IsPermanent(PostgresException e) =>
        e.SqlState.StartsWith("22", StringComparison.Ordinal) || e.SqlState.StartsWith("54", StringComparison.Ordinal);
}
