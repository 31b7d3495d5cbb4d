using System.Globalization;
using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Delivery;

/// <summary>
/// When to try a failed delivery again, and when to give up (SPEC "Webhook request"). Pure: no clock
/// and no randomness of its own, so the caller passes a random number and adds the delay to its clock.
/// </summary>
/// <remarks>
/// <para>
/// Backoff is exponential with full jitter: after attempt <c>n</c> failed, the wait is uniform in
/// [0, min(max_interval, initial_interval × 2^(n−1))). Full jitter spreads the retries of many
/// deliveries that failed together (a receiver that was down) instead of sending them back in waves.
/// A wait may be close to zero; the ceiling still grows, so a struggling receiver sees less load over time.
/// </para>
/// <para>
/// Outcomes, whatever the target's protocol (<see cref="TargetVerdict"/>): accepted is delivered.
/// Gone is dead at once: the target says the destination is gone for good. So is a send the
/// worker refused (a private destination while <c>worker.deny_private_networks</c> is on).
/// Everything else (failed, declined) is retried until <see cref="RetryConfig.MaxAttempts"/>
/// attempts have been made, then dead with the last outcome as the reason. A wait the target
/// asked for (<see cref="DeliveryOutcome.RetryAfter"/>) replaces the jittered wait, capped at
/// <see cref="RetryConfig.MaxInterval"/>, so a target can slow us down but not park a delivery
/// for days; it never adds attempts beyond the maximum.
/// </para>
/// </remarks>
internal sealed class RetryPolicy
{
    private readonly RetryConfig _config;

    /// <summary>A policy for <paramref name="config"/>, which <see cref="ConfigLoader"/> has checked.</summary>
    public RetryPolicy(RetryConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentOutOfRangeException.ThrowIfLessThan(config.MaxAttempts, 1, nameof(config));
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(config.InitialInterval, TimeSpan.Zero, nameof(config));
        ArgumentOutOfRangeException.ThrowIfLessThan(config.MaxInterval, config.InitialInterval, nameof(config));
        _config = config;
    }

    /// <summary>
    /// The wait after <paramref name="attemptsMade"/> attempts (at least 1) have failed:
    /// <paramref name="random01"/> × min(max_interval, initial_interval × 2^(attemptsMade−1)).
    /// </summary>
    /// <param name="attemptsMade">Attempts made so far, the failed one included.</param>
    /// <param name="random01">A uniform random number in [0, 1].</param>
    public TimeSpan Backoff(int attemptsMade, double random01)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attemptsMade, 1);
        if (!(random01 is >= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(random01), random01, "Must be in [0, 1].");
        }

        // A product of at most long.MaxValue; the guard keeps the double's rounding up from overflowing.
        var ticks = random01 * Ceiling(attemptsMade).Ticks;
        return ticks >= long.MaxValue ? TimeSpan.MaxValue : TimeSpan.FromTicks((long)ticks);
    }

    /// <summary>The upper bound of <see cref="Backoff"/> after <paramref name="attemptsMade"/> attempts.</summary>
    public TimeSpan Ceiling(int attemptsMade)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attemptsMade, 1);
        var initial = _config.InitialInterval.Ticks;
        var max = _config.MaxInterval.Ticks;
        var doublings = attemptsMade - 1;

        // initial × 2^doublings, without overflow: once it would pass max, max is the answer.
        return doublings >= 63 || initial > max >> doublings
            ? _config.MaxInterval
            : TimeSpan.FromTicks(initial << doublings);
    }

    /// <summary>
    /// What to do after attempt number <paramref name="attemptsMade"/> ended with <paramref name="outcome"/>.
    /// </summary>
    /// <param name="attemptsMade">Attempts made so far, this one included (the worker counts at claim time).</param>
    /// <param name="outcome">How this attempt ended.</param>
    /// <param name="random01">A uniform random number in [0, 1] for the jitter.</param>
    public RetryDecision Decide(int attemptsMade, DeliveryOutcome outcome, double random01)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        ArgumentOutOfRangeException.ThrowIfLessThan(attemptsMade, 1);

        switch (outcome.Verdict)
        {
            case TargetVerdict.Accepted:
                return new RetryDecision.Delivered();
            case TargetVerdict.Gone:
                return new RetryDecision.Dead($"{outcome.Describe()}: the target says the endpoint is gone, so it is not retried");
            case TargetVerdict.Refused:
                // Refused by the worker's own setting (worker.deny_private_networks): every retry would
                // be refused too while it is on, so it is dead at once, with the reason; `dead retry`
                // sends it again once the URL or the setting has changed.
                return new RetryDecision.Dead($"{outcome.Describe()}; not retried");
        }

        if (attemptsMade >= _config.MaxAttempts)
        {
            var attempts = attemptsMade == 1 ? "1 attempt" : string.Create(CultureInfo.InvariantCulture, $"{attemptsMade} attempts");
            return new RetryDecision.Dead($"gave up after {attempts}; last: {outcome.Describe()}");
        }

        if (outcome.RetryAfter is { } requested)
        {
            var delay = requested < TimeSpan.Zero ? TimeSpan.Zero : requested;
            return new RetryDecision.RetryAfter(delay > _config.MaxInterval ? _config.MaxInterval : delay);
        }

        return new RetryDecision.RetryAfter(Backoff(attemptsMade, random01));
    }
}
