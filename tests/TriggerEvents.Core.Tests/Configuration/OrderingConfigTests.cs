namespace TriggerEvents.Core.Tests.Configuration;

/// <summary><c>ordering</c> and <c>ordering_key</c> (SPEC "Configuration", "Ordering").</summary>
public class OrderingConfigTests
{
    [Test]
    public void A_subscription_is_unordered_unless_it_says_otherwise()
    {
        Assert.That(ConfigText.Parse(ConfigText.Subscription()).Subscriptions[0].Ordering, Is.Null);
        Assert.That(ConfigText.Parse(ConfigText.Subscription("    ordering: none\n")).Subscriptions[0].Ordering, Is.Null);
    }

    [Test]
    public void Ordering_by_key_defaults_to_the_primary_key()
    {
        var ordering = ConfigText.Parse(ConfigText.Subscription("    ordering: key\n")).Subscriptions[0].Ordering;

        Assert.That(ordering, Is.Not.Null);
        Assert.That(ordering!.KeyColumns, Is.Empty);
        Assert.That(ordering.Location!.Line, Is.EqualTo(6));
    }

    [Test]
    public void Ordering_key_names_the_key_columns_in_order()
    {
        var ordering = ConfigText.Parse(ConfigText.Subscription("    ordering: key\n    ordering_key: [tenant, customer_id]\n")).Subscriptions[0].Ordering;

        Assert.That(ordering!.KeyColumns, Is.EqualTo(new[] { "tenant", "customer_id" }));
    }

    [TestCase("    ordering: sorted\n", "te.yaml:6:15: subscriptions[0].ordering: 'sorted' is not none or key")]
    [TestCase("    ordering_key: [customer_id]\n", "te.yaml:6:19: subscriptions[0].ordering_key: needs 'ordering: key' beside it (without it events are delivered in any order)")]
    [TestCase("    ordering: none\n    ordering_key: [customer_id]\n", "te.yaml:7:19: subscriptions[0].ordering_key: needs 'ordering: key' beside it (without it events are delivered in any order)")]
    [TestCase("    ordering: key\n    ordering_key: []\n", "te.yaml:7:19: subscriptions[0].ordering_key: names no column; leave the key out to order by the table's primary key")]
    [TestCase("    ordering: key\n    ordering_key: [a, a]\n", "te.yaml:7:23: subscriptions[0].ordering_key: column 'a' is named twice")]
    [TestCase("    ordering: key\n    ordering_key: customer_id\n", "te.yaml:7:19: subscriptions[0].ordering_key: expected a list, found a single value")]
    [TestCase("    ordering: [key]\n", "te.yaml:6:15: subscriptions[0].ordering: expected a single value, found a list")]
    public void A_bad_ordering_is_an_error_at_its_place(string yaml, string error)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription(yaml)), Is.EqualTo(error));
    }
}
