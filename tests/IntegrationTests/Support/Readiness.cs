using System.Net;
using System.Text.Json;

namespace DynamicWorkers.IntegrationTests.Support;

public static class Readiness
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary><c>/readyz</c> answers 200 and its report names both dependencies healthy: the database and the
    /// bus.</summary>
    public static async Task AssertBothHealthyAsync(Uri host)
    {
        var ready = await Http.GetAsync(new Uri(host, "/readyz"));
        var report = await ready.Content.ReadAsStringAsync();
        Assert.True(ready.StatusCode == HttpStatusCode.OK, report);
        using var json = JsonDocument.Parse(report);
        var checks = json.RootElement.GetProperty("checks");
        Assert.Equal("Healthy", checks.GetProperty("database").GetProperty("status").GetString());
        Assert.Equal("Healthy", checks.GetProperty("masstransit-bus").GetProperty("status").GetString());
    }
}
