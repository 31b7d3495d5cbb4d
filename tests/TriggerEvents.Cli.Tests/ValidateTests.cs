namespace TriggerEvents.Cli.Tests;

public sealed class ValidateTests
{
    private string directory = null!;

    [OneTimeSetUp]
    public void CreateDirectory()
    {
        directory = Path.Combine(Path.GetTempPath(), $"te-validate-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
    }

    [OneTimeTearDown]
    public void DeleteDirectory() => Directory.Delete(directory, recursive: true);

    private string Write(string yaml)
    {
        var path = Path.Combine(directory, $"{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    [Test]
    public async Task A_good_file_is_valid_and_exits_0()
    {
        var path = Write("""
            subscriptions:
              - name: billing-orders
                trigger: orders_changed
                webhook:
                  url: ${BILLING_URL:-http://127.0.0.1:9/hook}
                  signing_secret: ${SECRET}
            """);

        var result = await new Cli(null).RunWithAsync(new() { ["SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }, "validate", "--config", path);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("1 subscriptions, valid"));
        Assert.That(result.Out, Does.Contain("worker.deny_private_networks is off: every address the URLs name is called, private ones included"));
    }

    [Test]
    public async Task Validate_shows_that_private_networks_are_denied()
    {
        var path = Write("""
            subscriptions: []
            worker:
              deny_private_networks: true
            """);

        var result = await new Cli(null).RunAsync("validate", "--config", path);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
        Assert.That(result.Out, Does.Contain("worker.deny_private_networks is on: private, loopback, link-local and metadata addresses are refused"));
    }

    [Test]
    public async Task A_bad_file_lists_every_problem_as_file_line_col_and_exits_2()
    {
        var path = Write("""
            subscriptions:
              - name: billing-orders
                trigger: orders_changed
                colour: blue
                webhook:
                  url: not a url
                  timeout: 10 parsecs
                  headers:
                    Authorization: Bearer ${MISSING_TOKEN}
                retry:
                  max_attempts: many
            """);

        var result = await new Cli(null).RunWithAsync(new() { ["MISSING_TOKEN"] = null }, "validate", "--config", path);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        var lines = result.Error.Trim().Split('\n');
        Assert.That(lines, Has.Length.GreaterThanOrEqualTo(5));
        Assert.That(lines, Has.All.Match(@"^.+\.yaml:\d+:\d+: .+"));
        Assert.That(result.Error, Does.Contain(":4:").And.Contain("colour"));
        Assert.That(result.Error, Does.Contain("MISSING_TOKEN"));
        Assert.That(result.Error, Does.Not.Contain("   at "));
    }

    [Test]
    public async Task The_sample_configuration_in_deploy_is_valid()
    {
        var sample = Path.Combine(TriggerEvents.Testing.WorkerProcess.RepositoryRoot, "deploy", "triggerevents.yaml");

        var result = await new Cli(null).RunWithAsync(new() { ["BILLING_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }, "validate", "--config", sample);

        Assert.That(result.ExitCode, Is.Zero, result.ToString());
    }
}
