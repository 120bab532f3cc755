using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace DynamicWorkers.Infrastructure.Hosting;

/// <summary>
/// The readiness report, evaluated at most once per <see cref="Lifetime"/> however often <c>/readyz</c> is probed, so a
/// probe storm costs the database (and the cloud's API) one query a second; probes that arrive while the checks run
/// share that run.
/// </summary>
public sealed class CachedReadiness(HealthCheckService checks, TimeProvider clock)
{
    /// <summary>How long a finished report answers probes before the checks run again.</summary>
    public static readonly TimeSpan Lifetime = TimeSpan.FromSeconds(1);

    readonly Lock _gate = new();
    Task<HealthReport>? _report;
    DateTimeOffset _expires;

    public Task<HealthReport> GetAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            if (_report is null || (_report.IsCompleted && clock.GetUtcNow() >= _expires))
            {
                _report = EvaluateAsync();
            }

            return _report.WaitAsync(cancellationToken);
        }
    }

    async Task<HealthReport> EvaluateAsync()
    {
        // Not the probe's token: one probe that hangs up must not cancel the run the others wait for (each check has
        // its own timeout).
        var report = await checks.CheckHealthAsync(c => c.Tags.Contains(HttpSurface.ReadyTag), CancellationToken.None);
        lock (_gate)
        {
            _expires = clock.GetUtcNow() + Lifetime;
        }

        return report;
    }
}
