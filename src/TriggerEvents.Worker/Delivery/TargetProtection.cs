using Microsoft.Extensions.Logging;
using TriggerEvents.Core.Configuration;
using TriggerEvents.Core.Delivery;
using TriggerEvents.Postgres.Delivery;

namespace TriggerEvents.Worker.Delivery;

/// <summary>
/// The worker's side of SPEC "Protecting targets": the rate limit, the circuit breaker and the
/// Retry-After hold live on each subscription's row, shared by every replica (migration 000007);
/// here the worker tells them each attempt's outcome, skips the claims of a subscription that
/// cannot take anything until a known time (so the claim loop sleeps instead of claiming nothing
/// in a loop), and counts <c>rate_limited_total</c> and <c>circuit_opens_total</c>.
/// </summary>
internal sealed class TargetProtection
{
    private readonly Dictionary<int, ActiveSubscription> byId;
    private readonly Dictionary<int, long> notBefore = [];
    private readonly TimeProvider time;
    private readonly WorkerMetrics metrics;
    private readonly ILogger logger;

    public TargetProtection(IReadOnlyList<ActiveSubscription> subscriptions, TimeProvider time, WorkerMetrics metrics, ILogger logger)
    {
        byId = subscriptions.ToDictionary(s => s.Id);
        this.time = time;
        this.metrics = metrics;
        this.logger = logger;
    }

    /// <summary>The subscriptions with a rate limit or a circuit breaker.</summary>
    public static HashSet<int> ProtectedIds(IEnumerable<ActiveSubscription> subscriptions) =>
        [.. subscriptions.Where(s => s.Config.RateLimit is not null || s.Config.CircuitBreaker is not null).Select(s => s.Id)];

    /// <summary>
    /// What an attempt tells its subscription's row: a breaker signal when it has a breaker, and
    /// a hold when the target asked for a wait that applies to all of it (for a webhook, a 429 or
    /// 503 with <c>Retry-After</c>), capped at <c>max_interval</c> as the delivery's own wait is.
    /// </summary>
    public static TargetSignal? Signal(SubscriptionConfig subscription, DeliveryOutcome outcome)
    {
        // A send the worker refused (deny_private_networks) says nothing about the target.
        BreakerSignal? breaker = subscription.CircuitBreaker is null ? null : outcome.Verdict switch
        {
            TargetVerdict.Accepted => BreakerSignal.Success,
            TargetVerdict.Failed => BreakerSignal.Failure,
            TargetVerdict.Refused => null,
            _ => BreakerSignal.Other,
        };
        TimeSpan? hold = null;
        if (outcome is { HoldsTarget: true, RetryAfter: { } requested } && requested > TimeSpan.Zero)
        {
            var max = subscription.Retry.MaxInterval;
            hold = requested > max ? max : requested;
        }

        return breaker is null && hold is null ? null : new TargetSignal(breaker, hold);
    }

    /// <summary>False while <paramref name="subscriptionId"/>'s last claim said nothing can be taken yet.</summary>
    public bool MayClaim(int subscriptionId) =>
        !notBefore.TryGetValue(subscriptionId, out var at) || time.GetTimestamp() >= at;

    /// <summary>Takes in what a protected subscription's claim read back.</summary>
    public void Claimed(ActiveSubscription subscription, TargetProtectionState? state)
    {
        if (state is null)
        {
            return;
        }

        if (state.RateLimited)
        {
            metrics.RateLimited.WithLabels(subscription.Name).Inc();
        }

        if (state.WaitFor is { } wait)
        {
            notBefore[subscription.Id] = time.GetTimestamp() + (long)(wait.TotalSeconds * time.TimestampFrequency);
        }
        else
        {
            notBefore.Remove(subscription.Id);
        }
    }

    /// <summary>How long the idle claim loop may sleep: at most <paramref name="poll"/>, less when a held-back subscription can take work sooner.</summary>
    public TimeSpan IdleWait(TimeSpan poll)
    {
        var wait = poll;
        var now = time.GetTimestamp();
        foreach (var at in notBefore.Values)
        {
            var left = TimeSpan.FromSeconds(Math.Max(0, at - now) / (double)time.TimestampFrequency);
            // A time already past wakes nothing early: that subscription is claimed in the next
            // round anyway, and waiting zero for it while every slot is taken would spin.
            if (at > now && left < wait)
            {
                wait = left;
            }
        }

        return wait;
    }

    /// <summary>Counts and logs the circuits a result write opened.</summary>
    public void Opened(IEnumerable<CircuitOpened> opened)
    {
        foreach (var open in opened)
        {
            if (!byId.TryGetValue(open.SubscriptionId, out var subscription))
            {
                continue;
            }

            metrics.CircuitOpens.WithLabels(subscription.Name).Inc();
            var breaker = subscription.Config.CircuitBreaker!;
            if (open.Paused)
            {
                logger.LogError(
                    "Circuit of {Subscription} opened {Opens} times in a row without a success: the subscription is paused until 'triggerevents subscriptions resume'",
                    subscription.Name, open.OpensInARow);
            }
            else
            {
                logger.LogWarning(
                    "Circuit of {Subscription} opened ({Opens} in a row): nothing is sent for {OpenFor}, then one probe request",
                    subscription.Name, open.OpensInARow, Duration.Format(breaker.OpenFor));
            }
        }
    }
}
