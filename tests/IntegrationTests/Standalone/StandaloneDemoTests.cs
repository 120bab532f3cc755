using System.Net;
using System.Text.Json;
using DynamicWorkers.IntegrationTests.Support;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using Xunit.Abstractions;

namespace DynamicWorkers.IntegrationTests.Standalone;

/// <summary>
/// The README's first command, <c>Standalone --demo</c>, as a newcomer runs it: nothing but the built app (its
/// SQLite file under a fresh data directory), the dashboard watched in a real headless Chromium, and
/// <c>/metrics</c> read afterwards.
/// </summary>
public sealed class StandaloneDemoTests(ITestOutputHelper output) : IAsyncLifetime
{
    const string ChartPool = "#pools .pool[data-pool='ubuntu-22.04']";

    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>
    /// Reads a value inside the page, in one step: the dashboard re-renders as it polls, so an element found a moment
    /// earlier may be gone by the time its text is read (a StaleElementReferenceException failed a clean-clone run).
    /// </summary>
    static string? InPage(IJavaScriptExecutor browser, string expression)
        => browser.ExecuteScript($"return {expression};") as string;

    readonly string _dataHome = Directory.CreateTempSubdirectory("dw-standalone-").FullName;
    ServiceProcess _standalone = null!;

    public async Task InitializeAsync()
    {
        // LocalApplicationData is $XDG_DATA_HOME on Linux: the demo's database lands in this test's own directory.
        _standalone = ServiceProcess.Start("Standalone", [new("XDG_DATA_HOME", _dataHome)], "--demo");
        await _standalone.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
    }

    public async Task DisposeAsync()
    {
        await _standalone.DisposeAsync();
        Directory.Delete(_dataHome, recursive: true);
    }

    [Fact]
    public async Task The_dashboard_shows_pools_and_leases_as_they_change_and_metrics_show_the_grant_paths_and_idle_reaping()
    {
        Assert.Contains($"Dashboard: {_standalone.HttpAddress}", _standalone.Output);
        Assert.True(File.Exists(Path.Combine(_dataHome, "dynamic-workers", "dynamic-workers-demo.db")),
            "the demo database is under the user's data directory");

        using var browser = StartChromium();
        browser.Navigate().GoToUrl(_standalone.HttpAddress);

        await Eventually.True(
            () => browser.FindElements(By.CssSelector("#pools .pool[data-pool='ubuntu-22.04'] [data-count='hot']"))
                .Count == 1,
            TimeSpan.FromSeconds(30),
            "the ubuntu-22.04 pool card",
            () => browser.PageSource);
        // Trusting workers have their own column: hot means Ready (trusting no one), leased means Leased.
        foreach (var column in new[] { "trusting", "leased", "idle", "provisioning", "waiting" })
        {
            Assert.Single(browser.FindElements(
                By.CssSelector($"#pools .pool[data-pool='ubuntu-22.04'] [data-count='{column}']")));
        }

        await Eventually.True(
            () => browser.FindElements(By.CssSelector("#leases tr[data-lease-id][data-state='Granted']")).Count > 0,
            TimeSpan.FromSeconds(60),
            "a granted lease in the dashboard",
            () => browser.PageSource + "\n" + _standalone.Output);

        // The page polls: the same page, never reloaded, later shows that lease released and a worker serving the
        // instance.
        var leaseId = InPage(browser, "document.querySelector(\"#leases "
            + "tr[data-lease-id][data-state='Granted']\")?.getAttribute('data-lease-id')");
        await Eventually.True(
            () => browser.FindElements(By.CssSelector($"#leases tr[data-lease-id='{leaseId}'][data-state='Released']"))
                .Count == 1,
            TimeSpan.FromSeconds(60),
            $"lease {leaseId} shown released without a reload",
            () => browser.PageSource);
        Assert.NotEmpty(browser.FindElements(By.CssSelector("#workers tr[data-worker-id]")));
        // Sequential worker ids share their first characters: each row shows a part that tells it apart, the whole id
        // on hover.
        var shown = browser.FindElements(By.CssSelector("#workers tr[data-worker-id] td.id:first-child"))
            .Select(cell => (Text: cell.Text, Id: cell.GetAttribute("title") ?? "")).ToList();
        Assert.Equal(shown.Count, shown.Select(c => c.Text).Distinct().Count());
        Assert.All(shown, c => Assert.True(c.Text.Length is > 4
            and < 16 && c.Id.EndsWith(c.Text[^4..], StringComparison.Ordinal), $"{c.Text} for {c.Id}"));

        // globex's four at once drain the hot pool: the card shows leases waiting while new VMs are provisioned.
        await Eventually.True(
            () => int.TryParse(InPage(browser, "document.querySelector(\"#pools .pool[data-pool='ubuntu-22.04'] "
                + "[data-count='waiting']\")?.textContent"), out var n) && n > 0,
            TimeSpan.FromSeconds(60),
            "waiting leases on the ubuntu-22.04 card",
            () => browser.PageSource + "\n" + _standalone.Output);

        // A hot grant, a re-use and cold grants after the burst drained the hot pool.
        await Eventually.True(
            async () =>
            {
                var metrics = await Http.GetStringAsync(new Uri(_standalone.HttpAddress, "/metrics"));
                return new[] { "hot", "reuse", "cold" }.All(path =>
                    metrics.Contains($"dw_lease_wait_seconds_count{{otel_scope_name=\"DynamicWorkers\",path=\"{path}\","
                        + $"pool=\"ubuntu-22.04\"}}", StringComparison.Ordinal));
            },
            TimeSpan.FromSeconds(90),
            "dw_lease_wait_seconds with path hot, reuse and cold",
            () => _standalone.Output);
        // The demo logs these after their answers, which a busy machine may deliver after the cold grants above.
        await Eventually.True(
            () => _standalone.Output.Contains("same answer", StringComparison.Ordinal)
                && _standalone.Output.Contains("initech was refused: InvalidRequest", StringComparison.Ordinal),
            TimeSpan.FromSeconds(60),
            "the demo's repeated request answered the same and its malformed one refused",
            () => _standalone.Output);

        // The pool card's charts fill from /api/history: each grant path's minutes, and the level sampled every 15 s.
        await Eventually.True(
            () => new[] { "hot", "reuse",
                "cold" }.All(path => Points(browser, $"[data-chart='wait'] circle[data-series='{path} p95']") > 0)
                && Points(browser, "[data-chart='workers'] circle[data-series='leased']") >= 2
                && Points(browser, "[data-chart='workers'] circle[data-series='waiting leases']") >= 2,
            TimeSpan.FromSeconds(60),
            "the time-to-lease chart with all three paths and two samples of the level chart",
            () => InPage(browser, $"document.querySelector(\"{ChartPool} .charts\")?.outerHTML") ?? browser.PageSource);
        Assert.Equal(
            Points(browser, "[data-chart='wait'] circle"),
            int.Parse(InPage(browser,
                $"document.querySelector(\"{ChartPool} [data-chart='wait']\").getAttribute('data-points')")!));
        Screenshot(browser, "dashboard.png");

        // The per-instance view: a click on an instance shows its leases and workers only, and its address says so.
        browser.ExecuteScript("document.querySelector(\"#leases a[data-instance='globex']\").click();");
        await Eventually.True(
            () => InPage(browser, "document.body.dataset.instance") == "globex"
                && Convert.ToInt64(
                    browser.ExecuteScript("return document.querySelectorAll('#leases tr[data-lease-id]').length;")) > 0
                && (bool)browser.ExecuteScript(
                    "return [...document.querySelectorAll('#leases tr[data-lease-id], #workers "
                        + "tr[data-worker-id]')].every(r => r.dataset.instanceId === 'globex');")!,
            TimeSpan.FromSeconds(30),
            "only globex's leases and workers",
            () => InPage(browser,
                "document.getElementById('leases').innerHTML + document.getElementById('workers').innerHTML") ?? "");
        Assert.Equal("?instance=globex", InPage(browser, "location.search"));
        Assert.Equal("globex", InPage(browser, "document.getElementById('instance-name').textContent"));
        Screenshot(browser, "dashboard-instance.png");
        browser.ExecuteScript("document.getElementById('all-instances').click();");
        await Eventually.True(
            () => (bool)browser.ExecuteScript("return [...document.querySelectorAll('#leases "
                + "tr[data-lease-id]')].some(r => r.dataset.instanceId !== 'globex');")!,
            TimeSpan.FromSeconds(30),
            "every instance's leases again",
            () => InPage(browser, "document.getElementById('leases').innerHTML") ?? "");

        // In the first burst globex holds one idle worker and the hot pool two at most: a lease waited for a new VM.
        var burst = new List<JsonElement>();
        await Eventually.True(
            async () =>
            {
                using var leases = JsonDocument.Parse(await Http.GetStringAsync(
                    new Uri(_standalone.HttpAddress, "/api/leases?instanceId=globex&limit=500")));
                burst = leases.RootElement.EnumerateArray()
                    .Where(l => l.GetProperty("taskId").GetString()!.StartsWith("release-1-", StringComparison.Ordinal)
                        && l.GetProperty("grantedAt").ValueKind == JsonValueKind.String)
                    .Select(l => l.Clone())
                    .ToList();
                return burst.Count == 4;
            },
            TimeSpan.FromSeconds(60),
            "globex's four burst leases granted",
            () => string.Join("\n", burst));
        Assert.True(burst.Count(l => l.GetProperty("waited").GetBoolean()) >= 1,
            $"no cold grant in globex's first burst:\n{string.Join("\n", burst)}");

        // The demo's 20 s idle timeout deletes the idle workers, and the time they idled is counted.
        var exposition = "";
        await Eventually.True(
            async () => (exposition = await Http.GetStringAsync(new Uri(_standalone.HttpAddress, "/metrics")))
                .Contains("dw_workers_reaped_total{otel_scope_name=\"DynamicWorkers\",reason=\"idle\"}",
                    StringComparison.Ordinal),
            TimeSpan.FromSeconds(60),
            "dw_workers_reaped_total with reason idle",
            () => _standalone.Output);
        Assert.Matches(
            @"dw_worker_idle_seconds_total\{otel_scope_name=""DynamicWorkers"",pool=""ubuntu-22\.04""\} [1-9]",
            exposition);
        Assert.Contains("is deprovisioned (idle: idle timeout)", _standalone.Output);

        // The second round rolls the pool out to another image: the card shows it, and no worker is left on the old
        // one.
        const string rolledOut = "Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:22.04.202612070";
        await Eventually.True(
            () => InPage(browser,
                "document.querySelector(\"#pools .pool[data-pool='ubuntu-22.04'] .image\")?.textContent") == rolledOut
                  && browser.FindElements(By.CssSelector("#pools .pool[data-pool='ubuntu-22.04'] [data-rollout]"))
                      .Count == 0,
            TimeSpan.FromSeconds(120),
            "the ubuntu-22.04 card on the new image with no worker on an older one",
            () => browser.PageSource + "\n" + _standalone.Output);
        await Eventually.True(
            async () => (await Http.GetStringAsync(new Uri(_standalone.HttpAddress, "/metrics")))
                .Contains("dw_workers_reaped_total{otel_scope_name=\"DynamicWorkers\",reason=\"image\"}",
                    StringComparison.Ordinal),
            TimeSpan.FromSeconds(30),
            "dw_workers_reaped_total with reason image",
            () => _standalone.Output);

        // Standalone's own readiness: its in-memory bus and its SQLite file.
        await Readiness.AssertBothHealthyAsync(_standalone.HttpAddress);
    }

    static int Points(IJavaScriptExecutor browser, string selector)
        => Convert.ToInt32(
            browser.ExecuteScript($"return document.querySelectorAll(\"{ChartPool} {selector}\").length;"));

    /// <summary>Saves the page under TestResults beside the test assembly, the whole page tall, and prints
    /// where.</summary>
    void Screenshot(ChromeDriver browser, string name)
    {
        var directory = Directory.CreateDirectory(Path.Combine(AppContext.BaseDirectory, "TestResults")).FullName;
        var height = Convert.ToInt32(browser.ExecuteScript("return document.documentElement.scrollHeight;"));
        browser.Manage().Window.Size = new System.Drawing.Size(1400, Math.Clamp(height + 120, 800, 4000));
        var path = Path.Combine(directory, name);
        browser.GetScreenshot().SaveAsFile(path);
        output.WriteLine($"dashboard screenshot: {path}");
    }

    internal static ChromeDriver StartChromium()
    {
        // Debian's chromium and chromedriver (scripts/test.sh installs them); never a downloaded driver.
        var service = ChromeDriverService.CreateDefaultService("/usr/bin", "chromedriver");
        service.HideCommandPromptWindow = true;
        service.SuppressInitialDiagnosticInformation = true;
        var options = new ChromeOptions { BinaryLocation = "/usr/bin/chromium" };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu");
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }
}
