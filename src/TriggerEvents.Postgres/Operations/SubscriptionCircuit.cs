namespace TriggerEvents.Postgres.Operations;

/// <summary>
/// A subscription's circuit as operators see it (closed, open or half_open), in one place for
/// <c>subscriptions --json</c> and the console. Closed while the subscription has no circuit
/// breaker, which is every subscription until breakers are configurable.
/// </summary>
internal static class SubscriptionCircuit
{
    public const string Closed = "closed";

    public static string Of(SubscriptionStatus status)
    {
        ArgumentNullException.ThrowIfNull(status);
        return Closed;
    }
}
