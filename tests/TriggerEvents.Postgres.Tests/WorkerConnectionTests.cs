using Npgsql;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Postgres.Tests;

/// <summary>The worker's connection settings on top of the operator's URL.</summary>
public sealed class WorkerConnectionTests
{
    [Test]
    public void The_worker_prepares_its_statements_and_skips_the_pool_reset_by_default()
    {
        const string given = "Host=db;Username=app";
        var builder = new NpgsqlConnectionStringBuilder(given);

        WorkerConnection.Tune(builder, given);

        Assert.That(builder.MaxAutoPrepare, Is.EqualTo(WorkerConnection.MaxAutoPrepare));
        Assert.That(builder.NoResetOnClose, Is.True);
    }

    [TestCase("Host=db;Max Auto Prepare=0;No Reset On Close=false")]
    [TestCase("Host=db;MaxAutoPrepare=0;NoResetOnClose=false")]
    [TestCase("host=db;max auto prepare=0;no reset on close=false")]
    public void What_the_operator_sets_wins(string given)
    {
        var builder = new NpgsqlConnectionStringBuilder(given);

        WorkerConnection.Tune(builder, given);

        Assert.That(builder.MaxAutoPrepare, Is.Zero);
        Assert.That(builder.NoResetOnClose, Is.False);
    }
}
