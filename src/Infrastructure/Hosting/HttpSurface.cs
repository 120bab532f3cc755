using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using DynamicWorkers.Infrastructure.Configuration;
using MassTransit;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

namespace DynamicWorkers.Infrastructure.Hosting;

/// <summary>
/// What every host serves on <c>Http:Host</c>:<c>Http:Port</c>: <c>/healthz</c> (the process answers), <c>/readyz</c>
/// (every check tagged <see cref="ReadyTag"/>: the bus, the database; see <see cref="CachedReadiness"/>) and
/// <c>/metrics</c> (Prometheus text of the <c>DynamicWorkers</c> meter and MassTransit's). These three are always open;
/// with <c>Http:ApiToken</c> set, every other endpoint not marked <c>AllowAnonymous</c> needs it as a bearer token.
/// <c>AllowedHosts</c> is honoured by the host filtering <see cref="WebApplication"/> puts in front of all of them.
/// </summary>
public static class HttpSurface
{
    /// <summary>Health checks with this tag decide readiness.</summary>
    public const string ReadyTag = "ready";

    public static void AddHttpSurface(this WebApplicationBuilder builder)
    {
        var http = builder.Configuration.GetSection(HttpOptions.Section).GetValidated<HttpOptions>();
        if (!IPAddress.TryParse(http.Host, out var address))
        {
            throw new OptionsValidationException(HttpOptions.Section, typeof(HttpOptions),
                [$"Http:Host must be an IP address, not '{http.Host}'"]);
        }

        // The one listening address; ASPNETCORE_URLS and launch profiles do not apply.
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, http.Port));
        builder.Services.AddHealthChecks();
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<CachedReadiness>();
        builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddPrometheusExporter());
    }

    public static void MapHttpSurface(this WebApplication app)
    {
        // Kestrel listens while the bus is still starting (hosted services start together, see HostRunner). Until the
        // bus has started, /readyz answers 503 "Starting" without running the checks, which would log the bus as a
        // failed check on every probe of a normal start. Once it has, the checks decide, as they do from then on.
        var bus = app.Services.GetService<IBusControl>();
        bool Starting() => bus is not null && !app.Lifetime.ApplicationStarted.IsCancellationRequested
            && bus.CheckHealth().Status != BusHealthStatus.Healthy;
        var token = app.Configuration.GetSection(HttpOptions.Section).GetValidated<HttpOptions>().ApiToken;
        if (!string.IsNullOrEmpty(token))
        {
            // Hashed so the comparison below takes the same time whatever the presented token's length.
            var expected = SHA256.HashData(Encoding.UTF8.GetBytes(token));
            app.Use((context, next) => IsOpen(context) || CarriesToken(context, expected) ? next(context)
                : WriteChallenge(context));
        }

        app.Use((context, next) => context.Request.Path == "/readyz" && Starting() ? WriteStarting(context)
            : next(context));
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteJson })
            .AllowAnonymous();
        app.Map("/readyz", WriteReadiness).AllowAnonymous();
        app.MapPrometheusScrapingEndpoint("/metrics").AllowAnonymous();
    }

    /// <summary>
    /// Routing has run by now, so an endpoint marked <c>AllowAnonymous</c> (probes, the dashboard page) is known.
    /// </summary>
    static bool IsOpen(HttpContext context)
        => context.GetEndpoint()?.Metadata.GetMetadata<IAllowAnonymous>() is not null;

    const string BearerScheme = "Bearer ";

    static bool PresentsBearer(HttpContext context) => context.Request.Headers.Authorization.ToString()
        .StartsWith(BearerScheme, StringComparison.OrdinalIgnoreCase);

    static bool CarriesToken(HttpContext context, byte[] expectedHash)
    {
        if (!PresentsBearer(context))
        {
            return false;
        }

        var presented = context.Request.Headers.Authorization.ToString()[BearerScheme.Length..].Trim();
        return CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented)),
            expectedHash);
    }

    static Task WriteChallenge(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status401Unauthorized;
        // RFC 6750: a bearer token that was presented but is wrong is named as such; otherwise one is only asked for.
        context.Response.Headers.WWWAuthenticate = PresentsBearer(context) ? "Bearer error=\"invalid_token\""
            : "Bearer";
        return Task.CompletedTask;
    }

    static async Task WriteReadiness(HttpContext context)
    {
        var report = await context.RequestServices.GetRequiredService<CachedReadiness>()
            .GetAsync(context.RequestAborted);
        // A bus still connecting reports Degraded: not ready for traffic yet.
        context.Response.StatusCode = report.Status == HealthStatus.Healthy ? StatusCodes.Status200OK
            : StatusCodes.Status503ServiceUnavailable;
        context.Response.Headers.CacheControl = "no-store, no-cache";
        await WriteJson(context, report);
    }

    static Task WriteStarting(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync("""{"status":"Starting","checks":{}}""");
    }

    /// <summary>One JSON object per check, so an operator sees which dependency is down and why.</summary>
    static Task WriteJson(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.ToDictionary(
                e => e.Key,
                e => new
                {
                    status = e.Value.Status.ToString(), description = e.Value.Description ?? e.Value.Exception?.Message,
                }),
        }));
    }
}
