using System.Text.Json;
using System.Text.Json.Serialization;
using TriggerEvents.Cli.Commands;
using TriggerEvents.Postgres.Operations;

namespace TriggerEvents.Cli;

/// <summary>
/// JSON output settings shared by every --json. Generated at build time: the published
/// executable is compiled ahead of time and has no reflection-based serializer.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true)]
[JsonSerializable(typeof(IReadOnlyList<DeadLetter>))]
[JsonSerializable(typeof(IReadOnlyList<AttachedTrigger>))]
[JsonSerializable(typeof(IReadOnlyList<SubscriptionStatus>))]
[JsonSerializable(typeof(IReadOnlyList<Commands.SubscriptionSummary>))]
[JsonSerializable(typeof(BackfillSummary))]
internal sealed partial class JsonOutput : JsonSerializerContext;
