using System.Text.RegularExpressions;
using TriggerEvents.Testing;
using YamlDotNet.RepresentationModel;

namespace TriggerEvents.Cli.Tests;

/// <summary>The demo, non-interactively, and the deployment files (no Docker engine runs here).</summary>
public sealed partial class DemoAndDeployTests
{
    private static string Deploy(string path) => Path.Combine(WorkerProcess.RepositoryRoot, "deploy", path);

    [Test]
    public async Task The_demo_runs_non_interactively_delivers_every_change_with_a_valid_signature_and_cleans_up()
    {
        var result = await new Cli(null).RunAsync("demo", "--no-wait");

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(SignatureValid().Matches(result.Out), Has.Count.EqualTo(6), result.Out);
        Assert.That(result.Out, Does.Contain("INSERT").And.Contain("UPDATE").And.Contain("DELETE").And.Contain("MANUAL"));
        Assert.That(result.Out, Does.Contain("demo-orders"));
        Assert.That(result.Out, Does.Not.Contain("INVALID"));
        var dataDirectory = DataDirectory().Match(result.Out).Groups[1].Value;
        Assert.That(Directory.Exists(dataDirectory), Is.False, "the throwaway cluster is removed");
    }

    [Test]
    public async Task The_demo_serves_the_web_console_of_its_worker_and_prints_its_address()
    {
        await using var demo = WorkerProcess.StartCommand(new Dictionary<string, string?>(), "demo", "--wait");
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (!demo.Output.Contains("Still running", StringComparison.Ordinal))
        {
            Assert.That(demo.HasExited, Is.False, demo.Output);
            Assert.That(DateTime.UtcNow, Is.LessThan(deadline), demo.Output);
            await Task.Delay(100);
        }

        var address = ConsoleAddress().Match(demo.Output);
        Assert.That(address.Success, Is.True, demo.Output);
        using var client = new HttpClient { BaseAddress = new Uri(address.Groups[1].Value), Timeout = TimeSpan.FromSeconds(10) };
        using var page = await client.GetAsync(new Uri("/", UriKind.Relative));
        var overview = await client.GetStringAsync(new Uri("/api/overview", UriKind.Relative));

        Assert.That(page.Content.Headers.ContentType?.MediaType, Is.EqualTo("text/html"));
        Assert.That(overview, Does.Contain("\"demo-orders\""));
        Assert.That(await demo.TerminateAsync(), Is.Zero, demo.Output);
        Assert.That(Directory.Exists(DataDirectory().Match(demo.Output).Groups[1].Value), Is.False, "the throwaway cluster is removed");
    }

    [Test]
    public void The_kubernetes_deployment_probes_the_worker_endpoints_and_outlives_the_shutdown_timeout()
    {
        var deployment = Load("kubernetes/deployment.yaml");
        var spec = Map(Map(Map(deployment, "spec"), "template"), "spec");
        var container = (YamlMappingNode)((YamlSequenceNode)spec["containers"]).Children[0];

        Assert.That(Scalar(Map(Map(container, "livenessProbe"), "httpGet"), "path"), Is.EqualTo("/healthz"));
        Assert.That(Scalar(Map(Map(container, "readinessProbe"), "httpGet"), "path"), Is.EqualTo("/readyz"));
        var port = (YamlMappingNode)((YamlSequenceNode)container["ports"]).Children[0];
        Assert.That(Scalar(port, "containerPort"), Is.EqualTo("8080"));
        Assert.That(int.Parse(Scalar(spec, "terminationGracePeriodSeconds"), System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(30));
        Assert.That(int.Parse(Scalar(Map(deployment, "spec"), "replicas"), System.Globalization.CultureInfo.InvariantCulture), Is.GreaterThan(1));
        Assert.That(container.Children.ContainsKey("resources"), Is.True);
        var configMap = Load("kubernetes/configmap.yaml");
        Assert.That(Scalar(Map(configMap, "data"), "triggerevents.yaml"), Does.Contain("http_port: 8080"));
    }

    [Test]
    public async Task The_configuration_in_the_kubernetes_config_map_is_valid()
    {
        var configMap = Load("kubernetes/configmap.yaml");
        var path = Path.Combine(Path.GetTempPath(), $"{Guid.NewGuid():N}.yaml");
        await File.WriteAllTextAsync(path, Scalar(Map(configMap, "data"), "triggerevents.yaml"));

        var result = await new Cli(null).RunWithAsync(
            new() { ["BILLING_URL"] = "https://billing.internal/hook", ["BILLING_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }, "validate", "--config", path);
        File.Delete(path);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
    }

    [Test]
    public void Compose_runs_postgres_a_one_shot_migrate_two_workers_and_a_receiver()
    {
        var services = Map(Load("docker-compose.yml"), "services");

        Assert.That(services.Children.Keys.Select(k => k.ToString()), Is.SupersetOf(new[] { "postgres", "migrate", "worker", "receiver" }));
        Assert.That(((YamlSequenceNode)Map(services, "migrate")["command"]).Children.Select(c => c.ToString()), Is.EqualTo(new[] { "migrate" }));
        Assert.That(Scalar(Map(Map(services, "worker"), "deploy"), "replicas"), Is.EqualTo("2"));
    }

    [Test]
    public void The_dockerfile_is_multi_stage_non_root_with_the_entrypoint_command_and_a_healthcheck()
    {
        var dockerfile = File.ReadAllText(Deploy("Dockerfile"));

        Assert.That(Regex.Matches(dockerfile, "^FROM ", RegexOptions.Multiline), Has.Count.EqualTo(2));
        Assert.That(dockerfile, Does.Contain("USER $APP_UID"));
        Assert.That(dockerfile, Does.Contain("ENTRYPOINT [\"triggerevents\"]"));
        Assert.That(dockerfile, Does.Contain("CMD [\"run\"]"));
        Assert.That(dockerfile, Does.Contain("HEALTHCHECK").And.Contain("/healthz"));
    }

    private static YamlMappingNode Load(string path)
    {
        var stream = new YamlStream();
        using var reader = new StreamReader(Deploy(path));
        stream.Load(reader);
        return (YamlMappingNode)stream.Documents[0].RootNode;
    }

    private static YamlMappingNode Map(YamlMappingNode node, string key) => (YamlMappingNode)node[key];

    private static string Scalar(YamlMappingNode node, string key) => ((YamlScalarNode)node[key]).Value!;

    [GeneratedRegex("signature valid")]
    private static partial Regex SignatureValid();

    [GeneratedRegex(@"data in (\S+)")]
    private static partial Regex DataDirectory();

    [GeneratedRegex(@"web console.*\n\s+(http://127\.0\.0\.1:\d+/)")]
    private static partial Regex ConsoleAddress();
}
