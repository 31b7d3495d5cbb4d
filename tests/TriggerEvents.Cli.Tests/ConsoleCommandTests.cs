using System.Net;
using System.Net.Sockets;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary><c>triggerevents console</c>'s usage errors, without a browser.</summary>
public sealed class ConsoleCommandTests
{
    [TestCase("localhost", "is not HOST:PORT")]
    [TestCase("example.com:8081", "'example.com' is not an IP address (or localhost)")]
    [TestCase("127.0.0.1:70000", "the port must be 1 to 65535")]
    public async Task A_bad_listen_address_exits_2_with_one_line(string listen, string message)
    {
        var result = await new Cli("postgres://nobody@127.0.0.1:1/none").RunAsync("console", "--listen", listen);

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim().Split('\n'), Has.Length.EqualTo(1), result.ToString());
        Assert.That(result.Error, Does.StartWith("triggerevents: ").And.Contain(message));
    }

    [TestCase("0.0.0.0")]
    [TestCase("[::]")]
    [TestCase("192.0.2.10")]
    public async Task Any_address_but_loopback_without_a_token_exits_2_before_touching_the_database(string host)
    {
        var result = await new Cli("postgres://nobody@127.0.0.1:1/none").RunWithAsync(
            new() { ["TRIGGER_EVENTS_CONSOLE_TOKEN"] = null }, "console", "--listen", $"{host}:{Loopback.FreePort()}");

        Assert.That(result.ExitCode, Is.EqualTo(2), result.ToString());
        Assert.That(result.Error.Trim(), Does.StartWith("triggerevents: the console would listen on").And.Contain("not a loopback address").And.Contain("TRIGGER_EVENTS_CONSOLE_TOKEN"));
    }

    [Test]
    public async Task A_port_in_use_exits_1_with_one_line_naming_it()
    {
        await using var database = await TestDatabase.CreateAsync();
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;

        var result = await new Cli(database.WorkerConnectionString).RunAsync("console", "--listen", $"127.0.0.1:{port}");

        Assert.That(result.ExitCode, Is.EqualTo(1), result.ToString());
        Assert.That(result.Error.Trim().Split('\n'), Has.Length.EqualTo(1), result.ToString());
        Assert.That(result.Error, Does.Contain($"127.0.0.1:{port} is already in use"));
    }
}
