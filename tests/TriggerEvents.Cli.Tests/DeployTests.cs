using System.ComponentModel;
using System.Diagnostics;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;
using YamlDotNet.RepresentationModel;

namespace TriggerEvents.Cli.Tests;

/// <summary>
/// deploy/ as an operator applies it: the manifests and the compose file checked offline against
/// the published schemas by a real validator (tests/manifests/validate.mjs), the rules the
/// schemas cannot express, and the compose sample's setup and worker role run for real.
/// </summary>
public sealed class DeployTests
{
    private static string Root => WorkerProcess.RepositoryRoot;

    private static string Deploy(string path) => Path.Combine(Root, "deploy", path);

    private static readonly string[] Manifests =
        [.. Directory.GetFiles(Deploy("kubernetes"), "*.yaml").Concat(Directory.GetFiles(Deploy("kubernetes/optional"), "*.yaml")).Order(StringComparer.Ordinal)];

    /// <summary>Runs the validator on <paramref name="files"/>: (exit code, its report).</summary>
    private static async Task<(int ExitCode, string Report)> ValidateAsync(params string[] files)
    {
        var directory = Path.Combine(Root, "tests", "manifests");
        if (!File.Exists(Path.Combine(directory, "node_modules", "kubernetes-models", "package.json")))
        {
            Assert.Fail($"The validators are not installed: with Node.js 20 or later, run 'npm ci' in {directory} (scripts/test.sh does).");
        }

        var start = new ProcessStartInfo("node") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = directory };
        start.ArgumentList.Add("validate.mjs");
        foreach (var file in files)
        {
            start.ArgumentList.Add(file);
        }

        try
        {
            using var process = Process.Start(start)!;
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(1));
            await process.WaitForExitAsync(timeout.Token);
            return (process.ExitCode, await output + await error);
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"Node.js is needed to validate deploy/, and 'node' could not be started: {e.Message}");
            throw;
        }
    }

    private static List<YamlMappingNode> Load(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(path);
        stream.Load(reader);
        return [.. stream.Documents.Select(d => (YamlMappingNode)d.RootNode)];
    }

    private static YamlMappingNode Manifest(string kind) =>
        Manifests.SelectMany(Load).Single(d => Scalar(d, "kind") == kind);

    private static YamlNode? At(YamlNode node, params string[] path)
    {
        foreach (var key in path)
        {
            if (node is not YamlMappingNode map || !map.Children.TryGetValue(key, out var next))
            {
                return null;
            }

            node = next;
        }

        return node;
    }

    private static string? Scalar(YamlNode node, params string[] path) => (At(node, path) as YamlScalarNode)?.Value;

    private static YamlMappingNode PodSpec(YamlMappingNode workload) => (YamlMappingNode)At(workload, "spec", "template", "spec")!;

    private static IEnumerable<YamlMappingNode> Containers(YamlMappingNode podSpec) =>
        ((YamlSequenceNode)podSpec["containers"]).Children.Cast<YamlMappingNode>();

    [Test]
    public async Task Every_manifest_and_the_compose_file_pass_the_published_schemas_offline()
    {
        var (exitCode, report) = await ValidateAsync([.. Manifests, Deploy("docker-compose.yml")]);

        Assert.That(exitCode, Is.Zero, report);
        var lines = report.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.That(lines, Has.All.EndWith(": ok"), report);
        Assert.That(lines, Has.Length.EqualTo(Manifests.Sum(m => Load(m).Count) + 1), "one line per document");
        Assert.That(report, Does.Contain("PodDisruptionBudget/").And.Contain("PodMonitor/").And.Contain("Service/").And.Contain("compose: ok"));
    }

    [Test]
    public async Task The_validator_rejects_a_manifest_and_a_compose_file_that_break_their_schemas()
    {
        var directory = Directory.CreateTempSubdirectory("te-deploy-").FullName;
        var deployment = Path.Combine(directory, "deployment.yaml");
        var compose = Path.Combine(directory, "docker-compose.yml");
        await File.WriteAllTextAsync(deployment, (await File.ReadAllTextAsync(Deploy("kubernetes/deployment.yaml")))
            .Replace("terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: soon", StringComparison.Ordinal));
        await File.WriteAllTextAsync(compose, (await File.ReadAllTextAsync(Deploy("docker-compose.yml")))
            .Replace("stop_grace_period:", "stop_grace:", StringComparison.Ordinal));

        var (exitCode, report) = await ValidateAsync(deployment, compose);
        Directory.Delete(directory, recursive: true);

        Assert.That(exitCode, Is.EqualTo(1), report);
        Assert.That(report, Does.Contain("terminationGracePeriodSeconds must be integer"));
        Assert.That(report, Does.Contain("/services/worker must NOT have additional properties 'stop_grace'"));
    }

    [TestCase("Deployment")]
    [TestCase("Job")]
    public void The_pods_pass_the_restricted_pod_security_profile(string kind)
    {
        var pod = PodSpec(Manifest(kind));

        Assert.That(Scalar(pod, "securityContext", "runAsNonRoot"), Is.EqualTo("true"));
        Assert.That(Scalar(pod, "securityContext", "runAsUser"), Is.Not.EqualTo("0"));
        Assert.That(Scalar(pod, "securityContext", "seccompProfile", "type"), Is.EqualTo("RuntimeDefault"));
        Assert.That(At(pod, "hostNetwork") ?? At(pod, "hostPID") ?? At(pod, "hostIPC"), Is.Null);
        Assert.That(((YamlSequenceNode?)At(pod, "volumes"))?.Children.Any(v => At(v, "hostPath") is not null) ?? false, Is.False);
        foreach (var container in Containers(pod))
        {
            Assert.That(Scalar(container, "securityContext", "allowPrivilegeEscalation"), Is.EqualTo("false"));
            Assert.That(Scalar(container, "securityContext", "readOnlyRootFilesystem"), Is.EqualTo("true"));
            Assert.That(((YamlSequenceNode?)At(container, "securityContext", "capabilities", "drop"))?.Children.Select(c => c.ToString()), Is.EqualTo(new[] { "ALL" }));
            Assert.That(At(container, "securityContext", "capabilities", "add"), Is.Null);
            Assert.That(At(container, "securityContext", "privileged"), Is.Null);
        }
    }

    [Test]
    public void The_migrate_job_is_named_for_its_release_cleans_up_after_itself_and_uses_the_workers_image()
    {
        var job = Manifest("Job");
        var version = Scalar(job, "metadata", "labels", "app.kubernetes.io/version")!;
        var image = Scalar(Containers(PodSpec(job)).Single(), "image");

        Assert.That(Scalar(job, "metadata", "name"), Is.EqualTo("triggerevents-migrate-" + version.Replace('.', '-')), "a new release is a new Job");
        Assert.That(image, Does.EndWith(":" + version));
        Assert.That(Containers(PodSpec(Manifest("Deployment"))).Single()["image"].ToString(), Is.EqualTo(image));
        Assert.That(int.Parse(Scalar(job, "spec", "ttlSecondsAfterFinished")!, System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(0));
    }

    [Test]
    public void Workers_start_slowly_without_being_killed_and_are_reached_by_a_service_a_pod_monitor_and_a_disruption_budget()
    {
        var deployment = Manifest("Deployment");
        var worker = Containers(PodSpec(deployment)).Single();
        var labels = ((YamlMappingNode)At(deployment, "spec", "template", "metadata", "labels")!).Children
            .ToDictionary(p => p.Key.ToString(), p => p.Value.ToString());

        Assert.That(Scalar(worker, "startupProbe", "httpGet", "path"), Is.EqualTo("/healthz"));
        var startup = int.Parse(Scalar(worker, "startupProbe", "periodSeconds")!, System.Globalization.CultureInfo.InvariantCulture)
                      * int.Parse(Scalar(worker, "startupProbe", "failureThreshold")!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.That(startup, Is.GreaterThanOrEqualTo(120), "a slow database does not get a starting pod restarted");
        foreach (var (selector, what) in new[]
        {
            (At(Manifest("Service"), "spec", "selector"), "Service"),
            (At(Manifest("PodDisruptionBudget"), "spec", "selector", "matchLabels"), "PodDisruptionBudget"),
            (At(Manifest("PodMonitor"), "spec", "selector", "matchLabels"), "PodMonitor"),
        })
        {
            var wanted = ((YamlMappingNode)selector!).Children.ToDictionary(p => p.Key.ToString(), p => p.Value.ToString());
            Assert.That(wanted, Is.SubsetOf(labels), what + " selects the worker pods");
            Assert.That(wanted.ContainsKey("app.kubernetes.io/component"), Is.True, what + " does not select the migrate Job's pods");
        }

        Assert.That(Scalar((YamlMappingNode)((YamlSequenceNode)At(Manifest("PodMonitor"), "spec", "podMetricsEndpoints")!).Children[0], "path"), Is.EqualTo("/metrics"));
    }

    [Test]
    public void Migrate_and_the_workers_use_separate_credentials()
    {
        var secrets = Load(Deploy("kubernetes/secret.yaml")).ToDictionary(s => Scalar(s, "metadata", "name")!);
        string SecretOf(string kind) => Scalar((YamlMappingNode)((YamlSequenceNode)Containers(PodSpec(Manifest(kind))).Single()["envFrom"]).Children.Single(), "secretRef", "name")!;
        string UserOf(string secret) => new Uri(Scalar(secrets[secret], "stringData", "TRIGGER_EVENTS_DATABASE_URL")!).UserInfo.Split(':')[0];

        Assert.That(SecretOf("Job"), Is.Not.EqualTo(SecretOf("Deployment")));
        Assert.That(UserOf(SecretOf("Job")), Is.Not.EqualTo(UserOf(SecretOf("Deployment"))));
        Assert.That(UserOf(SecretOf("Deployment")), Is.EqualTo("trigger_events_worker"), "the role deploy/worker-role.sql grants");
        Assert.That(secrets[SecretOf("Job")].ToString(), Does.Not.Contain("BILLING_SECRET"), "migrate holds no subscription secret");
    }

    [Test]
    public async Task The_compose_setup_attaches_the_sample_table_and_its_worker_role_delivers_and_cleans_up_with_only_its_grants()
    {
        await using var database = await TestDatabase.CreateAsync();
        var role = $"te_worker_{Guid.NewGuid():N}"[..20];
        var setup = (await File.ReadAllTextAsync(Deploy("compose-setup.sql")))
            .Replace("\\ir worker-role.sql", await File.ReadAllTextAsync(Deploy("worker-role.sql")), StringComparison.Ordinal)
            .Replace("trigger_events_worker", role, StringComparison.Ordinal);
        await database.ExecuteAsync(setup);
        await database.ExecuteAsync(setup);
        var asWorker = new Npgsql.NpgsqlConnectionStringBuilder(database.ConnectionString) { Username = role, Password = "worker" }.ConnectionString;
        try
        {
            await using var receiver = await WebhookReceiver.StartAsync();
            var port = Loopback.FreePort();
            var path = Path.Combine(Path.GetTempPath(), $"{Guid.NewGuid():N}.yaml");
            await File.WriteAllTextAsync(path, (await File.ReadAllTextAsync(Deploy("triggerevents.yaml")))
                .Replace("http_port: 8080", $"http_port: {port}", StringComparison.Ordinal));
            await using (var worker = WorkerProcess.Start(asWorker, path, port, new Dictionary<string, string?>
            {
                ["BILLING_URL"] = receiver.Url("/webhooks/orders").ToString(),
                ["BILLING_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            }))
            {
                await worker.WaitUntilReadyAsync();

                // What the compose writer does.
                await database.ExecuteAsync("INSERT INTO orders (status) VALUES ('new')");
                await database.ExecuteAsync("UPDATE orders SET status = 'paid' WHERE id = (SELECT max(id) FROM orders)");
                await receiver.WaitUntilAsync(r => r.DeliveredEventIds().Count == 2, TimeSpan.FromSeconds(60), "the writer's two changes delivered");
                Assert.That(await worker.TerminateAsync(), Is.Zero, worker.Output);
                Assert.That(worker.Output, Does.Not.Contain("permission denied"));
            }

            var status = await new Cli(asWorker).RunAsync("status");
            var triggers = await new Cli(asWorker).RunAsync("triggers");
            var cleanup = await new Cli(asWorker).RunAsync("cleanup", "--older-than", "0s", "--attempts-older-than", "0s");
            File.Delete(path);

            Assert.That(status.ExitCode, Is.Zero, status.ToString());
            Assert.That(triggers.ExitCode, Is.Zero, triggers.ToString());
            Assert.That(triggers.Out, Does.Contain(" ok "), "the worker's role reads each trigger's health");
            Assert.That(cleanup.ExitCode, Is.Zero, cleanup.ToString());
            Assert.That(cleanup.Out, Does.Contain("Deleted 2 delivered events"));
        }
        finally
        {
            Npgsql.NpgsqlConnection.ClearAllPools();
            await database.ExecuteAsync($"DROP OWNED BY {role}");
            await database.ExecuteAsync($"DROP ROLE {role}");
        }
    }
}
