using System.Reflection;
using DynamicWorkers.LeaseSaga.Queries;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace DynamicWorkers.LeaseSaga.Http;

/// <summary>The lease-saga host's own HTTP: the read-only ops API and the live dashboard that polls it.</summary>
public static class LeaseSagaHttp
{
    static readonly Lazy<string> Dashboard = new(() =>
    {
        using var stream = Assembly.GetExecutingAssembly()
                               .GetManifestResourceStream("DynamicWorkers.LeaseSaga.Http.dashboard.html")
            ?? throw new InvalidOperationException("the dashboard page is not embedded");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    public static void MapLeaseSagaHttp(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api");
        api.MapGet("/pools", async (OpsQueries queries, string? pool, CancellationToken cancellationToken)
            => Results.Ok(await queries.PoolsAsync(pool, cancellationToken)));
        api.MapGet("/workers", async (OpsQueries queries, string? pool, string? instanceId,
                CancellationToken cancellationToken)
            => Results.Ok(await queries.WorkersAsync(pool, instanceId, cancellationToken)));
        api.MapGet("/leases", async (OpsQueries queries, string? pool, string? instanceId, int? limit,
                CancellationToken cancellationToken)
            => limit is < 1 or > OpsQueries.MaxLeases
                ? Results.Problem($"limit must be between 1 and {OpsQueries.MaxLeases}",
                    statusCode: StatusCodes.Status400BadRequest)
                : Results.Ok(await queries.LeasesAsync(pool, instanceId, limit ?? 100, cancellationToken)));
        api.MapGet("/history", (PoolHistory history, string? pool) => Results.Ok(history.Read(pool)));
        // Open even with Http:ApiToken set: the page holds no data, and its calls to /api carry the token.
        app.MapGet("/", () => Results.Content(Dashboard.Value, "text/html; charset=utf-8")).AllowAnonymous();
    }
}
