using System.Net;
using System.Net.Http.Headers;
using PuppeteerSharp;
using TriggerEvents.LocalServer;
using TriggerEvents.Postgres;
using TriggerEvents.Testing;

namespace TriggerEvents.Cli.Tests;

/// <summary>
/// The web console in a real headless Chromium: the published executable serves it, as the
/// worker's least-privilege role, over a real database with a worker delivering to a real
/// receiver. Screenshots of the pages are attached to the tests and kept, the latest run's only,
/// in artifacts/test-results/console-screenshots/ (<see cref="TestArtifacts"/>).
/// </summary>
[NonParallelizable]
public sealed class ConsoleBrowserTests
{
    private IBrowser browser = null!;
    private string screenshots = null!;

    /// <summary>Debian's Chromium (scripts/ensure-chromium.sh), or CHROMIUM_PATH: nothing downloads a browser.</summary>
    private static string ChromiumPath =>
        Environment.GetEnvironmentVariable("CHROMIUM_PATH") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    [OneTimeSetUp]
    public async Task LaunchBrowser()
    {
        if (!File.Exists(ChromiumPath))
        {
            Assert.Fail($"No Chromium at {ChromiumPath}: run scripts/ensure-chromium.sh (scripts/test.sh does).");
        }

        screenshots = TestArtifacts.EmptyDirectory("console-screenshots");

        browser = await Puppeteer.LaunchAsync(new LaunchOptions
        {
            Headless = true,
            ExecutablePath = ChromiumPath,
            // Containers run the tests as root, where Chromium's sandbox cannot start.
            Args = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
        });
    }

    [OneTimeTearDown]
    public async Task CloseBrowser() => await browser.DisposeAsync();

    [Test]
    public async Task Every_page_renders_real_data()
    {
        await using var scene = await Scene.StartAsync();
        scene.Receiver.Respond = r => r.EventId == 2 && r.Path == "/hook" ? new ReceiverResponse(410) : ReceiverResponse.Ok;
        await scene.Database.ExecuteAsync("""
            BEGIN;
            SET LOCAL trigger_events.session = '{"x-user-id": "42"}';
            SET LOCAL trigger_events.traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
            INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 5) g;
            COMMIT;
            """);
        await scene.WaitForStatusAsync(2, "dead");
        await scene.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/hook").Count == 4 && r.DeliveredEventIds("/other").Count == 5, TimeSpan.FromSeconds(30), "the deliveries");
        await using var console = await ConsoleProcess.StartAsync(scene.Database, environment: new() { ["TRIGGER_EVENTS_TRACE_URL"] = "https://traces.example/trace/{trace_id}" });
        await using var page = await NewPageAsync();

        await page.GoToAsync(console.Url);
        await WaitForAsync(page, "document.querySelector(\"tr[data-subscription='hook'] td.state\")?.innerText.includes('active')");
        var overview = await TextAsync(page);
        await ScreenshotAsync(page, "overview");
        await page.GoToAsync(console.Url + "#/s/hook");
        await WaitForAsync(page, "document.querySelectorAll('#deliveries tr[data-event]').length === 5");
        var deliveries = await TextAsync(page);
        await ScreenshotAsync(page, "subscription");
        await page.GoToAsync(console.Url + "#/s/hook?status=dead");
        await WaitForAsync(page, "document.querySelectorAll('#deliveries tr[data-event]').length === 1");
        await page.GoToAsync(console.Url + "#/e/2");
        await WaitForAsync(page, "document.querySelector('#event') && document.querySelector('#event').innerText.includes('msg_hook_2')");
        var eventText = await TextAsync(page);
        var traceLink = await page.EvaluateExpressionAsync<string>("document.querySelector('#trace-link').href");
        await ScreenshotAsync(page, "event");
        await page.GoToAsync(console.Url + "#/dead");
        await WaitForAsync(page, "document.querySelectorAll('#dead tr[data-event]').length === 1");
        var dead = await TextAsync(page);
        await ScreenshotAsync(page, "dead-letters");
        await page.GoToAsync(console.Url + "#/triggers");
        await WaitForAsync(page, "document.querySelectorAll('#triggers tr[data-trigger]').length === 1");
        var triggers = await TextAsync(page);
        await ScreenshotAsync(page, "triggers");

        Assert.That(overview, Does.Contain("hook").And.Contain("orders_changed").And.Contain("default"));
        Assert.That(deliveries, Does.Contain("msg_hook_5").And.Contain("delivered").And.Contain("dead").And.Contain("public.orders"));
        Assert.That(eventText, Does.Contain("orders_changed").And.Contain("public.orders").And.Contain("INSERT")
            .And.Contain("\"x-user-id\": \"42\"").And.Contain("\"status\": \"new\"").And.Contain("410").And.Contain("msg_hook_2"));
        Assert.That(traceLink, Is.EqualTo("https://traces.example/trace/4bf92f3577b34da6a3ce929d0e0e4736"));
        Assert.That(dead, Does.Contain("hook").And.Contain("410"));
        Assert.That(triggers, Does.Contain("orders_changed").And.Contain("public.orders").And.Contain("ok"));
    }

    [Test]
    public async Task A_dead_letter_retried_from_the_page_is_delivered_by_the_worker()
    {
        await using var scene = await Scene.StartAsync();
        // The first request for event 1 is answered 410 (dead at once); the retry is accepted.
        scene.Receiver.Respond = r => r.Path == "/hook" && r.Attempt == 1 ? new ReceiverResponse(410) : ReceiverResponse.Ok;
        await scene.Database.ExecuteAsync("INSERT INTO orders VALUES (1, 'new')");
        await scene.WaitForStatusAsync(1, "dead");
        await using var console = await ConsoleProcess.StartAsync(scene.Database);
        await using var page = await NewPageAsync();

        await page.GoToAsync(console.Url + "#/dead");
        await WaitForAsync(page, "document.querySelectorAll('#dead tr[data-event] button[data-action=retry]').length === 1");
        await ClickRowButtonAsync(page, "#dead tr[data-event='1'] button[data-action=retry]");
        await scene.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/hook").Contains(1), TimeSpan.FromSeconds(30), "event 1 delivered after the retry");
        await scene.WaitForStatusAsync(1, "delivered");
        await WaitForAsync(page, "document.querySelector('#dead td.empty') !== null");
        await ScreenshotAsync(page, "dead-letters-after-retry");
    }

    [Test]
    public async Task A_purge_from_the_page_asks_first_and_deletes_only_when_confirmed()
    {
        await using var scene = await Scene.StartAsync();
        scene.Receiver.Respond = r => r.Path == "/hook" ? new ReceiverResponse(410) : ReceiverResponse.Ok;
        await scene.Database.ExecuteAsync("INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 2) g");
        await scene.WaitForStatusAsync(1, "dead");
        await scene.WaitForStatusAsync(2, "dead");
        await using var console = await ConsoleProcess.StartAsync(scene.Database);
        await using var page = await NewPageAsync();
        var questions = new List<string>();
        var answer = false;
        page.Dialog += async (_, e) =>
        {
            questions.Add(e.Dialog.Message);
            await (answer ? e.Dialog.Accept() : e.Dialog.Dismiss());
        };

        await page.GoToAsync(console.Url + "#/dead");
        await WaitForAsync(page, "document.querySelectorAll('#dead tr[data-event]').length === 2");
        await ClickRowButtonAsync(page, "#dead tr[data-event='1'] button[data-action=purge]");
        var afterDismiss = await scene.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.deliveries WHERE status = 'dead'");
        answer = true;
        await ClickRowButtonAsync(page, "#dead tr[data-event='1'] button[data-action=purge]");
        await WaitForAsync(page, "document.querySelectorAll('#dead tr[data-event]').length === 1");

        Assert.That(questions, Has.Count.EqualTo(2));
        Assert.That(questions[0], Does.Contain("Purge the dead letter of event 1 for hook"));
        Assert.That(afterDismiss, Is.EqualTo(2), "dismissed: nothing purged");
        Assert.That(await scene.Database.ScalarAsync<long>(
            "SELECT d.event_id FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = 'hook' AND d.status = 'dead'"), Is.EqualTo(2));
        Assert.That(await scene.Database.ScalarAsync<long>("SELECT count(*) FROM trigger_events.event_log"), Is.EqualTo(2), "the events stay in the log");
    }

    [Test]
    public async Task A_pause_from_the_page_of_a_workers_console_stops_deliveries_until_resumed()
    {
        // The worker serves the console itself here (worker.console_port).
        var consolePort = Loopback.FreePort();
        await using var scene = await Scene.StartAsync(consolePort);
        await scene.Database.ExecuteAsync("INSERT INTO orders VALUES (1, 'new')");
        await scene.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/hook").Contains(1) && r.DeliveredEventIds("/other").Contains(1), TimeSpan.FromSeconds(30), "event 1 to both");
        await using var page = await NewPageAsync();
        page.Dialog += async (_, e) => await e.Dialog.Accept("receiver maintenance");

        await page.GoToAsync($"http://127.0.0.1:{consolePort}/");
        await WaitForAsync(page, "document.querySelector(\"tr[data-subscription='hook'] button[data-action=pause]\") !== null");
        await ClickRowButtonAsync(page, "tr[data-subscription='hook'] button[data-action=pause]");
        await WaitForAsync(page, "document.querySelector(\"tr[data-subscription='hook'] td.state\").innerText.includes('receiver maintenance')");
        await ScreenshotAsync(page, "overview-paused");
        await scene.Database.ExecuteAsync("INSERT INTO orders SELECT g, 'new' FROM generate_series(2, 4) g");
        // The other subscription of the same trigger receives the new events: the worker ran past
        // them, and the paused one got none.
        await scene.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/other").Count == 4, TimeSpan.FromSeconds(30), "events 2-4 to the other subscription");
        var hookWhilePaused = scene.Receiver.DeliveredEventIds("/hook");
        await WaitForAsync(page, "document.querySelector(\"tr[data-subscription='hook'] td.backlog\").innerText === '3'");
        await ClickRowButtonAsync(page, "tr[data-subscription='hook'] button[data-action=resume]");
        await scene.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/hook").Count == 4, TimeSpan.FromSeconds(30), "events 2-4 to hook after resume");

        var exit = await scene.Worker.TerminateAsync();

        Assert.That(hookWhilePaused, Is.EqualTo(new[] { 1L }));
        Assert.That(exit, Is.Zero, "SIGTERM stops the worker and its console");
        Assert.That(await scene.Database.ScalarAsync<string>("SELECT paused_reason FROM trigger_events.subscriptions WHERE name = 'hook'"), Is.Null);
    }

    [Test]
    public async Task A_replay_of_a_time_range_from_the_page_delivers_its_events_again()
    {
        await using var scene = await Scene.StartAsync();
        await scene.Database.ExecuteAsync("INSERT INTO orders SELECT g, 'new' FROM generate_series(1, 3) g");
        await scene.Receiver.WaitUntilAsync(r => r.DeliveredEventIds("/hook").Count == 3, TimeSpan.FromSeconds(30), "3 deliveries");
        await using var console = await ConsoleProcess.StartAsync(scene.Database);
        await using var page = await NewPageAsync();
        page.Dialog += async (_, e) => await e.Dialog.Accept();

        await page.GoToAsync(console.Url + "#/s/hook");
        await WaitForAsync(page, "document.querySelectorAll('#deliveries tr[data-event]').length === 3");
        // A range that holds every event (local time in the browser, as a person picks it).
        await page.EvaluateExpressionAsync("document.getElementById('replay-since').value = '2000-01-01T00:00:00'");
        await page.ClickAsync("#replay-run");
        await WaitForAsync(page, "document.getElementById('flash').innerText.includes('3 events')");
        await scene.Receiver.WaitUntilAsync(
            r => r.Requests.Count(q => q.Path == "/hook" && q.Succeeded) == 6, TimeSpan.FromSeconds(30), "the 3 events again");

        Assert.That(scene.Receiver.Requests.Where(q => q.Path == "/hook" && q.Attempt == 2).Select(q => q.EventId), Is.EquivalentTo(new long?[] { 1, 2, 3 }));
        Assert.That(scene.Receiver.Requests.Count(q => q.Path == "/other"), Is.EqualTo(3), "only the subscription replayed to");
    }

    [Test]
    public async Task Read_only_shows_no_action_and_the_api_refuses_them()
    {
        await using var scene = await Scene.StartAsync();
        scene.Receiver.Respond = r => r.Path == "/hook" ? new ReceiverResponse(410) : ReceiverResponse.Ok;
        await scene.Database.ExecuteAsync("INSERT INTO orders VALUES (1, 'new')");
        await scene.WaitForStatusAsync(1, "dead");
        await using var console = await ConsoleProcess.StartAsync(scene.Database, "--read-only");
        await using var page = await NewPageAsync();
        using var client = new HttpClient();

        var buttons = new List<int>();
        foreach (var (view, rendered) in new[] { ("#/", "#overview table"), ("#/s/hook", "#deliveries table"), ("#/e/1", "#event table"), ("#/dead", "#dead table"), ("#/triggers", "#triggers table") })
        {
            await page.GoToAsync(console.Url + view);
            await WaitForAsync(page, $"document.querySelector('{rendered}') !== null");
            buttons.Add(await page.EvaluateExpressionAsync<int>("document.querySelectorAll('button[data-action], #replay, #retry-all, #purge-all').length"));
        }

        await ScreenshotAsync(page, "read-only-triggers");
        var refused = new List<HttpStatusCode>();
        foreach (var action in new[] { "/api/subscriptions/hook/pause", "/api/subscriptions/hook/resume", "/api/dead/retry", "/api/dead/purge", "/api/subscriptions/hook/replay" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, console.Url + action.TrimStart('/')) { Content = new StringContent("{\"confirm\": true, \"since\": \"2020-01-01T00:00:00Z\"}") };
            request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            request.Headers.Add("X-TriggerEvents-Console", "1");
            using var response = await client.SendAsync(request);
            refused.Add(response.StatusCode);
        }

        Assert.That(buttons, Is.All.Zero);
        Assert.That(refused, Is.All.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(await scene.Database.ScalarAsync<string>("SELECT d.status::text FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = 'hook'"), Is.EqualTo("dead"));
        Assert.That(await scene.Database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'hook'"), Is.True);
    }

    [Test]
    public async Task Off_loopback_the_console_needs_a_token_and_then_a_sign_in()
    {
        await using var database = await TestDatabase.CreateAsync();
        var port = Loopback.FreePort();
        var refused = await new Cli(database.WorkerConnectionString).RunWithAsync(
            new Dictionary<string, string?> { ["TRIGGER_EVENTS_CONSOLE_TOKEN"] = "" }, "console", "--listen", $"0.0.0.0:{port}");
        const string token = "s3cret-console-token";
        await using var console = await ConsoleProcess.StartAsync(database, $"--listen=0.0.0.0:{port}", token: token);
        using var client = new HttpClient();
        using var anonymous = await client.GetAsync(console.Url + "api/overview");
        using var wrongBearer = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, console.Url + "api/overview") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", "wrong") } });
        using var bearer = await client.SendAsync(new HttpRequestMessage(HttpMethod.Get, console.Url + "api/overview") { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", token) } });
        await using var page = await NewPageAsync();

        await page.GoToAsync(console.Url);
        var signInUrl = page.Url;
        await ScreenshotAsync(page, "sign-in");
        await page.TypeAsync("#token", "not the token");
        await Task.WhenAll(page.WaitForNavigationAsync(), page.ClickAsync("#signin"));
        var failedShown = await page.EvaluateExpressionAsync<bool>("!document.getElementById('failed').hidden");
        await page.TypeAsync("#token", token);
        await Task.WhenAll(page.WaitForNavigationAsync(), page.ClickAsync("#signin"));
        await WaitForAsync(page, "document.getElementById('live').innerText.startsWith('live')");
        var cookies = await page.GetCookiesAsync();

        Assert.That(refused.ExitCode, Is.EqualTo(2), refused.ToString());
        Assert.That(refused.Error.Trim().Split('\n'), Has.Length.EqualTo(1), refused.ToString());
        Assert.That(refused.Error, Does.Contain("TRIGGER_EVENTS_CONSOLE_TOKEN").And.Contain("not a loopback address"));
        Assert.That(anonymous.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(wrongBearer.StatusCode, Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(bearer.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(signInUrl, Does.EndWith("/signin"));
        Assert.That(failedShown, Is.True);
        Assert.That(page.Url, Is.EqualTo(console.Url));
        var session = cookies.Single(c => c.Name == "triggerevents_console");
        Assert.That(session.HttpOnly, Is.True);
        Assert.That(session.SameSite, Is.EqualTo(SameSite.Strict));
        Assert.That(session.Value, Does.Not.Contain(token));
    }

    [Test]
    public async Task An_action_without_the_consoles_header_or_from_another_origin_is_refused()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var console = await ConsoleProcess.StartAsync(database);
        using var client = new HttpClient();

        using var withoutHeader = await client.PostAsync(console.Url + "api/dead/retry", new StringContent("{}"));
        using var crossSite = new HttpRequestMessage(HttpMethod.Post, console.Url + "api/dead/retry") { Content = new StringContent("{}") };
        crossSite.Headers.Add("X-TriggerEvents-Console", "1");
        crossSite.Headers.Add("Origin", "https://attacker.example");
        using var fromElsewhere = await client.SendAsync(crossSite);
        using var sameSite = new HttpRequestMessage(HttpMethod.Post, console.Url + "api/dead/retry") { Content = new StringContent("{}") };
        sameSite.Headers.Add("X-TriggerEvents-Console", "1");
        sameSite.Headers.Add("Origin", console.Url.TrimEnd('/'));
        using var fromConsole = await client.SendAsync(sameSite);

        Assert.That(withoutHeader.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(fromElsewhere.StatusCode, Is.EqualTo(HttpStatusCode.Forbidden));
        Assert.That(fromConsole.StatusCode, Is.EqualTo(HttpStatusCode.OK), await fromConsole.Content.ReadAsStringAsync());
    }

    [Test]
    public async Task A_console_without_a_token_answers_only_to_loopback_names_so_a_rebound_name_reads_and_does_nothing()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name) VALUES ('hook', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1)");
        await using var console = await ConsoleProcess.StartAsync(database);
        var port = new Uri(console.Url).Port;
        using var client = new HttpClient();

        // A page of attacker.example whose name now resolves to 127.0.0.1: its requests reach the
        // console with its own name as Host, and as Origin (the browser sees one origin).
        async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string host)
        {
            using var request = new HttpRequestMessage(method, console.Url + path);
            request.Headers.Host = $"{host}:{port}";
            if (method == HttpMethod.Post)
            {
                request.Content = new StringContent("""{"reason":"rebound"}""");
                request.Headers.Add("X-TriggerEvents-Console", "1");
                request.Headers.Add("Origin", $"http://{host}:{port}");
            }

            return await client.SendAsync(request);
        }

        using var readRebound = await SendAsync(HttpMethod.Get, "api/events/1", "attacker.example");
        using var pauseRebound = await SendAsync(HttpMethod.Post, "api/subscriptions/hook/pause", "attacker.example");
        using var pageRebound = await SendAsync(HttpMethod.Get, "", "attacker.example");
        var stateAfterRebound = await database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'hook'");
        using var readLocalhost = await SendAsync(HttpMethod.Get, "api/events/1", "localhost");
        using var readIpv6 = await SendAsync(HttpMethod.Get, "api/events/1", "[::1]");
        using var pauseLoopback = await SendAsync(HttpMethod.Post, "api/subscriptions/hook/pause", "127.0.0.1");

        Assert.That(readRebound.StatusCode, Is.EqualTo(HttpStatusCode.MisdirectedRequest));
        Assert.That(await readRebound.Content.ReadAsStringAsync(), Does.Contain("TRIGGER_EVENTS_CONSOLE_TOKEN").And.Not.Contain("orders"));
        Assert.That(pauseRebound.StatusCode, Is.EqualTo(HttpStatusCode.MisdirectedRequest));
        Assert.That(pageRebound.StatusCode, Is.EqualTo(HttpStatusCode.MisdirectedRequest));
        Assert.That(stateAfterRebound, Is.True, "the rebound page paused nothing");
        Assert.That(readLocalhost.StatusCode, Is.EqualTo(HttpStatusCode.OK), await readLocalhost.Content.ReadAsStringAsync());
        Assert.That(await readLocalhost.Content.ReadAsStringAsync(), Does.Contain("orders"));
        Assert.That(readIpv6.StatusCode, Is.EqualTo(HttpStatusCode.OK));
        Assert.That(pauseLoopback.StatusCode, Is.EqualTo(HttpStatusCode.OK), await pauseLoopback.Content.ReadAsStringAsync());
        Assert.That(await database.ScalarAsync<bool>("SELECT enabled FROM trigger_events.subscriptions WHERE name = 'hook'"), Is.False);
    }

    [Test]
    public async Task A_console_with_a_token_answers_to_any_name_but_only_with_the_token()
    {
        await using var database = await TestDatabase.CreateAsync();
        const string token = "a-long-console-token-for-tests";
        await using var console = await ConsoleProcess.StartAsync(database, token: token);
        var port = new Uri(console.Url).Port;
        using var client = new HttpClient();

        async Task<HttpStatusCode> GetOverviewAsync(string? bearer)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, console.Url + "api/overview");
            request.Headers.Host = $"console.example:{port}";
            if (bearer is not null)
            {
                request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", bearer);
            }

            using var response = await client.SendAsync(request);
            return response.StatusCode;
        }

        Assert.That(await GetOverviewAsync(null), Is.EqualTo(HttpStatusCode.Unauthorized));
        Assert.That(await GetOverviewAsync(token), Is.EqualTo(HttpStatusCode.OK));
    }

    [Test]
    public async Task A_delivery_parked_behind_its_key_has_no_next_attempt_time_in_the_api()
    {
        await using var database = await TestDatabase.CreateAsync();
        await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, amount int)");
        await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
        await database.ExecuteAsync("INSERT INTO trigger_events.subscriptions (name, trigger_name, ordering_key) VALUES ('hook', 'orders_changed', '{}')");
        await database.ExecuteAsync("INSERT INTO orders VALUES (1, 0)");
        await database.ExecuteAsync("UPDATE orders SET amount = 1");
        // As a worker fans out: event 2 waits for event 1, parked.
        await database.ExecuteAsync("""
            BEGIN;
            SELECT set_config('trigger_events.park_waiting', 'on', true), trigger_events.fan_out();
            COMMIT;
            """);
        Assert.That(await database.ScalarAsync<bool>("SELECT next_attempt_at = 'infinity' FROM trigger_events.deliveries WHERE event_id = 2"), Is.True);
        await using var console = await ConsoleProcess.StartAsync(database);
        using var client = new HttpClient();

        using var deliveries = System.Text.Json.JsonDocument.Parse(await client.GetStringAsync(console.Url + "api/subscriptions/hook/deliveries"));
        using var parkedEvent = System.Text.Json.JsonDocument.Parse(await client.GetStringAsync(console.Url + "api/events/2"));

        var byEvent = deliveries.RootElement.GetProperty("deliveries").EnumerateArray().ToDictionary(d => d.GetProperty("event_id").GetInt64());
        Assert.That(byEvent[2].GetProperty("status").GetString(), Is.EqualTo("pending"));
        Assert.That(byEvent[2].GetProperty("next_attempt_at").ValueKind, Is.EqualTo(System.Text.Json.JsonValueKind.Null), "parked: no time yet");
        Assert.That(byEvent[1].GetProperty("next_attempt_at").GetDateTime().Year, Is.EqualTo(DateTime.UtcNow.Year), "due now");
        Assert.That(parkedEvent.RootElement.GetProperty("deliveries")[0].GetProperty("next_attempt_at").ValueKind, Is.EqualTo(System.Text.Json.JsonValueKind.Null));
    }

    [Test]
    public async Task The_api_answers_bad_requests_with_400_unknown_names_with_404_and_sends_a_strict_content_policy()
    {
        await using var database = await TestDatabase.CreateAsync();
        await using var console = await ConsoleProcess.StartAsync(database);
        using var client = new HttpClient();

        // (status, the error's text, or the body when it is not an error object)
        async Task<(HttpStatusCode Status, string Body)> GetAsync(string path)
        {
            using var response = await client.GetAsync(console.Url + path);
            var body = await response.Content.ReadAsStringAsync();
            if (body.StartsWith('{'))
            {
                using var json = System.Text.Json.JsonDocument.Parse(body);
                body = json.RootElement.TryGetProperty("error", out var error) ? error.GetString()! : body;
            }

            return (response.StatusCode, body);
        }

        var badStatus = await GetAsync("api/subscriptions/hook/deliveries?status=sent");
        var badId = await GetAsync("api/events/abc");
        var badTime = await GetAsync("api/subscriptions/hook/deliveries?since=yesterday");
        var noSubscription = await GetAsync("api/subscriptions/hook/deliveries");
        var noEvent = await GetAsync("api/events/42");
        var noAsset = await GetAsync("assets/nothing.js");
        using var index = await client.GetAsync(console.Url);
        using var purgeUnconfirmed = new HttpRequestMessage(HttpMethod.Post, console.Url + "api/dead/purge") { Content = new StringContent("{}") };
        purgeUnconfirmed.Headers.Add("X-TriggerEvents-Console", "1");
        using var purge = await client.SendAsync(purgeUnconfirmed);

        Assert.That(badStatus, Is.EqualTo((HttpStatusCode.BadRequest, "unknown delivery status 'sent': one of pending, in_flight, delivered, dead")));
        Assert.That(badId.Status, Is.EqualTo(HttpStatusCode.BadRequest), badId.Body);
        Assert.That(badTime.Body, Does.Contain("'since' must be an ISO time (2026-11-26T17:00:00Z) or an age"));
        Assert.That(noSubscription, Is.EqualTo((HttpStatusCode.NotFound, "no subscription named 'hook'")));
        Assert.That(noEvent.Status, Is.EqualTo(HttpStatusCode.NotFound), noEvent.Body);
        Assert.That(noAsset.Status, Is.EqualTo(HttpStatusCode.NotFound));
        Assert.That(index.Headers.GetValues("Content-Security-Policy").Single(), Does.Contain("default-src 'self'").And.Contain("frame-ancestors 'none'"));
        Assert.That(purge.StatusCode, Is.EqualTo(HttpStatusCode.BadRequest), "purge needs confirm");
    }

    private async Task<IPage> NewPageAsync()
    {
        var page = await browser.NewPageAsync();
        await page.SetViewportAsync(new ViewPortOptions { Width = 1360, Height = 760 });
        return page;
    }

    /// <summary>
    /// Clicks a button in a table the page re-renders every two seconds: a render between finding
    /// the button and clicking it detaches the node Puppeteer found (before any click is sent), so
    /// the click is tried again on the new one.
    /// </summary>
    private static async Task ClickRowButtonAsync(IPage page, string selector)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await page.ClickAsync(selector);
                return;
            }
            catch (PuppeteerException e) when (attempt < 5 && e.Message.Contains("not clickable", StringComparison.Ordinal))
            {
                await Task.Delay(100);
            }
        }
    }

    private static async Task WaitForAsync(IPage page, string condition)
    {
        try
        {
            await page.WaitForFunctionAsync($"() => {{ try {{ return {condition}; }} catch {{ return false; }} }}", new WaitForFunctionOptions { Timeout = 30_000, PollingInterval = 100 });
        }
        catch (WaitTaskTimeoutException e)
        {
            throw new TimeoutException($"Waited for {condition} on {page.Url}; the page says:\n{await TextAsync(page)}", e);
        }
    }

    private static Task<string> TextAsync(IPage page) => page.EvaluateExpressionAsync<string>("document.body.innerText");

    private async Task ScreenshotAsync(IPage page, string name)
    {
        var path = Path.Combine(screenshots, $"{name}.png");
        await page.ScreenshotAsync(path, new ScreenshotOptions { FullPage = true });
        TestContext.AddTestAttachment(path, $"console: {name}");
    }

    /// <summary>A database with an attached table, a receiver and a worker delivering to it (as the worker's role).</summary>
    private sealed class Scene : IAsyncDisposable
    {
        private readonly string configPath;

        private Scene(TestDatabase database, WebhookReceiver receiver, WorkerProcess worker, string configPath)
        {
            Database = database;
            Receiver = receiver;
            Worker = worker;
            this.configPath = configPath;
        }

        public TestDatabase Database { get; }

        public WebhookReceiver Receiver { get; }

        public WorkerProcess Worker { get; }

        public static async Task<Scene> StartAsync(int consolePort = 0)
        {
            var database = await TestDatabase.CreateAsync();
            await database.ExecuteAsync("CREATE TABLE orders (id int PRIMARY KEY, status text)");
            await database.ScalarAsync<string>("SELECT trigger_events.attach('orders', 'orders_changed')");
            var receiver = await WebhookReceiver.StartAsync();
            var httpPort = Loopback.FreePort();
            var path = Path.Combine(Path.GetTempPath(), $"{Guid.NewGuid():N}.yaml");
            await File.WriteAllTextAsync(path, $"""
                subscriptions:
                  - name: hook
                    trigger: orders_changed
                    start_from: earliest
                    webhook:
                      url: {receiver.Url()}
                    retry:
                      max_attempts: 1
                  - name: other
                    trigger: orders_changed
                    start_from: earliest
                    webhook:
                      url: {receiver.Url("/other")}
                worker:
                  http_port: {httpPort}
                  console_port: {consolePort}
                  poll_interval: 100ms
                """);
            var worker = WorkerProcess.Start(database.WorkerConnectionString, path, httpPort);
            await worker.WaitUntilReadyAsync();
            return new Scene(database, receiver, worker, path);
        }

        public async Task WaitForStatusAsync(long eventId, string status)
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (await Database.ScalarAsync<string?>(
                       "SELECT d.status::text FROM trigger_events.deliveries d JOIN trigger_events.subscriptions s ON s.id = d.subscription_id WHERE s.name = 'hook' AND d.event_id = $1",
                       eventId) != status)
            {
                try
                {
                    await Task.Delay(50, deadline.Token);
                }
                catch (OperationCanceledException)
                {
                    throw new TimeoutException($"event {eventId} to hook never became {status}:\n{Worker.Output}");
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Worker.DisposeAsync();
            await Receiver.DisposeAsync();
            await Database.DisposeAsync();
            File.Delete(configPath);
        }
    }

    /// <summary><c>triggerevents console</c> as a process, logged in as the worker's role.</summary>
    private sealed class ConsoleProcess : IAsyncDisposable
    {
        private readonly WorkerProcess process;

        private ConsoleProcess(WorkerProcess process, string url)
        {
            this.process = process;
            Url = url;
        }

        /// <summary>The console's root, ending in '/'.</summary>
        public string Url { get; }

        public static async Task<ConsoleProcess> StartAsync(
            TestDatabase database, string? argument = null, string? token = null, Dictionary<string, string?>? environment = null)
        {
            var port = Loopback.FreePort();
            var listen = argument ?? $"--listen=127.0.0.1:{port}";
            if (listen.StartsWith("--listen=", StringComparison.Ordinal))
            {
                port = int.Parse(listen[(listen.LastIndexOf(':') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
            }

            var env = new Dictionary<string, string?>(environment ?? [])
            {
                ["TRIGGER_EVENTS_DATABASE_URL"] = database.WorkerConnectionString,
                ["TRIGGER_EVENTS_LOG_FORMAT"] = "text",
                ["TRIGGER_EVENTS_CONSOLE_TOKEN"] = token,
            };
            string[] arguments = argument is null || argument.StartsWith("--listen=", StringComparison.Ordinal)
                ? ["console", listen]
                : ["console", $"--listen=127.0.0.1:{port}", argument];
            var process = WorkerProcess.StartCommand(env, arguments);
            var console = new ConsoleProcess(process, $"http://127.0.0.1:{port}/");
            using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            while (true)
            {
                if (process.HasExited)
                {
                    throw new InvalidOperationException($"The console exited ({process.ExitCode}):\n{process.Output}");
                }

                try
                {
                    using var response = await client.GetAsync(new Uri(console.Url + "signin"), deadline.Token);
                    return console;
                }
                catch (HttpRequestException)
                {
                    // Not listening yet.
                }

                await Task.Delay(50, deadline.Token);
            }
        }

        public ValueTask DisposeAsync() => process.DisposeAsync();
    }
}
