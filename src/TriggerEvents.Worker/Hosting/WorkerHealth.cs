namespace TriggerEvents.Worker.Hosting;

/// <summary>What <c>/healthz</c> and <c>/readyz</c> report about the running worker.</summary>
internal sealed class WorkerHealth(TimeProvider time)
{
    private Func<DateTimeOffset>? lastLoopAt;

    /// <summary>Set once subscriptions are registered and the loops have started.</summary>
    public bool Started { get; private set; }

    /// <summary>
    /// Set while start-up waits for the database or for its schema: the process is doing what it
    /// should (alive), but delivers nothing yet (not ready), so a probe does not restart it.
    /// </summary>
    public bool Waiting { get; set; }

    /// <summary>The longest the claim loop may go without a round and still count as alive.</summary>
    public TimeSpan StallAfter { get; set; } = TimeSpan.FromSeconds(30);

    public void MarkStarted(Func<DateTimeOffset> loopClock)
    {
        lastLoopAt = loopClock;
        Started = true;
        Waiting = false;
    }

    /// <summary>Start-up is waiting, or the claim loop went round recently (it does even while the database is away).</summary>
    public bool IsAlive => (Waiting && !Started) || (Started && lastLoopAt is not null && time.GetUtcNow() - lastLoopAt() < StallAfter);
}
