using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;
using TriggerEvents.Worker.Delivery;
using TriggerEvents.Worker.Signals;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// The claim loop is woken when a request's slot is freed, and only then: a result of a key's
/// run before its last leaves the slot taken, and a claim could take nothing more of that key.
/// </summary>
public sealed class HeldDeliveriesTests
{
    [Test]
    public async Task Only_a_freed_request_slot_wakes_the_claim_loop()
    {
        // Holding and letting go never touch the database.
        await using var dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1");
        var wake = new WakeSignal();
        var held = new HeldDeliveries(new DeliveryStore(dataSource), Guid.NewGuid(), TimeSpan.FromSeconds(30), TimeProvider.System, wake, NullLogger.Instance);
        var run = new RequestSlot();
        var members = new[] { Delivery(1), Delivery(2), Delivery(3) };
        foreach (var member in members)
        {
            held.Hold(member, run, TimeProvider.System.GetTimestamp());
        }

        var single = Delivery(4);
        held.Hold(single, new RequestSlot(), TimeProvider.System.GetTimestamp());
        Assert.That(held.Requests, Is.EqualTo(2), "a run is one request");

        held.Unhold(Delivered(members[0]));
        held.Unhold(Delivered(members[1]));
        Assert.That(await wake.WaitAsync(TimeSpan.Zero, CancellationToken.None), Is.False, "the run's first results freed no slot and woke nothing");
        Assert.That(held.Requests, Is.EqualTo(2));

        held.Unhold(Delivered(members[2]));
        Assert.That(await wake.WaitAsync(TimeSpan.Zero, CancellationToken.None), Is.True, "the run's last result freed its slot");
        Assert.That(held.Requests, Is.EqualTo(1));

        held.Unhold(Delivered(single));
        Assert.That(await wake.WaitAsync(TimeSpan.Zero, CancellationToken.None), Is.True, "a single delivery's result freed its slot");
        Assert.That(held.Requests, Is.Zero);
    }

    private static ClaimedDelivery Delivery(long eventId) =>
        new(1, new WebhookEvent(eventId, DateTimeOffset.UnixEpoch, "orders", "public", "orders", "UPDATE", null, null, null, null), 1, false, DateTimeOffset.UnixEpoch);

    private static DeliveryResult Delivered(ClaimedDelivery delivery) =>
        new(delivery.Key, delivery.Attempt, DeliveryResultKind.Delivered, TimeSpan.Zero, 204, null, DateTimeOffset.UnixEpoch, TimeSpan.Zero, null);
}
