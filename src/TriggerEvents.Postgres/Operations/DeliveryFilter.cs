namespace TriggerEvents.Postgres.Operations;

/// <summary>
/// Which deliveries an operator command touches. Times are the events' capture times:
/// <see cref="Since"/> inclusive, <see cref="Until"/> exclusive (<c>--before</c> is the same bound).
/// </summary>
internal sealed record DeliveryFilter(string? Subscription = null, long? EventId = null, DateTimeOffset? Since = null, DateTimeOffset? Until = null);
