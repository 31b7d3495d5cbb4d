using TriggerEvents.Core.Configuration;

namespace TriggerEvents.Core.Tests.Configuration;

/// <summary><c>worker.console_port</c>: off unless given, a TCP port when given.</summary>
public sealed class ConsolePortTests
{
    [Test]
    public void The_console_is_off_unless_a_port_is_given()
    {
        Assert.That(ConfigText.Parse(ConfigText.Subscription("")).Worker.ConsolePort, Is.Zero);
        Assert.That(ConfigText.Parse(ConfigText.Subscription("worker:\n  console_port: 0\n")).Worker.ConsolePort, Is.Zero);
        Assert.That(ConfigText.Parse(ConfigText.Subscription("worker:\n  console_port: 8081\n")).Worker.ConsolePort, Is.EqualTo(8081));
    }

    [TestCase("-1")]
    [TestCase("65536")]
    public void A_console_port_outside_the_tcp_range_is_an_error(string port)
    {
        Assert.That(ConfigText.Error(ConfigText.Subscription($"worker:\n  console_port: {port}\n")),
            Is.EqualTo($"te.yaml:7:17: worker.console_port: must be from 0 to 65535, not {port}"));
    }
}
