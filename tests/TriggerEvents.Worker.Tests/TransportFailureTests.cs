using System.Net;
using System.Net.Sockets;
using System.Text;
using TriggerEvents.Testing;

namespace TriggerEvents.Worker.Tests;

/// <summary>
/// SPEC "Webhook request": a timeout or a connection error is a failed attempt, retried with
/// backoff, and dead after <c>max_attempts</c> with the error kept. In process
/// (<see cref="RoundHarness"/>): the timeouts are real, the waits between attempts are crossed by
/// moving the clock.
/// </summary>
public sealed class TransportFailureTests
{
    private RoundHarness harness = null!;

    [SetUp]
    public async Task StartAsync() => harness = await RoundHarness.CreateAsync();

    [TearDown]
    public async Task StopAsync() => await harness.DisposeAsync();

    [Test]
    public async Task A_receiver_slower_than_the_timeout_is_a_failed_attempt_then_delivered_when_it_answers_in_time()
    {
        harness.Receiver.Respond = r => r.Attempt == 1 ? new ReceiverResponse(200, Delay: TimeSpan.FromSeconds(10)) : ReceiverResponse.Ok;
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", maxAttempts: 5, timeout: TimeSpan.FromSeconds(1)));

        await harness.InsertOrdersAsync(1, 2);
        var deliveries = await harness.RunUntilSettledAsync(worker, 2);
        // The receiver notes a request the worker hung up on once it sees the connection go.
        await harness.Receiver.WaitUntilAsync(r => r.Requests.Count >= 4, TimeSpan.FromSeconds(30), "the abandoned requests noted");
        await harness.AssertLedgerAsync(delivered: 2, dead: 0);

        Assert.That(deliveries.Select(d => (d.Status, d.LastStatus)), Is.All.EqualTo(("delivered", (int?)200)));
        var attempts = await harness.AttemptsAsync();
        foreach (var delivery in deliveries)
        {
            // Normally two attempts; a loaded machine may time out one more, which changes nothing here.
            var log = attempts.Where(a => a.EventId == delivery.EventId).ToList();
            Assert.That(log, Has.Count.GreaterThanOrEqualTo(2));
            Assert.That(log[^1].HttpStatus, Is.EqualTo(200));
            Assert.That(log[..^1].Select(a => a.HttpStatus), Is.All.Null);
            Assert.That(log[..^1].Select(a => a.Error), Has.All.Contains("timeout").And.All.Contains("1s"));
            var requests = harness.Receiver.Requests.Where(r => r.EventId == delivery.EventId).OrderBy(r => r.Attempt).ToList();
            Assert.That(requests[0].Status, Is.Zero, "the worker hung up on the slow answer");
        }
    }

    [Test]
    public async Task A_receiver_that_always_times_out_is_dead_with_the_timeout_kept()
    {
        harness.Receiver.Respond = _ => new ReceiverResponse(200, Delay: TimeSpan.FromSeconds(10));
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", maxAttempts: 2, timeout: TimeSpan.FromMilliseconds(500)));

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.RunUntilSettledAsync(worker, 1)).Single();
        await harness.AssertLedgerAsync(delivered: 0, dead: 1);

        Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 2, (int?)null)));
        Assert.That(delivery.LastError, Does.Contain("2 attempts").And.Contain("timeout").And.Contain("500ms"));
    }

    [Test]
    public async Task A_closed_port_is_retried_then_dead_with_the_connection_error_kept_while_other_subscriptions_deliver()
    {
        using var port = new ClosedPort();
        var worker = await harness.WorkerAsync(harness.Subscription("closed-port", port.Url()), harness.Subscription("open-port"));

        await harness.InsertOrdersAsync(1, 3);
        var deliveries = await harness.RunUntilSettledAsync(worker, 6);
        await harness.AssertLedgerAsync(delivered: 3, dead: 3);

        foreach (var delivery in deliveries.Where(d => d.Subscription == "closed-port"))
        {
            Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo(("dead", 3, (int?)null)));
            Assert.That(delivery.LastError, Does.Contain("connection error").And.Contain("refused").IgnoreCase);
        }

        var attempts = (await harness.AttemptsAsync()).Where(a => a.Subscription == "closed-port").ToList();
        Assert.That(attempts, Has.Count.EqualTo(9));
        Assert.That(attempts.Select(a => a.HttpStatus), Is.All.Null);
        Assert.That(attempts.Select(a => a.Error), Has.All.Contains("refused").IgnoreCase);
        Assert.That(deliveries.Where(d => d.Subscription == "open-port").Select(d => (d.Status, d.Attempts)), Is.All.EqualTo(("delivered", 1)));
    }

    [TestCase(200, "delivered", 1)]
    [TestCase(500, "dead", 2)]
    public async Task A_status_that_arrived_in_time_stands_when_the_body_is_still_coming_at_the_timeout(int status, string outcome, int attempts)
    {
        // The status line is the receiver's answer. Counting a 2xx whose body trickles past the
        // timeout as a failure would send the event again to a receiver that accepted it.
        await using var server = new StalledBodyServer(status);
        var worker = await harness.WorkerAsync(harness.Subscription("orders-hook", server.Url, maxAttempts: 2, timeout: TimeSpan.FromSeconds(2)));

        await harness.InsertOrdersAsync(1, 1);
        var delivery = (await harness.RunUntilSettledAsync(worker, 1)).Single();
        await harness.AssertLedgerAsync(delivered: outcome == "delivered" ? 1 : 0, dead: outcome == "dead" ? 1 : 0);

        Assert.That((delivery.Status, delivery.Attempts, delivery.LastStatus), Is.EqualTo((outcome, attempts, (int?)status)));
        Assert.That((await harness.AttemptsAsync()).Select(a => a.HttpStatus), Is.All.EqualTo(status));
        Assert.That(server.Requests, Is.EqualTo(attempts));
    }

    [Test]
    public async Task A_receiver_that_never_reads_a_large_request_is_a_timeout_and_holds_up_no_other_subscription()
    {
        // 12 MiB: more than the loopback socket buffers take in, so sending the body itself stalls.
        await using var server = new DeafServer();
        var worker = await harness.WorkerAsync(
            harness.Subscription("never-reads", server.Url, maxAttempts: 2, timeout: TimeSpan.FromSeconds(2)) with { MaxEventBytes = 32L << 20 },
            harness.Subscription("reads") with { MaxEventBytes = 32L << 20 });

        await harness.Database.ExecuteAsync("INSERT INTO orders VALUES (1, repeat('x', 12 * 1024 * 1024))");
        var deliveries = await harness.RunUntilSettledAsync(worker, 2);

        var deaf = deliveries.Single(d => d.Subscription == "never-reads");
        Assert.That((deaf.Status, deaf.Attempts, deaf.LastStatus), Is.EqualTo(("dead", 2, (int?)null)));
        Assert.That(deaf.LastError, Does.Contain("timeout").And.Contain("2s"), deaf.LastError);
        Assert.That(server.Connections, Is.EqualTo(2), "one connection an attempt, each given up at the timeout");
        Assert.That(deliveries.Single(d => d.Subscription == "reads").Status, Is.EqualTo("delivered"));
        Assert.That(harness.Receiver.Requests.Single().Body.Length, Is.GreaterThan(12 * 1024 * 1024), "the whole event, to the receiver that reads");
    }

    /// <summary>A TCP server on 127.0.0.1 that accepts connections and never reads from them nor answers.</summary>
    private sealed class DeafServer : IAsyncDisposable
    {
        private readonly TcpListener listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource stop = new();
        private readonly List<TcpClient> clients = [];
        private readonly Task accepting;

        public DeafServer()
        {
            // Small buffers on its side: what the client can push before it must wait is bounded.
            listener.Server.ReceiveBufferSize = 64 * 1024;
            listener.Start();
            accepting = AcceptAsync();
        }

        public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/hook");

        public int Connections
        {
            get
            {
                lock (clients)
                {
                    return clients.Count;
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            listener.Stop();
            await accepting;
            lock (clients)
            {
                clients.ForEach(c => c.Dispose());
            }

            stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var client = await listener.AcceptTcpClientAsync(stop.Token);
                    lock (clients)
                    {
                        clients.Add(client);
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // Stopped.
            }
        }
    }

    /// <summary>
    /// A TCP server on 127.0.0.1 that answers each request with a status line, a Content-Length
    /// and the first bytes of the body, then never sends the rest.
    /// </summary>
    private sealed class StalledBodyServer : IAsyncDisposable
    {
        private readonly TcpListener listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource stop = new();
        private readonly List<Task> connections = [];
        private readonly int status;
        private readonly Task accepting;
        private int requests;

        public StalledBodyServer(int status)
        {
            this.status = status;
            listener.Start();
            accepting = AcceptAsync();
        }

        public Uri Url => new($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/hook");

        public int Requests => Volatile.Read(ref requests);

        public async ValueTask DisposeAsync()
        {
            await stop.CancelAsync();
            listener.Stop();
            await accepting;
            Task[] open;
            lock (connections)
            {
                open = [.. connections];
            }

            await Task.WhenAll(open);
            stop.Dispose();
        }

        private async Task AcceptAsync()
        {
            try
            {
                while (true)
                {
                    var client = await listener.AcceptTcpClientAsync(stop.Token);
                    lock (connections)
                    {
                        connections.Add(ServeAsync(client));
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                // Stopped.
            }
        }

        private async Task ServeAsync(TcpClient client)
        {
            using (client)
            {
                try
                {
                    var stream = client.GetStream();
                    var head = new StringBuilder();
                    var buffer = new byte[16 * 1024];
                    while (!head.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
                    {
                        var read = await stream.ReadAsync(buffer, stop.Token);
                        if (read == 0)
                        {
                            return;
                        }

                        head.Append(Encoding.Latin1.GetString(buffer, 0, read));
                    }

                    Interlocked.Increment(ref requests);
                    var response = $"HTTP/1.1 {status} Whatever\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nthe first bytes of a body";
                    await stream.WriteAsync(Encoding.ASCII.GetBytes(response), stop.Token);
                    await stream.FlushAsync(stop.Token);

                    // Hold the connection until the client hangs up.
                    while (await stream.ReadAsync(buffer, stop.Token) > 0)
                    {
                    }
                }
                catch (Exception e) when (e is IOException or OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    // The client hung up, or the test is over.
                }
            }
        }
    }
}
