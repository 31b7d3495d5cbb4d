using System.Collections.Immutable;
using System.Globalization;
using System.Text.RegularExpressions;
using TriggerEvents.Core.Delivery;

namespace TriggerEvents.Core.Configuration;

/// <summary>
/// Reads and checks the YAML configuration (SPEC "Configuration"). Every problem in the file is
/// reported, each with its line and column, in one <see cref="ConfigException"/>.
/// </summary>
/// <remarks>
/// The checks are strict on purpose: a key that is not known is an error rather than ignored, since a
/// misspelt <c>max_attempts</c> silently falling back to its default is worse than a failed start.
/// A key whose value is empty or <c>null</c> counts as absent (so <c>${TIMEOUT:-}</c> means "the
/// default"), except that a required key must have a value.
/// </remarks>
internal static partial class ConfigLoader
{
    /// <summary>The file name used when none is given.</summary>
    public const string DefaultFileName = "triggerevents.yaml";

    private static readonly string[] RootKeys = ["subscriptions", "worker", "retention"];
    private static readonly string[] SubscriptionKeys = ["name", "trigger", "operations", "start_from", "webhook", "retry", "max_in_flight", "max_event_bytes", "ordering", "ordering_key", "batch", "rate_limit", "circuit_breaker"];
    private static readonly string[] WebhookKeys = ["url", "headers", "timeout", "signing_secret"];
    private static readonly string[] RetryKeys = ["max_attempts", "initial_interval", "max_interval"];
    private static readonly string[] WorkerKeys = ["group", "batch_size", "poll_interval", "lease", "http_port", "console_port", "shutdown_timeout", "concurrency", "metrics_interval", "summary_interval", "deny_private_networks", "body_memory"];
    private static readonly string[] RetentionKeys = ["delivered_events", "attempts", "cleanup_interval"];

    // Headers the engine writes itself (SPEC "Webhook request") or that frame the HTTP message; a
    // configured copy would be sent twice or break the request.
    private static readonly ImmutableHashSet<string> ReservedHeaders = ImmutableHashSet.Create(
        StringComparer.OrdinalIgnoreCase,
        "Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Host", "Connection",
        "User-Agent", "traceparent", "webhook-id", "webhook-timestamp", "webhook-signature");

    private static readonly TimeSpan MoreThanZero = TimeSpan.FromTicks(1);

    /// <summary>Reads the file at <paramref name="path"/>; see <see cref="Parse"/>.</summary>
    /// <exception cref="ConfigException">The file cannot be read or is not a valid configuration.</exception>
    public static TriggerEventsConfig Load(string path, Func<string, string?> environment)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (Directory.Exists(path))
        {
            // Reading a directory fails as "access denied", which would send the user the wrong way.
            throw new ConfigException([new ConfigError(path, 0, 0, "cannot read the configuration: it is a directory")]);
        }

        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ArgumentException)
        {
            var reason = e switch
            {
                FileNotFoundException => "no such file",
                DirectoryNotFoundException => "no such directory",
                UnauthorizedAccessException => "permission denied",
                _ => e.Message,
            };
            throw new ConfigException([new ConfigError(path, 0, 0, $"cannot read the configuration: {reason}")]);
        }

        return Parse(text, path, environment);
    }

    /// <summary>
    /// Parses and checks <paramref name="yamlText"/>. <paramref name="sourceName"/> names the file in
    /// errors; <paramref name="environment"/> resolves <c>${VAR}</c> (usually
    /// <see cref="Environment.GetEnvironmentVariable(string)"/>).
    /// </summary>
    /// <exception cref="ConfigException">Anything is wrong; it lists every problem found.</exception>
    public static TriggerEventsConfig Parse(string yamlText, string sourceName, Func<string, string?> environment)
    {
        ArgumentNullException.ThrowIfNull(yamlText);
        ArgumentNullException.ThrowIfNull(sourceName);
        ArgumentNullException.ThrowIfNull(environment);

        var errors = new List<ConfigError>();
        var root = YamlTree.Load(yamlText, sourceName, environment, errors);
        if (errors.Count == 0 && root is null or YamlTree.Scalar { IsNull: true })
        {
            errors.Add(new ConfigError(sourceName, 1, 1, "the file is empty: expected a map with a 'subscriptions' list"));
        }

        // A well-formed tree is read even when substitution failed somewhere (those scalars are
        // marked HasError and not reported twice), so one run lists every problem in the file.
        TriggerEventsConfig? config = null;
        if (root is not null)
        {
            config = Read(root, sourceName, new NodeReader(errors));
        }

        if (errors.Count > 0 || config is null)
        {
            // Sorted by place, as a reader of the file meets them; the sort is stable so that several
            // errors at one place keep the order in which they were found.
            throw new ConfigException([.. errors.OrderBy(e => e.Line).ThenBy(e => e.Column)]);
        }

        return config;
    }

    private static TriggerEventsConfig? Read(YamlTree.Node root, string sourceName, NodeReader reader)
    {
        if (reader.Mapping(root, "", RootKeys) is not { } top)
        {
            return null;
        }

        var (worker, workerLocations) = ReadWorker(reader, top);
        var retention = ReadRetention(reader, top);

        var subscriptions = new List<SubscriptionConfig>();
        var items = reader.Sequence(top["subscriptions"], "subscriptions");
        if (items is null && top["subscriptions"] is null or YamlTree.Scalar { IsNull: true, HasError: false })
        {
            reader.Error(top.Location, "", "missing required key 'subscriptions' (a list; write 'subscriptions: []' for none)");
        }

        var names = new Dictionary<string, ConfigLocation>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < (items?.Count ?? 0); i++)
        {
            var path = string.Create(CultureInfo.InvariantCulture, $"subscriptions[{i}]");
            if (ReadSubscription(reader, items![i], path, worker, workerLocations) is not { } subscription)
            {
                continue;
            }

            if (names.TryGetValue(subscription.Name, out var first))
            {
                reader.Error(subscription.Location!, path + ".name", $"subscription name '{subscription.Name}' is already used at line {first.Line} (names are compared ignoring case)");
                continue;
            }

            names.Add(subscription.Name, subscription.Location!);
            subscriptions.Add(subscription);
        }

        return new TriggerEventsConfig
        {
            Subscriptions = subscriptions,
            Worker = worker,
            Retention = retention,
            SourcePath = sourceName,
        };
    }

    private static SubscriptionConfig? ReadSubscription(NodeReader reader, YamlTree.Node node, string path, WorkerConfig worker, WorkerLocations workerLocations)
    {
        var map = reader.Mapping(node, path, SubscriptionKeys);
        if (map is null)
        {
            if (node is YamlTree.Scalar { IsNull: true, HasError: false })
            {
                reader.Error(node.Location, path, "expected a map, found nothing");
            }

            return null;
        }

        var name = map.RequiredScalar("name");
        if (name is not null)
        {
            CheckIdentifier(reader, name, map.PathOf("name"), "a subscription name");
        }

        var trigger = map.RequiredScalar("trigger");
        if (trigger is not null)
        {
            CheckIdentifier(reader, trigger, map.PathOf("trigger"), "a trigger name");
        }

        var operations = ReadOperations(reader, map["operations"], map.PathOf("operations"));
        var startFrom = ReadStartFrom(reader, map["start_from"], map.PathOf("start_from"));
        var webhook = ReadWebhook(reader, map, worker, workerLocations);
        var retry = ReadRetry(reader, map["retry"], map.PathOf("retry"));
        var maxInFlight = reader.Int(map["max_in_flight"], map.PathOf("max_in_flight"), SubscriptionConfig.DefaultMaxInFlight, min: 1);
        var rateLimit = ReadRateLimit(reader, map["rate_limit"], map.PathOf("rate_limit"));
        var circuitBreaker = ReadCircuitBreaker(reader, map["circuit_breaker"], map.PathOf("circuit_breaker"));
        var maxEventBytesNode = map["max_event_bytes"];
        var maxEventBytes = reader.Size(
            maxEventBytesNode, map.PathOf("max_event_bytes"), SubscriptionConfig.DefaultMaxEventBytes,
            SubscriptionConfig.MinMaxEventBytes, SubscriptionConfig.MaxMaxEventBytes);
        if (maxEventBytes > worker.BodyMemory)
        {
            // An event that may be this large would wait for room in body_memory for ever.
            var explicitMax = maxEventBytesNode is YamlTree.Scalar { IsNull: false };
            var at = explicitMax ? maxEventBytesNode!.Location : workerLocations.BodyMemory ?? map.Location;
            reader.Error(at, map.PathOf("max_event_bytes"), $"{ByteSize.Format(maxEventBytes)}{(explicitMax ? "" : " (the default)")} must be at most worker.body_memory ({ByteSize.Format(worker.BodyMemory)}), or an event that large could never be sent");
        }

        var ordering = ReadOrdering(reader, map);
        var batch = ReadBatch(reader, map["batch"], map.PathOf("batch"));
        if (name is null || trigger is null || webhook is null)
        {
            return null;
        }

        return new SubscriptionConfig
        {
            Name = name.Value,
            Trigger = trigger.Value,
            Operations = operations,
            StartFrom = startFrom,
            Webhook = webhook,
            Retry = retry,
            MaxInFlight = maxInFlight,
            MaxEventBytes = maxEventBytes,
            Ordering = ordering,
            Batch = batch,
            RateLimit = rateLimit,
            CircuitBreaker = circuitBreaker,
            Location = map.Location,
            TriggerLocation = trigger.Location,
        };
    }

    private static void CheckIdentifier(NodeReader reader, YamlTree.Scalar value, string path, string what)
    {
        if (!IdentifierPattern().IsMatch(value.Value))
        {
            reader.Error(value.Location, path, $"'{value.Value}' is not {what}: use only letters, digits, '-' and '_'");
        }
        else if (value.Value.Length > SubscriptionConfig.MaxNameLength)
        {
            reader.Error(value.Location, path, string.Create(CultureInfo.InvariantCulture, $"{what} may be at most {SubscriptionConfig.MaxNameLength} characters long, this one has {value.Value.Length}"));
        }
    }

    private static IReadOnlySet<string> ReadOperations(NodeReader reader, YamlTree.Node? node, string path)
    {
        if (reader.Sequence(node, path) is not { } items)
        {
            return EventOperations.All;
        }

        var operations = ImmutableSortedSet.CreateBuilder<string>(StringComparer.Ordinal);
        var valid = true;
        foreach (var item in items)
        {
            if (reader.Scalar(item, path) is not { } scalar)
            {
                valid &= item is YamlTree.Scalar { HasError: true };
                if (item is YamlTree.Scalar { IsNull: true, HasError: false })
                {
                    reader.Error(item.Location, path, "an empty item is no operation");
                }

                continue;
            }

            if (EventOperations.Normalize(scalar.Value) is { } operation)
            {
                operations.Add(operation);
            }
            else
            {
                reader.Error(scalar.Location, path, $"'{scalar.Value}' is not an operation: use INSERT, UPDATE, DELETE, MANUAL or READ");
                valid = false;
            }
        }

        if (items.Count == 0)
        {
            reader.Error(node!.Location, path, "lists no operation, so nothing would be delivered; leave the key out to receive all");
        }

        return valid && operations.Count > 0 ? operations.ToImmutable() : EventOperations.All;
    }

    private static StartFrom ReadStartFrom(NodeReader reader, YamlTree.Node? node, string path)
    {
        if (reader.Scalar(node, path) is not { } scalar)
        {
            return new StartFrom.Now();
        }

        if (string.Equals(scalar.Value, "now", StringComparison.OrdinalIgnoreCase))
        {
            return new StartFrom.Now();
        }

        if (string.Equals(scalar.Value, "earliest", StringComparison.OrdinalIgnoreCase))
        {
            return new StartFrom.Earliest();
        }

        // An ISO 8601 date (midnight UTC) or date and time with its offset: a time without a zone would
        // mean different instants on machines in different zones.
        if (IsoTimePattern().IsMatch(scalar.Value)
            && DateTimeOffset.TryParse(scalar.Value, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out var time))
        {
            return new StartFrom.At(time);
        }

        reader.Error(scalar.Location, path, $"'{scalar.Value}' is not now, earliest or an ISO 8601 time with a zone, such as 2026-01-31T09:00:00Z");
        return new StartFrom.Now();
    }

    private static WebhookConfig? ReadWebhook(NodeReader reader, NodeReader.MappingReader subscription, WorkerConfig worker, WorkerLocations workerLocations)
    {
        var node = subscription["webhook"];
        var map = reader.Mapping(node, subscription.PathOf("webhook"), WebhookKeys);
        if (map is null)
        {
            if (node is null or YamlTree.Scalar { IsNull: true, HasError: false })
            {
                reader.Error(node?.Location ?? subscription.Location, subscription.Path, "missing required key 'webhook'");
            }

            return null;
        }

        var url = ReadUrl(reader, map);
        var headers = ReadHeaders(reader, map["headers"], map.PathOf("headers"));
        var timeoutNode = map["timeout"];
        var timeout = reader.Duration(timeoutNode, map.PathOf("timeout"), WebhookConfig.DefaultTimeout, MoreThanZero);
        var secrets = ReadSigningSecrets(reader, map["signing_secret"], map.PathOf("signing_secret"));

        // The error goes where the timeout is written, else where the bound it breaks is.
        var explicitTimeout = timeoutNode is YamlTree.Scalar { IsNull: false };
        if (timeout >= worker.Lease)
        {
            // A request still running when its lease expires is claimed and sent again by another worker.
            var at = explicitTimeout ? timeoutNode!.Location : workerLocations.Lease ?? map.Location;
            reader.Error(at, map.PathOf("timeout"), $"{Duration.Format(timeout)} must be shorter than worker.lease ({Duration.Format(worker.Lease)}), or a request still running when its lease expires is delivered twice");
        }

        if (timeout >= worker.ShutdownTimeout)
        {
            // SIGTERM waits shutdown_timeout for requests in flight, then releases them: a request the
            // receiver got but had not yet answered would be sent again by another worker.
            var at = explicitTimeout ? timeoutNode!.Location : workerLocations.ShutdownTimeout ?? map.Location;
            reader.Error(at, map.PathOf("timeout"), $"{Duration.Format(timeout)} must be shorter than worker.shutdown_timeout ({Duration.Format(worker.ShutdownTimeout)}), or a request still running at SIGTERM is released and delivered twice");
        }

        return url is null
            ? null
            : new WebhookConfig { Url = url, Headers = headers, Timeout = timeout, SigningSecrets = secrets };
    }

    private static Uri? ReadUrl(NodeReader reader, NodeReader.MappingReader webhook)
    {
        if (webhook.RequiredScalar("url") is not { } scalar)
        {
            return null;
        }

        // The URL is never quoted back: it may carry a token in its path or query.
        var path = webhook.PathOf("url");
        if (!Uri.TryCreate(scalar.Value, UriKind.Absolute, out var url) || url.IsFile || url.IsUnc || string.IsNullOrEmpty(url.Host))
        {
            reader.Error(scalar.Location, path, "is not an absolute http:// or https:// URL");
            return null;
        }

        if (url.Scheme != Uri.UriSchemeHttp && url.Scheme != Uri.UriSchemeHttps)
        {
            reader.Error(scalar.Location, path, $"scheme '{url.Scheme}' is not supported: use http or https");
            return null;
        }

        if (url.UserInfo.Length > 0)
        {
            reader.Error(scalar.Location, path, "holds a user name or password, which would not be sent: put credentials in an Authorization header");
            return null;
        }

        if (url.Fragment.Length > 0)
        {
            reader.Error(scalar.Location, path, "has a '#' fragment, which is never sent: remove it");
            return null;
        }

        return url;
    }

    private static Dictionary<string, string> ReadHeaders(NodeReader reader, YamlTree.Node? node, string path)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        if (reader.AnyMapping(node, path) is not { } map)
        {
            return headers;
        }

        foreach (var (key, value) in map.Entries)
        {
            // Messages here name the header, never its value.
            var name = key.Value;
            var headerPath = $"{path}.{name}";
            if (!HeaderNamePattern().IsMatch(name))
            {
                reader.Error(key.Location, path, $"'{name}' is not a valid HTTP header name");
                continue;
            }

            if (ReservedHeaders.Contains(name))
            {
                reader.Error(key.Location, path, $"'{name}' is set by TriggerEvents itself and cannot be configured");
                continue;
            }

            if (headers.ContainsKey(name))
            {
                reader.Error(key.Location, path, $"header '{name}' is given twice (header names ignore case)");
                continue;
            }

            if (value is YamlTree.Scalar { HasError: true })
            {
                continue;
            }

            if (value is YamlTree.Scalar { IsNull: true } or YamlTree.Scalar { Value.Length: 0 })
            {
                reader.Error(value.Location, headerPath, "has no value");
                continue;
            }

            if (reader.Scalar(value, headerPath) is not { } scalar)
            {
                continue;
            }

            if (!IsHeaderValue(scalar.Value))
            {
                reader.Error(scalar.Location, headerPath, "the value may hold only printable ASCII characters, no line breaks");
                continue;
            }

            headers.Add(name, scalar.Value);
        }

        return headers;
    }

    private static bool IsHeaderValue(string value)
    {
        foreach (var c in value)
        {
            if (c is not ('\t' or (>= ' ' and <= '~')))
            {
                return false;
            }
        }

        return true;
    }

    private static IReadOnlyList<string> ReadSigningSecrets(NodeReader reader, YamlTree.Node? node, string path)
    {
        if (node is YamlTree.Sequence)
        {
            reader.Error(node.Location, path, "write several secrets as one value, separated by spaces");
            return [];
        }

        if (node is null or YamlTree.Scalar { HasError: true })
        {
            // Absent: requests are not signed. A failed substitution was reported already.
            return [];
        }

        // A key that is there but empty is most often a variable set to "" by a deployment that
        // lost its secret: sending unsigned requests then would go unnoticed. Unsigned on purpose
        // is said with 'none' (which a variable can carry too) or by leaving the key out.
        var scalar = reader.Scalar(node, path);
        if (scalar is null && node is not YamlTree.Scalar)
        {
            return [];
        }

        if (scalar is null || string.IsNullOrWhiteSpace(scalar.Value))
        {
            reader.Error(node.Location, path, $"is empty: give a '{SigningSecret.Prefix}...' secret, or write '{SigningSecret.Unsigned}' to send unsigned requests");
            return [];
        }

        if (scalar.Value.Trim() == SigningSecret.Unsigned)
        {
            return [];
        }

        // Messages here count the secrets, never quote them.
        var secrets = SigningSecret.Split(scalar.Value);
        for (var i = 0; i < secrets.Count; i++)
        {
            var which = secrets.Count == 1 ? "the secret" : string.Create(CultureInfo.InvariantCulture, $"secret {i + 1} of {secrets.Count}");
            if (!secrets[i].StartsWith(SigningSecret.Prefix, StringComparison.Ordinal))
            {
                reader.Error(scalar.Location, path, $"{which} does not start with '{SigningSecret.Prefix}'");
            }
            else if (!SigningSecret.TryDecode(secrets[i], out _))
            {
                reader.Error(scalar.Location, path, $"{which} is not valid base64 after '{SigningSecret.Prefix}'");
            }
        }

        return secrets;
    }

    private static RetryConfig ReadRetry(NodeReader reader, YamlTree.Node? node, string path)
    {
        if (reader.Mapping(node, path, RetryKeys) is not { } map)
        {
            return new RetryConfig();
        }

        var maxAttempts = reader.Int(map["max_attempts"], map.PathOf("max_attempts"), RetryConfig.DefaultMaxAttempts, min: 1);
        var initialNode = map["initial_interval"];
        var maxNode = map["max_interval"];
        var initial = reader.Duration(initialNode, map.PathOf("initial_interval"), RetryConfig.DefaultInitialInterval, MoreThanZero);
        var max = reader.Duration(maxNode, map.PathOf("max_interval"), RetryConfig.DefaultMaxInterval, MoreThanZero);
        if (max < initial)
        {
            var explicitMax = maxNode is YamlTree.Scalar { IsNull: false };
            reader.Error(
                (explicitMax ? maxNode : initialNode)!.Location,
                map.PathOf(explicitMax ? "max_interval" : "initial_interval"),
                $"max_interval ({Duration.Format(max)}{(explicitMax ? "" : ", the default")}) must be at least initial_interval ({Duration.Format(initial)})");
        }

        return new RetryConfig { MaxAttempts = maxAttempts, InitialInterval = initial, MaxInterval = max };
    }

    private static (WorkerConfig Worker, WorkerLocations Locations) ReadWorker(NodeReader reader, NodeReader.MappingReader top)
    {
        if (reader.Mapping(top["worker"], "worker", WorkerKeys) is not { } map)
        {
            return (new WorkerConfig(), new WorkerLocations(null, null, null));
        }

        var lease = map["lease"];
        var shutdownTimeout = map["shutdown_timeout"];
        var group = WorkerConfig.DefaultGroup;
        if (map["group"] is { } groupNode && reader.Scalar(groupNode, map.PathOf("group")) is { IsNull: false } groupScalar)
        {
            CheckIdentifier(reader, groupScalar, map.PathOf("group"), "a group name");
            group = groupScalar.Value;
        }

        var bodyMemory = map["body_memory"];
        var worker = new WorkerConfig
        {
            Group = group,
            BatchSize = reader.Int(map["batch_size"], map.PathOf("batch_size"), WorkerConfig.DefaultBatchSize, min: 1),
            PollInterval = reader.Duration(map["poll_interval"], map.PathOf("poll_interval"), WorkerConfig.DefaultPollInterval, MoreThanZero),
            Lease = reader.Duration(lease, map.PathOf("lease"), WorkerConfig.DefaultLease, MoreThanZero),
            HttpPort = reader.Int(map["http_port"], map.PathOf("http_port"), WorkerConfig.DefaultHttpPort, min: 1, max: 65535),
            ConsolePort = reader.Int(map["console_port"], map.PathOf("console_port"), 0, min: 0, max: 65535),
            ShutdownTimeout = reader.Duration(shutdownTimeout, map.PathOf("shutdown_timeout"), WorkerConfig.DefaultShutdownTimeout, TimeSpan.Zero),
            Concurrency = reader.Int(map["concurrency"], map.PathOf("concurrency"), WorkerConfig.DefaultConcurrency, min: 1),
            MetricsInterval = reader.Duration(map["metrics_interval"], map.PathOf("metrics_interval"), WorkerConfig.DefaultMetricsInterval, TimeSpan.FromMilliseconds(100)),
            SummaryInterval = reader.Duration(map["summary_interval"], map.PathOf("summary_interval"), WorkerConfig.DefaultSummaryInterval, TimeSpan.FromMilliseconds(100)),
            DenyPrivateNetworks = reader.Bool(map["deny_private_networks"], map.PathOf("deny_private_networks"), defaultValue: false),
            BodyMemory = reader.Size(bodyMemory, map.PathOf("body_memory"), WorkerConfig.DefaultBodyMemory, min: 1L << 20),
        };
        return (worker, new WorkerLocations(
            lease is YamlTree.Scalar { IsNull: false } ? lease.Location : null,
            shutdownTimeout is YamlTree.Scalar { IsNull: false } ? shutdownTimeout.Location : null,
            bodyMemory is YamlTree.Scalar { IsNull: false } ? bodyMemory.Location : null));
    }

    private static RetentionConfig ReadRetention(NodeReader reader, NodeReader.MappingReader top)
    {
        if (reader.Mapping(top["retention"], "retention", RetentionKeys) is not { } map)
        {
            return new RetentionConfig();
        }

        return new RetentionConfig
        {
            DeliveredEvents = reader.DurationOrForever(map["delivered_events"], map.PathOf("delivered_events"), RetentionConfig.DefaultRetention, TimeSpan.Zero),
            Attempts = reader.DurationOrForever(map["attempts"], map.PathOf("attempts"), RetentionConfig.DefaultRetention, TimeSpan.Zero),
            CleanupInterval = reader.Duration(map["cleanup_interval"], map.PathOf("cleanup_interval"), RetentionConfig.DefaultCleanupInterval, MoreThanZero),
        };
    }

    /// <summary>Where the worker's bounds on <c>webhook.timeout</c> and <c>max_event_bytes</c> are written, when they are.</summary>
    private sealed record WorkerLocations(ConfigLocation? Lease, ConfigLocation? ShutdownTimeout, ConfigLocation? BodyMemory);

    // \z, not $: '$' would also match before a final line break, which an environment variable may carry.
    [GeneratedRegex(@"^[A-Za-z0-9_-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex IdentifierPattern();

    // RFC 9110 token characters.
    [GeneratedRegex(@"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex HeaderNamePattern();

    [GeneratedRegex(@"^[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,7})?)?(Z|z|[+-][0-9]{2}:?[0-9]{2}))?\z", RegexOptions.CultureInvariant)]
    private static partial Regex IsoTimePattern();
}
