using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Delivery.Targets;

namespace TriggerEvents.Worker.Delivery;

/// <summary>A subscription the worker delivers: its registry id, its settings, where it sends, and its retry policy.</summary>
internal sealed record ActiveSubscription(int Id, SubscriptionConfig Config, IDeliveryTarget Target, RetryPolicy Policy)
{
    public string Name => Config.Name;

    /// <summary>The most bytes of values an event may have to come with its claim: beyond them it is read apart (<see cref="DeliveryStore.InlineEventBytes"/>).</summary>
    public int InlineBytes => (int)Math.Min(DeliveryStore.InlineEventBytes, Config.MaxEventBytes);
}
