using System.Net;
using System.Net.Http.Headers;
using DynamicWorkers.Infrastructure.Hosting;
using DynamicWorkers.LeaseSaga.Http;
using DynamicWorkers.LeaseSaga.Queries;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Time.Testing;

namespace DynamicWorkers.UnitTests.Hosting;

/// <summary>The HTTP surface of a host run through <see cref="HostRunner"/>, as every deployable is: bind address, host
/// filtering, the API token, readiness.</summary>
public sealed class HttpSurfaceTests
{
    const string Token = "a-long-enough-test-token-0123456789";

    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(10) };

    /// <summary>A host started by <see cref="HostRunner.RunAsync"/> on a free port, stopped when disposed.</summary>
    sealed class RunningHost(Task<int> run, WebApplication app) : IAsyncDisposable
    {
        /// <summary>The address Kestrel reports it listens on.</summary>
        public Uri ListeningOn { get; } = new(app.Urls.Single());

        /// <summary>Where to send requests: loopback on that port, whatever the host listens on.</summary>
        public Uri Address => new($"http://127.0.0.1:{ListeningOn.Port}");

        public static async Task<RunningHost> StartAsync(string[] args, Action<WebApplicationBuilder>? configure = null,
            Action<WebApplication>? map = null)
        {
            var started = new TaskCompletionSource<WebApplication>(TaskCreationOptions.RunContinuationsAsynchronously);
            var run = HostRunner.RunAsync(
                "test-host",
                ["--Http:Port=0", "--Logging:LogLevel:Default=None", .. args],
                builder => configure?.Invoke(builder),
                app =>
                {
                    map?.Invoke(app);
                    app.Lifetime.ApplicationStarted.Register(() => started.TrySetResult(app));
                });
            if (await Task.WhenAny(started.Task, run).WaitAsync(TimeSpan.FromSeconds(30)) == run)
            {
                throw new InvalidOperationException($"the host exited with {await run}");
            }

            return new RunningHost(run, await started.Task);
        }

        public async ValueTask DisposeAsync()
        {
            app.Lifetime.StopApplication();
            Assert.Equal(0, await run.WaitAsync(TimeSpan.FromSeconds(30)));
        }
    }

    static Task<HttpResponseMessage> GetAsync(Uri address, string path, string? authorization = null,
        string? host = null)
    {
        var request = new HttpRequestMessage(HttpMethod.Get, new Uri(address, path));
        if (authorization is not null)
        {
            request.Headers.Authorization = AuthenticationHeaderValue.Parse(authorization);
        }

        if (host is not null)
        {
            request.Headers.Host = host;
        }

        return Http.SendAsync(request);
    }

    /// <summary>A stand-in for an API route, and the real lease-saga routes (their queries are never reached
    /// here).</summary>
    static void MapApi(WebApplication app)
    {
        app.MapGet("/api/ping", () => "pong");
        app.MapLeaseSagaHttp();
    }

    static void AddApiServices(WebApplicationBuilder builder)
    {
        builder.Services.AddScoped<OpsQueries>();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<PoolHistory>();
    }

    [Fact]
    public async Task A_host_listens_on_loopback_unless_configured_otherwise()
    {
        await using var host = await RunningHost.StartAsync([]);

        Assert.Equal(IPAddress.Loopback, IPAddress.Parse(host.ListeningOn.Host));
    }

    [Fact]
    public async Task A_request_for_a_host_name_not_in_AllowedHosts_gets_400()
    {
        await using var host = await RunningHost.StartAsync(["--AllowedHosts=dw.example.com;localhost"]);

        Assert.Equal(HttpStatusCode.BadRequest,
            (await GetAsync(host.Address, "/healthz", host: "elsewhere.example.com")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host.Address, "/healthz", host: "dw.example.com")).StatusCode);
    }

    [Fact]
    public async Task Without_AllowedHosts_any_host_name_is_served()
    {
        await using var host = await RunningHost.StartAsync([]);

        Assert.Equal(HttpStatusCode.OK,
            (await GetAsync(host.Address, "/healthz", host: "elsewhere.example.com")).StatusCode);
    }

    [Fact]
    public async Task With_an_api_token_the_api_needs_it_as_a_bearer_token()
    {
        await using var host = await RunningHost.StartAsync([$"--Http:ApiToken={Token}"], AddApiServices, MapApi);

        foreach (var path in new[] { "/api/ping", "/api/pools", "/api/leases?limit=0", "/no-such-path" })
        {
            var missing = await GetAsync(host.Address, path);
            Assert.Equal(HttpStatusCode.Unauthorized, missing.StatusCode);
            Assert.Equal("Bearer", Assert.Single(missing.Headers.WwwAuthenticate).Scheme);

            var wrong = await GetAsync(host.Address, path, $"Bearer {Token}x");
            Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
            Assert.Equal("Bearer error=\"invalid_token\"", Assert.Single(wrong.Headers.WwwAuthenticate).ToString());

            // A prefix of the token is no token.
            Assert.Equal(HttpStatusCode.Unauthorized,
                (await GetAsync(host.Address, path, $"Bearer {Token[..^1]}")).StatusCode);
        }

        Assert.Equal(HttpStatusCode.Unauthorized,
            (await GetAsync(host.Address, "/api/ping", $"Basic {Token}")).StatusCode);
        var granted = await GetAsync(host.Address, "/api/ping", $"Bearer {Token}");
        Assert.Equal(HttpStatusCode.OK, granted.StatusCode);
        Assert.Equal("pong", await granted.Content.ReadAsStringAsync());
        // The scheme is case-insensitive (RFC 6750 via RFC 7235).
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host.Address, "/api/ping", $"bearer {Token}")).StatusCode);
    }

    [Fact]
    public async Task With_an_api_token_probes_metrics_and_the_dashboard_page_stay_open()
    {
        await using var host = await RunningHost.StartAsync([$"--Http:ApiToken={Token}"], AddApiServices, MapApi);

        foreach (var path in new[] { "/healthz", "/readyz", "/metrics", "/" })
        {
            Assert.Equal(HttpStatusCode.OK, (await GetAsync(host.Address, path)).StatusCode);
        }

        Assert.Contains("Authorization", await (await GetAsync(host.Address, "/")).Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Without_an_api_token_the_api_is_open()
    {
        await using var host = await RunningHost.StartAsync(["--Http:ApiToken="], AddApiServices, MapApi);

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(host.Address, "/api/ping")).StatusCode);
    }

    [Fact]
    public async Task Readiness_runs_its_checks_at_most_once_a_second_however_often_it_is_probed()
    {
        var runs = 0;
        var clock = new FakeTimeProvider();
        await using var host = await RunningHost.StartAsync([], builder =>
        {
            builder.Services.AddSingleton<TimeProvider>(clock);
            builder.Services.AddHealthChecks().AddCheck("counted", () =>
            {
                Interlocked.Increment(ref runs);
                return HealthCheckResult.Healthy();
            }, tags: [HttpSurface.ReadyTag]);
        });

        await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => GetAsync(host.Address, "/readyz")));
        for (var probe = 0; probe < 10; probe++)
        {
            var ready = await GetAsync(host.Address, "/readyz");
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
            Assert.Contains("\"counted\"", await ready.Content.ReadAsStringAsync());
        }

        Assert.Equal(1, runs);

        clock.Advance(CachedReadiness.Lifetime - TimeSpan.FromMilliseconds(1));
        await GetAsync(host.Address, "/readyz");
        Assert.Equal(1, runs);

        clock.Advance(TimeSpan.FromMilliseconds(1));
        await GetAsync(host.Address, "/readyz");
        Assert.Equal(2, runs);
    }

    [Fact]
    public async Task Readiness_answers_503_while_a_check_fails()
    {
        await using var host = await RunningHost.StartAsync([], builder =>
            builder.Services.AddHealthChecks().AddCheck("failing", () => HealthCheckResult.Degraded("still connecting"),
                tags: [HttpSurface.ReadyTag]));

        var ready = await GetAsync(host.Address, "/readyz");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("still connecting", await ready.Content.ReadAsStringAsync());
        Assert.Contains("no-store", ready.Headers.CacheControl?.ToString());
    }
}
