using System.Net;
using System.Net.Http.Headers;
using DynamicWorkers.IntegrationTests.Support;
using OpenQA.Selenium;

namespace DynamicWorkers.IntegrationTests.Standalone;

/// <summary>
/// Standalone with <c>Http:ApiToken</c> set, its dashboard in a real headless Chromium: the page asks for the token,
/// takes it once from its <c>#token=</c> fragment and sends it with every API call.
/// </summary>
public sealed class DashboardTokenTests : IAsyncLifetime
{
    const string Token = "dashboard-test-token-0123456789";

    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    readonly string _dataHome = Directory.CreateTempSubdirectory("dw-standalone-token-").FullName;
    ServiceProcess _standalone = null!;

    public async Task InitializeAsync()
    {
        _standalone =
            ServiceProcess.Start("Standalone", [new("XDG_DATA_HOME", _dataHome), new("Http:ApiToken", Token)]);
        await _standalone.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
    }

    public async Task DisposeAsync()
    {
        await _standalone.DisposeAsync();
        Directory.Delete(_dataHome, recursive: true);
    }

    static string Status(IJavaScriptExecutor browser)
        => browser.ExecuteScript("return document.getElementById('status').textContent;") as string ?? "";

    [Fact]
    public async Task The_dashboard_asks_for_the_token_then_takes_it_once_from_its_fragment()
    {
        var pools = new Uri(_standalone.HttpAddress, "/api/pools");
        Assert.Equal(HttpStatusCode.Unauthorized, (await Http.GetAsync(pools)).StatusCode);
        using (var authorized = new HttpRequestMessage(HttpMethod.Get,
            pools) { Headers = { Authorization = new AuthenticationHeaderValue("Bearer", Token) } })
        {
            Assert.Equal(HttpStatusCode.OK, (await Http.SendAsync(authorized)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized,
            (await Http.GetAsync(new Uri(_standalone.HttpAddress, "/api/history"))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(new Uri(_standalone.HttpAddress, "/readyz"))).StatusCode);

        using var browser = StandaloneDemoTests.StartChromium();
        browser.Navigate().GoToUrl(_standalone.HttpAddress);
        await Eventually.True(
            () => Status(browser).Contains("needs its token", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30),
            "the page to say it needs the token",
            () => Status(browser));
        Assert.Empty(browser.FindElements(By.CssSelector("#pools .pool")));

        // Through a blank page: a fragment-only change of the same URL would not load the page again.
        browser.Navigate().GoToUrl("about:blank");
        browser.Navigate().GoToUrl(new Uri(_standalone.HttpAddress, "/#token=" + Token));
        await Eventually.True(
            () => browser.FindElements(By.CssSelector("#pools .pool[data-pool='ubuntu-22.04']")).Count == 1,
            TimeSpan.FromSeconds(30),
            "the ubuntu-22.04 pool card once the token is given",
            () => Status(browser));
        Assert.Equal("", browser.ExecuteScript("return location.hash;"));

        // A reload has no fragment any more: the tab's sessionStorage still has the token.
        browser.Navigate().Refresh();
        await Eventually.True(
            () => Status(browser).StartsWith("updated", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30),
            "the reloaded page to read the API",
            () => Status(browser));
    }
}
