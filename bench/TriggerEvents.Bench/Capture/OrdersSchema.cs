using System.Globalization;
using System.Text.RegularExpressions;
using TriggerEvents.Bench.Infrastructure;

namespace TriggerEvents.Bench.Capture;

/// <summary>
/// The three identical <c>orders</c> tables (one plain, one attached with its subscriptions, as in
/// production, one with the Hasura-shaped trigger), and the statements that reset and configure them.
/// </summary>
internal static class OrdersSchema
{
    public const string PlainTable = "orders_plain";
    public const string AttachedTable = "orders_attached";
    public const string HasuraTable = "orders_hasura";
    public const string TriggerName = "orders";
    public const string SubscriptionName = "orders-webhook";

    // Written out twice rather than LIKE ... INCLUDING ALL, which would share one bigserial
    // sequence between the two tables.
    private const string TableDefinition = """
        CREATE TABLE {0} (
            id          bigserial PRIMARY KEY,
            customer_id bigint,
            status      text,
            amount      numeric(12,2),
            created_at  timestamptz DEFAULT now()
        )
        """;

    public static async Task CreateAsync(BenchDatabase database, CancellationToken cancellationToken)
    {
        await database.ExecuteAsync(string.Format(CultureInfo.InvariantCulture, TableDefinition, PlainTable), cancellationToken);
        await database.ExecuteAsync(string.Format(CultureInfo.InvariantCulture, TableDefinition, AttachedTable), cancellationToken);
        await database.ExecuteAsync(string.Format(CultureInfo.InvariantCulture, TableDefinition, HasuraTable), cancellationToken);
        await database.ExecuteAsync(HasuraCapture(), cancellationToken);
        await database.ExecuteAsync(
            $"CREATE TRIGGER h_ins AFTER INSERT ON {HasuraTable} FOR EACH ROW EXECUTE FUNCTION hdb_catalog.\"notify_hasura_h_ins_INSERT\"()",
            cancellationToken);
        await database.ExecuteAsync(
            $"SELECT trigger_events.attach('{AttachedTable}', '{TriggerName}')", cancellationToken);
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('{SubscriptionName}', '{TriggerName}')",
            cancellationToken);
    }

    /// <summary>
    /// Empties both tables and the event log and delivery state, restarting their sequences,
    /// then checkpoints, so every run starts from the same empty tables with no dirty buffers
    /// left by the run before.
    /// </summary>
    public static async Task ResetAsync(BenchDatabase database, CancellationToken cancellationToken)
    {
        await database.ExecuteAsync(
            $"TRUNCATE {PlainTable}, {AttachedTable}, {HasuraTable}, hdb_catalog.event_log, trigger_events.event_log, trigger_events.deliveries RESTART IDENTITY",
            cancellationToken);
        await database.ExecuteAsync("CHECKPOINT", cancellationToken);
    }

    /// <summary>
    /// Re-attaches with the mode's notify flag (a no-op when unchanged), gives the trigger the
    /// mode's number of subscriptions and sets worker_signal.idle.
    /// </summary>
    public static async Task ApplyAsync(BenchDatabase database, CaptureMode mode, CancellationToken cancellationToken)
    {
        if (!mode.IsAttached)
        {
            return;
        }

        await database.ExecuteAsync($"DELETE FROM trigger_events.subscriptions WHERE name LIKE '{SubscriptionName}-extra-%'", cancellationToken);
        await database.ExecuteAsync(
            $"INSERT INTO trigger_events.subscriptions (name, trigger_name) SELECT '{SubscriptionName}-extra-' || g, '{TriggerName}' FROM generate_series(2, {mode.Subscriptions}) g",
            cancellationToken);

        var options = mode.Variant switch
        {
            CaptureVariant.Condition => ", condition => 'NEW.amount >= 0 OR NEW.amount IS NULL'",
            CaptureVariant.PayloadColumns or CaptureVariant.PayloadColumnsByName => ", payload_columns => '{id,customer_id,status,amount}'",
            CaptureVariant.PayloadColumnsTextLeftOut => ", payload_columns => '{id,customer_id,amount,created_at}'",
            _ => "",
        };
        await database.ExecuteAsync(
            $"SELECT trigger_events.attach('{AttachedTable}', '{TriggerName}', notify => {(mode.Notify == true ? "true" : "false")}{options})",
            cancellationToken);
        // Generated again every time: the variant before may have rewritten it.
        await database.ExecuteAsync(
            $"SELECT trigger_events.install_capture(id) FROM trigger_events.event_triggers WHERE name = '{TriggerName}'", cancellationToken);
        if (mode.Variant is CaptureVariant.WithoutGuard or CaptureVariant.PayloadColumnsByName)
        {
            await RewriteCaptureAsync(database, mode.Variant, cancellationToken);
        }

        // As a worker sets them: the flag, and its hint for capture (migration 000015).
        await database.ExecuteAsync(
            $"UPDATE trigger_events.worker_signal SET idle = {(mode.WorkerIdle ? "true" : "false")}, updated_at = now()",
            cancellationToken);
        await database.ExecuteAsync(
            $"SELECT setval('trigger_events.worker_idle_hint', {(mode.WorkerIdle ? 1 : 0)})", cancellationToken);
    }

    /// <summary>
    /// Rewrites the attached table's capture functions for a variant: without the check of who
    /// fired them, or with the payload columns compiled in by name instead of kept by number.
    /// </summary>
    private static async Task RewriteCaptureAsync(BenchDatabase database, CaptureVariant variant, CancellationToken cancellationToken)
    {
        var definitions = new List<string>();
        await using (var command = database.DataSource.CreateCommand(
            $"SELECT DISTINCT pg_get_functiondef(tgfoid) FROM pg_trigger WHERE tgrelid = '{AttachedTable}'::regclass AND tgname LIKE 'te\\_%' " +
            "AND tgfoid <> 'trigger_events.capture_no_parent()'::regprocedure"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                definitions.Add(reader.GetString(0));
            }
        }

        foreach (var definition in definitions)
        {
            var rewritten = variant == CaptureVariant.WithoutGuard
                // The check of who fired it, from its IF through the registry's fallback and the raise.
                ? Cut(definition, @"\n    IF TG_RELID <> .*?RAISE EXCEPTION.*?\n    END IF;\n    END IF;", variant)
                : Cut(
                    Cut(definition, @"\n    IF _te_moved THEN\n        _te_hidden := .*?\n    END IF;", variant),
                    @"to_jsonb\(""(new|old)""\.\*\) - _te_hidden",
                    variant,
                    m => $"jsonb_build_object('id', \"{m.Groups[1].Value}\".id, 'customer_id', \"{m.Groups[1].Value}\".customer_id, " +
                         $"'status', \"{m.Groups[1].Value}\".status, 'amount', \"{m.Groups[1].Value}\".amount)");
            await database.ExecuteAsync(rewritten, cancellationToken);
        }
    }

    /// <summary>
    /// Replaces what <paramref name="pattern"/> matches; a pattern that matches nothing means the
    /// capture template moved on, and the variant would measure something else without a word.
    /// </summary>
    private static string Cut(string definition, string pattern, CaptureVariant variant, MatchEvaluator? replacement = null)
    {
        var rewritten = Regex.Replace(definition, pattern, replacement ?? (_ => ""), RegexOptions.Singleline);
        return rewritten != definition
            ? rewritten
            : throw new InvalidOperationException($"The {variant} rewrite found nothing to change at {pattern}: the capture template moved on.");
    }

    /// <summary>
    /// Rows in the mode's table, the events captured from them (in the peer's log for the peer),
    /// and the delivery rows the writers made (none: the worker makes them after commit).
    /// </summary>
    public static async Task<(long Rows, long Events, long Deliveries)> CountAsync(
        BenchDatabase database, CaptureMode mode, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand($"""
            SELECT (SELECT count(*) FROM {mode.Table}),
                   (SELECT count(*) FROM {(mode.IsPeer ? "hdb_catalog" : "trigger_events")}.event_log),
                   (SELECT count(*) FROM trigger_events.deliveries)
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    /// <summary>The pgbench transaction: one single-row INSERT, autocommitted.</summary>
    public static string PgbenchScript(string table) => $"""
        \set customer_id random(1, 100000)
        \set cents random(100, 1000000)
        INSERT INTO {table} (customer_id, status, amount) VALUES (:customer_id, 'new', :cents / 100.0);

        """;

    /// <summary>The bulk statement: <paramref name="rows"/> rows from one INSERT ... SELECT.</summary>
    public static string BulkInsert(string table, int rows) => $"""
        INSERT INTO {table} (customer_id, status, amount)
        SELECT 1 + g % 5000, (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4], (g % 100000) / 100.0
        FROM generate_series(1, {rows}) AS g
        """;

    /// <summary>The peer's schema and trigger function, embedded from Capture/Peers/hasura-capture.sql.</summary>
    private static string HasuraCapture()
    {
        using var stream = typeof(OrdersSchema).Assembly.GetManifestResourceStream("peers/hasura-capture.sql")
            ?? throw new InvalidOperationException("The embedded peers/hasura-capture.sql is missing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
