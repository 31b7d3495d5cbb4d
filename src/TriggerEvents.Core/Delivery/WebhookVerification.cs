namespace TriggerEvents.Core.Delivery;

/// <summary>What <see cref="WebhookSigner.Verify"/> found, so a receiver can say why it refused a request.</summary>
internal enum WebhookVerification
{
    /// <summary>One of the signatures matches one of the secrets, and the timestamp is recent.</summary>
    Valid,

    /// <summary><c>webhook-id</c>, <c>webhook-timestamp</c> or <c>webhook-signature</c> is missing or empty.</summary>
    MissingHeader,

    /// <summary><c>webhook-timestamp</c> is not a number of Unix seconds.</summary>
    InvalidTimestamp,

    /// <summary>The timestamp is further from now than the tolerance: an old request replayed, or a clock far off.</summary>
    TimestampOutsideTolerance,

    /// <summary>No <c>v1</c> signature in the header matches any of the secrets.</summary>
    NoMatchingSignature,
}
