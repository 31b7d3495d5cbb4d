namespace TriggerEvents.Worker.Signals;

/// <summary>
/// An auto-reset "look again now" signal: set by NOTIFY, by a finished request that freed a
/// slot, or by a reconnect; awaited by the claim loop with the poll interval as its timeout.
/// Several sets before one wait collapse into one wake-up, which debounces NOTIFY bursts.
/// </summary>
internal sealed class WakeSignal
{
    private readonly SemaphoreSlim semaphore = new(0, 1);

    public void Set()
    {
        try
        {
            if (semaphore.CurrentCount == 0)
            {
                semaphore.Release();
            }
        }
        catch (SemaphoreFullException)
        {
            // Another thread set it between the check and the release: it is set either way.
        }
    }

    /// <summary>Waits until set or until <paramref name="timeout"/>; true when set.</summary>
    public Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken) =>
        semaphore.WaitAsync(timeout, cancellationToken);
}
