using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using DynamicWorkers.IntegrationTests.Support;

namespace DynamicWorkers.IntegrationTests.Hosting;

/// <summary>
/// Every deployable, run as its own process, serves <c>/healthz</c>, <c>/readyz</c> (its broker and database
/// checks) and <c>/metrics</c>; the lease-saga host also serves the ops API and the dashboard page.
/// </summary>
public sealed class HttpSurfaceTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>
{
    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    IReadOnlyDictionary<string, string?> Settings => broker.Settings.Concat(database.Settings).ToDictionary();

    [Fact]
    public async Task Every_deployable_serves_health_readiness_and_metrics_and_the_lease_saga_serves_the_api()
    {
        await using var leaseSaga = await StartAsync("LeaseSaga");
        await using var provisioner = await StartAsync("Provisioner");
        await using var trust = await StartAsync("Trust");
        await using var reaper = await StartAsync("Reaper");

        foreach (var service in new[] { leaseSaga, provisioner, trust, reaper })
        {
            Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(new Uri(service.HttpAddress, "/healthz"))).StatusCode);

            // Ready means both dependencies answer, and the report says which is which.
            await Readiness.AssertBothHealthyAsync(service.HttpAddress);

            var metrics = await Http.GetAsync(new Uri(service.HttpAddress, "/metrics"));
            Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
            Assert.StartsWith("text/plain", metrics.Content.Headers.ContentType?.MediaType);
        }

        // The pool keeper's gauges appear once it sampled the pools.
        await Eventually.True(
            async () => (await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/metrics")))
                .Contains("dw_leases_waiting{", StringComparison.Ordinal),
            TimeSpan.FromSeconds(30),
            "the dw_leases_waiting gauge on /metrics");
        Assert.Contains("dw_pool_hot_target{", await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/metrics")),
            StringComparison.Ordinal);
        // The adaptive pools' minute job lives in the clustered store, so one copy fires it each minute.
        Assert.Equal(1L, await database.ScalarAsync(
            "SELECT count(*) FROM qrtz_triggers WHERE trigger_name = 'adaptive-hot-target'"));

        using var pools = JsonDocument.Parse(await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/api/pools")));
        Assert.Contains(pools.RootElement.EnumerateArray(), p => p.GetProperty("pool").GetString() == "ubuntu-22.04");
        using var workers = JsonDocument.Parse(
            await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/api/workers?pool=ubuntu-22.04")));
        Assert.Equal(JsonValueKind.Array, workers.RootElement.ValueKind);
        using var leases =
            JsonDocument.Parse(await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/api/leases?limit=10")));
        Assert.Equal(JsonValueKind.Array, leases.RootElement.ValueKind);
        Assert.Equal(HttpStatusCode.BadRequest,
            (await Http.GetAsync(new Uri(leaseSaga.HttpAddress, "/api/leases?limit=0"))).StatusCode);
        // The gauges' first sample is also the first point of the pool's hour.
        using var history = JsonDocument.Parse(
            await Http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/api/history?pool=ubuntu-22.04")));
        Assert.NotEmpty(Assert.Single(history.RootElement.EnumerateArray()).GetProperty("levels").EnumerateArray());

        var page = await Http.GetAsync(leaseSaga.HttpAddress);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        Assert.Contains("api/pools", await page.Content.ReadAsStringAsync());

        // A first start on a new database is no error: LeaseSaga migrates it, Provisioner creates the simulated cloud's
        // tables, and EF Core logs into the same output (it would log a failed read of the missing migration history).
        foreach (var service in new[] { leaseSaga, provisioner, trust, reaper })
        {
            Assert.False(service.Output.Contains("fail:", StringComparison.Ordinal), service.Output);
        }
    }

    [Fact]
    public async Task A_first_start_on_a_database_that_does_not_exist_yet_creates_it_and_logs_no_error()
    {
        var missing = new PostgresTestDatabase();
        try
        {
            await using var leaseSaga = ServiceProcess.Start("LeaseSaga", broker.Settings.Concat(missing.Settings));
            await leaseSaga.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));

            Assert.False(leaseSaga.Output.Contains("fail:", StringComparison.Ordinal), leaseSaga.Output);
            Assert.True(await missing.ScalarAsync("SELECT count(*) FROM \"__EFMigrationsHistory\"") > 0);
        }
        finally
        {
            await missing.DisposeAsync();
        }
    }

    [Fact]
    public async Task Readiness_fails_while_the_broker_is_lost_and_liveness_does_not()
    {
        await using var provisioner = await StartAsync("Provisioner");

        await broker.DropAsync();

        await Eventually.True(
            async () => (await Http.GetAsync(new Uri(provisioner.HttpAddress, "/readyz")))
                .StatusCode == HttpStatusCode.ServiceUnavailable,
            TimeSpan.FromSeconds(30),
            "/readyz to report the lost broker",
            () => provisioner.Output);
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(new Uri(provisioner.HttpAddress, "/healthz"))).StatusCode);
        await broker.InitializeAsync();
    }

    [Fact]
    public async Task Readiness_answers_starting_while_the_bus_is_still_starting_and_runs_no_check()
    {
        // A broker port nothing listens on: the bus keeps trying to start while Kestrel, started beside it, already
        // serves.
        using var closed = new TcpListener(IPAddress.Loopback, 0);
        closed.Start();
        var port = ((IPEndPoint)closed.LocalEndpoint).Port;
        closed.Stop();
        await using var reaper =
            ServiceProcess.Start("Reaper", Settings.Concat([new("RabbitMq:Port", port.ToString())]));

        await Eventually.True(
            () => reaper.Output.Contains("Now listening on", StringComparison.Ordinal) || reaper.HasExited,
            TimeSpan.FromSeconds(60),
            "Kestrel to listen while the bus starts",
            () => reaper.Output);
        var readiness = await Http.GetAsync(new Uri(reaper.HttpAddress, "/readyz"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, readiness.StatusCode);
        using var body = JsonDocument.Parse(await readiness.Content.ReadAsStringAsync());
        Assert.Equal("Starting", body.RootElement.GetProperty("status").GetString());
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync(new Uri(reaper.HttpAddress, "/healthz"))).StatusCode);
        Assert.DoesNotContain("Application started", reaper.Output);
        // No check ran, so none was logged as failed.
        Assert.DoesNotContain("Health check", reaper.Output);
    }

    [Fact]
    public async Task A_port_already_taken_stops_start_up_with_a_clear_line()
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        await using var service =
            ServiceProcess.Start("Provisioner", Settings.Concat([new("Http:Port", port.ToString())]));

        await service.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(2, service.ExitCode);
        Assert.Contains($"provisioner: cannot serve HTTP", service.Output);
        Assert.Contains("Http:Port", service.Output);
    }

    async Task<ServiceProcess> StartAsync(string project)
    {
        var service = ServiceProcess.Start(project, Settings);
        await service.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
        return service;
    }
}
