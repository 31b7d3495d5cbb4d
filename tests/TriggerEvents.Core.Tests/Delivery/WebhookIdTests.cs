using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Tests.Delivery;

public class WebhookIdTests
{
    [Test]
    public void The_id_names_the_subscription_and_the_event()
    {
        Assert.That(WebhookId.For(1042, "billing-orders"), Is.EqualTo("msg_billing-orders_1042"));
    }

    [Test]
    public void The_id_is_the_same_on_every_call()
    {
        var first = WebhookId.For(long.MaxValue, "a_b");
        var second = WebhookId.For(long.MaxValue, "a_b");

        Assert.That(second, Is.EqualTo(first));
        Assert.That(first, Is.EqualTo("msg_a_b_9223372036854775807"));
    }

    [Test]
    public void Ids_differ_for_every_pair_of_event_and_subscription_even_when_names_hold_underscores()
    {
        string[] subscriptions = ["a", "a_1", "a_12", "a-1", "1", "_", "__", "a_"];
        long[] events = [0, 1, 2, 12, 21, 112, 9_007_199_254_740_993];

        var ids = subscriptions.SelectMany(subscription => events.Select(eventId => WebhookId.For(eventId, subscription))).ToList();

        Assert.That(ids, Is.Unique);
    }

    [Test]
    public void The_id_never_holds_a_dot()
    {
        Assert.That(WebhookId.For(7, "orders.v2 ä/x"), Is.EqualTo("msg_orders_v2___x_7"));
    }

    [Test]
    public void A_subscription_name_is_needed()
    {
        Assert.Throws<ArgumentException>(() => WebhookId.For(1, ""));
    }

    [Test]
    public void A_batch_id_names_the_subscription_its_first_event_and_its_count()
    {
        Assert.That(WebhookId.ForBatch(1042, 3, "billing-orders"), Is.EqualTo("msg_billing-orders_b1042_3"));
        Assert.That(WebhookId.ForBatch(7, 1, "orders.v2"), Is.EqualTo("msg_orders_v2_b7_1"));
    }

    [Test]
    public void Within_a_subscription_batch_ids_differ_from_single_event_ids_and_from_each_other()
    {
        long[] events = [1, 11, 12, 111, 112];
        int[] counts = [1, 2, 11, 12];

        foreach (var subscription in new[] { "a", "a_b", "a_b1" })
        {
            var ids = events.SelectMany(e => counts.Select(c => WebhookId.ForBatch(e, c, subscription)).Append(WebhookId.For(e, subscription))).ToList();

            Assert.That(ids, Is.Unique, subscription);
            Assert.That(ids, Has.None.Contains('.'), subscription);
        }
    }

    [Test]
    public void A_batch_has_at_least_one_event()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => WebhookId.ForBatch(1, 0, "a"));
    }
}
