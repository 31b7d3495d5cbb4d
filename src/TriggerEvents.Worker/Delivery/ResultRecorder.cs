using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using TriggerEvents.Postgres;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// Writes the results of attempts: posted by the attempts as they end, written by one loop in
/// batches, only where this worker's lease still holds (<see cref="DeliveryStore.RecordSql"/>).
/// A write lets the deliveries go (<see cref="HeldDeliveries.Unhold(DeliveryResult)"/>): the slots it frees wake the claim loop.
/// </summary>
internal sealed class ResultRecorder(
    DeliveryStore store, Guid owner, HeldDeliveries held, TargetProtection protection,
    int gatherBelow, TimeProvider time, ILogger logger, Action? onRefusal = null)
{
    private const int MaxResultsPerWrite = 1000;

    /// <summary>
    /// How long results that may wait (<see cref="DeliveryResult.MayWait"/>: a key's run going on
    /// behind them) wait for the run's later ones, at most, and how many wait together: a busy
    /// key's run then takes a write or two instead of one every few requests.
    /// </summary>
    private static readonly TimeSpan RunResultsWait = TimeSpan.FromMilliseconds(50);

    private const int RunResultsTogether = 100;
    private const int ShutdownRecordAttempts = 5;

    private readonly Channel<DeliveryResult> results = Channel.CreateUnbounded<DeliveryResult>(new UnboundedChannelOptions { SingleReader = true });

    // When the results that may wait (WaitForRunAsync) began to.
    private long? waitingSince;

    // Complete was called: the worker is stopping. The channel's own completion waits until it
    // is empty too, which more results than one write can hold never reach while writes fail.
    private volatile bool stopping;

    /// <summary>
    /// Set when a write met what only an operator can mend (<see cref="DatabaseProblems.NeedsOperator"/>):
    /// the worker stops on it. The writes go on being tried until then.
    /// </summary>
    public ExceptionDispatchInfo? Refusal { get; private set; }

    /// <summary>Hands one result to the writer.</summary>
    public void Post(DeliveryResult result) => results.Writer.TryWrite(result);

    /// <summary>No more results come: <see cref="RunAsync"/> writes what it has and ends.</summary>
    public void Complete()
    {
        stopping = true;
        results.Writer.Complete();
    }

    /// <summary>
    /// Writes results in batches until <see cref="Complete"/>; on a database error keeps the batch
    /// and tries again. While results are few it waits a moment after the last write's start
    /// (<see cref="ClaimRound.GatherWait"/>), so a write serves more than a handful of rows.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var batch = new List<DeliveryResult>(MaxResultsPerWrite);
        var failures = 0;
        var split = false;
        var lastWriteStarted = 0L;
        // A batch kept from a failed write is retried without waiting for a new result: when every
        // slot is taken by deliveries whose results failed, no new result ever comes.
        while (batch.Count > 0 || await results.Reader.WaitToReadAsync(cancellationToken))
        {
            Gather(batch);
            if (await WaitForRunAsync(batch, cancellationToken))
            {
                continue;
            }

            var gatherLeft = ClaimRound.GatherWait - time.GetElapsedTime(lastWriteStarted);
            if (batch.Count < gatherBelow && !results.Reader.Completion.IsCompleted && gatherLeft > TimeSpan.Zero)
            {
                // A few results soon after the last write: give the requests still running a
                // moment to add theirs.
                await Task.Delay(gatherLeft, time, CancellationToken.None);
                Gather(batch);
            }

            lastWriteStarted = time.GetTimestamp();
            try
            {
                if (split)
                {
                    await WriteOneByOneAsync(batch, writtenBefore: failures > 0, cancellationToken);
                    split = false;
                }
                else
                {
                    await WriteAsync(batch, writtenBefore: failures > 0, cancellationToken);
                }

                failures = 0;
            }
            catch (PostgresException e) when (IsPermanent(e) && !split)
            {
                // The server refused the batch itself, not the connection: something in one
                // result cannot be written. Write them one by one next, so one bad result cannot
                // hold back the rest for ever.
                logger.LogWarning("Recording {Count} results was refused ({Error}); recording them one by one", batch.Count, e.MessageText);
                split = true;
            }
            catch (Exception e)
            {
                failures++;
                if (Refusal is null && e is PostgresException refused && DatabaseProblems.NeedsOperator(refused))
                {
                    Refusal = ExceptionDispatchInfo.Capture(e);
                    onRefusal?.Invoke();
                }

                if (stopping && failures > ShutdownRecordAttempts)
                {
                    // Stopping and the database stays away: these leases expire and the
                    // deliveries are attempted again by whichever worker claims them next.
                    // Counted by reading them: a single reader's channel cannot say how many it holds.
                    var left = batch.Count;
                    while (results.Reader.TryRead(out _))
                    {
                        left++;
                    }

                    logger.LogError("Giving up recording {Count} results while stopping: {Error}", left, e.Message);
                    return;
                }

                var delay = ReconnectBackoff.Delay(failures);
                logger.LogWarning("Recording {Count} results failed, retrying in {Delay}: {Error}", batch.Count, delay, e.Message);
                await Task.Delay(delay, time, cancellationToken);
            }

            if (results.Reader.Completion.IsCompleted && batch.Count == 0)
            {
                break;
            }
        }
    }

    /// <summary>
    /// True after waiting for another result, when every result gathered may wait
    /// (<see cref="DeliveryResult.MayWait"/>) and they have waited less than
    /// <see cref="RunResultsWait"/>, fewer than <see cref="RunResultsTogether"/> of them; false
    /// when they are to be written now.
    /// </summary>
    private async Task<bool> WaitForRunAsync(List<DeliveryResult> batch, CancellationToken cancellationToken)
    {
        if (batch.Count == 0 || batch.Count >= RunResultsTogether || results.Reader.Completion.IsCompleted || !batch.TrueForAll(r => r.MayWait))
        {
            waitingSince = null;
            return false;
        }

        waitingSince ??= time.GetTimestamp();
        var left = RunResultsWait - time.GetElapsedTime(waitingSince.Value);
        if (left <= TimeSpan.Zero)
        {
            waitingSince = null;
            return false;
        }

        using var timeout = new CancellationTokenSource(left, time);
        using var either = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            await results.Reader.WaitToReadAsync(either.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // Waited long enough: the next pass writes them.
        }

        return true;
    }

    /// <summary>Writes every result posted so far, at once: a round driven on its own (<see cref="DeliveryWorker.RunRoundAsync"/>).</summary>
    public async Task WritePostedAsync(CancellationToken cancellationToken)
    {
        var batch = new List<DeliveryResult>();
        Gather(batch);
        if (batch.Count > 0)
        {
            await WriteAsync(batch, writtenBefore: false, cancellationToken);
        }
    }

    private void Gather(List<DeliveryResult> batch)
    {
        while (batch.Count < MaxResultsPerWrite && results.Reader.TryRead(out var result))
        {
            batch.Add(result);
        }
    }

    /// <summary>One write of <paramref name="batch"/>, which it empties; the breakers it opened go to <see cref="TargetProtection"/>.</summary>
    private async Task WriteAsync(List<DeliveryResult> batch, bool writtenBefore, CancellationToken cancellationToken)
    {
        var opened = new List<CircuitOpened>();
        var applied = await store.RecordAsync(owner, batch, writtenBefore, opened, cancellationToken);
        protection.Opened(opened);
        if (applied < batch.Count)
        {
            logger.LogWarning("{Lost} results were not recorded: their lease had expired and another worker took them over", batch.Count - applied);
        }

        foreach (var result in batch)
        {
            held.Unhold(result);
        }

        batch.Clear();
    }

    /// <summary>
    /// Records results one at a time, removing each from <paramref name="batch"/> once handled. A
    /// result the server refuses is given up: its lease expires and the delivery is attempted
    /// again, instead of staying in flight for ever. A lost connection propagates, keeping the rest.
    /// </summary>
    private async Task WriteOneByOneAsync(List<DeliveryResult> batch, bool writtenBefore, CancellationToken cancellationToken)
    {
        while (batch.Count > 0)
        {
            var result = batch[^1];
            try
            {
                var opened = new List<CircuitOpened>();
                await store.RecordAsync(owner, [result], writtenBefore, opened, cancellationToken);
                protection.Opened(opened);
            }
            catch (PostgresException e) when (IsPermanent(e))
            {
                logger.LogError(
                    "Could not record the result of event {EventId} attempt {Attempt}; its lease will expire and it will be attempted again: {Error}",
                    result.Key.EventId, result.Attempt, e.MessageText);
            }

            held.Unhold(result);
            batch.RemoveAt(batch.Count - 1);
        }
    }

    /// <summary>Errors that writing the same data again would meet again (data, integrity, limits).</summary>
    private static bool IsPermanent(PostgresException e) =>
        e.SqlState.StartsWith("22", StringComparison.Ordinal) || e.SqlState.StartsWith("23", StringComparison.Ordinal) ||
        e.SqlState.StartsWith("54", StringComparison.Ordinal);
}
