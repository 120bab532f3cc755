using System.Net;
using System.Text.Json;
using DynamicWorkers.Infrastructure.Configuration;
using MassTransit;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using OpenTelemetry.Metrics;

namespace DynamicWorkers.Infrastructure.Hosting;

/// <summary>
/// What every host serves on <c>Http:Port</c>: <c>/healthz</c> (the process answers), <c>/readyz</c> (every check
/// tagged <see cref="ReadyTag"/>: the bus, the database) and <c>/metrics</c> (Prometheus text of the
/// <c>DynamicWorkers</c> meter and MassTransit's).
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
            throw new OptionsValidationException(HttpOptions.Section, typeof(HttpOptions), [$"Http:Host must be an IP address, not '{http.Host}'"]);
        }

        // The one listening address; ASPNETCORE_URLS and launch profiles do not apply.
        builder.WebHost.ConfigureKestrel(k => k.Listen(address, http.Port));
        builder.Services.AddHealthChecks();
        builder.Services.AddOpenTelemetry().WithMetrics(m => m.AddPrometheusExporter());
    }

    public static void MapHttpSurface(this WebApplication app)
    {
        // Kestrel listens while the bus is still starting (hosted services start together, see HostRunner). Until the
        // bus has started, /readyz answers 503 "Starting" without running the checks, which would log the bus as a
        // failed check on every probe of a normal start. Once it has, the checks decide, as they do from then on.
        var bus = app.Services.GetService<IBusControl>();
        bool Starting() => bus is not null && !app.Lifetime.ApplicationStarted.IsCancellationRequested && bus.CheckHealth().Status != BusHealthStatus.Healthy;
        app.Use((context, next) => context.Request.Path == "/readyz" && Starting() ? WriteStarting(context) : next(context));
        app.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = _ => false, ResponseWriter = WriteJson });
        app.MapHealthChecks("/readyz", new HealthCheckOptions
        {
            Predicate = c => c.Tags.Contains(ReadyTag),
            ResponseWriter = WriteJson,
            // A bus still connecting reports Degraded: not ready for traffic yet.
            ResultStatusCodes =
            {
                [HealthStatus.Healthy] = StatusCodes.Status200OK,
                [HealthStatus.Degraded] = StatusCodes.Status503ServiceUnavailable,
                [HealthStatus.Unhealthy] = StatusCodes.Status503ServiceUnavailable,
            },
        });
        app.MapPrometheusScrapingEndpoint("/metrics");
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
                e => new { status = e.Value.Status.ToString(), description = e.Value.Description ?? e.Value.Exception?.Message }),
        }));
    }
}
