using System.Collections.Concurrent;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// The shared <see cref="WebhookReceiver"/>, plus what the fault tests need to know about
/// requests while they are still open: every arrival (the receiver itself records a request only
/// once it has been answered) and how many requests are open at once.
/// </summary>
/// <remarks>
/// A request counts as open from its arrival until its handler is about to write the answer
/// (<see cref="WebhookReceiver.Answering"/>), in that order in one handler: the count drops
/// before the answer leaves, never after it, so the maximum never over-counts and a bound it
/// reports holds. A timer set to the answer's delay over-counted on a busy machine, when it fired
/// after the answer had gone and the client had already sent the next request.
/// </remarks>
internal sealed class TrackingReceiver : IAsyncDisposable
{
    private readonly ConcurrentQueue<ReceivedRequest> arrivals = new();
    private int open;
    private int maxOpen;

    private TrackingReceiver(WebhookReceiver inner)
    {
        Inner = inner;
        inner.Respond = OnArrival;
        inner.Answering = request =>
        {
            Interlocked.Decrement(ref open);
            Answered?.Invoke(request);
        };
    }

    public WebhookReceiver Inner { get; }

    /// <summary>What to answer; 200 at once unless set.</summary>
    public Func<ReceivedRequest, ReceiverResponse> Answer { get; set; } = _ => ReceiverResponse.Ok;

    /// <summary>Called as a request's answer is about to be written (after <see cref="Answer"/> and its delay).</summary>
    public Action<ReceivedRequest>? Answered { get; set; }

    /// <summary>Every request that arrived, answered or not, in arrival order.</summary>
    public IReadOnlyCollection<ReceivedRequest> Arrivals => arrivals;

    /// <summary>Requests open right now.</summary>
    public int Open => Volatile.Read(ref open);

    /// <summary>The most requests that were ever open at once.</summary>
    public int MaxOpen => Volatile.Read(ref maxOpen);

    public Uri Url(string path = "/hook") => Inner.Url(path);

    public static async Task<TrackingReceiver> StartAsync() => new(await WebhookReceiver.StartAsync());

    /// <summary>Distinct event ids that arrived, whatever the answer.</summary>
    public HashSet<long> ArrivedEventIds() => [.. arrivals.Where(r => r.EventId is not null).Select(r => r.EventId!.Value)];

    /// <summary>Distinct event ids answered 2xx.</summary>
    public HashSet<long> DeliveredEventIds() => [.. Inner.DeliveredEventIds()];

    /// <summary>Event ids answered 2xx more than once.</summary>
    public HashSet<long> DuplicatedEventIds() =>
        [.. Inner.Requests.Where(r => r.Succeeded && r.EventId is not null).GroupBy(r => r.EventId!.Value).Where(g => g.Count() > 1).Select(g => g.Key)];

    public Task WaitUntilAsync(Func<TrackingReceiver, bool> condition, TimeSpan timeout, string what) =>
        Inner.WaitUntilAsync(_ => condition(this), timeout, what);

    public ValueTask DisposeAsync() => Inner.DisposeAsync();

    private ReceiverResponse OnArrival(ReceivedRequest request)
    {
        arrivals.Enqueue(request);
        var now = Interlocked.Increment(ref open);
        int seen;
        while (now > (seen = Volatile.Read(ref maxOpen)) && Interlocked.CompareExchange(ref maxOpen, now, seen) != seen)
        {
            // Another arrival raised the maximum meanwhile; compare again.
        }

        try
        {
            return Answer(request);
        }
        catch
        {
            Interlocked.Decrement(ref open);
            throw;
        }
    }
}
