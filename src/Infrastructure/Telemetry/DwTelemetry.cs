using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit.Logging;
using MassTransit.Monitoring;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace DynamicWorkers.Infrastructure.Telemetry;

/// <summary>The service's own meter and activity source; metric names are part of the ops contract (DESIGN.md).</summary>
public static class DwTelemetry
{
    public const string Name = "DynamicWorkers";

    public static readonly Meter Meter = new(Name);
    public static readonly ActivitySource ActivitySource = new(Name);

    /// <summary>Request → grant; tags <c>pool</c>, <c>path</c> = reuse | hot | cold.</summary>
    public static readonly Histogram<double> LeaseWait = Meter.CreateHistogram<double>("dw_lease_wait_seconds", "s", "Time from LeaseRequested to LeaseGranted");

    /// <summary>Request to provision → VM running; tag <c>pool</c>.</summary>
    public static readonly Histogram<double> ProvisionDuration = Meter.CreateHistogram<double>("dw_provision_duration_seconds", "s", "Time to provision a worker VM");

    public static readonly Counter<long> ProvisionFailures = Meter.CreateCounter<long>("dw_provision_failures_total", description: "Failed or timed-out provisionings");

    public static readonly Counter<long> TrustFailures = Meter.CreateCounter<long>("dw_trust_failures_total", description: "Failed or timed-out trust steps");

    /// <summary>Tag <c>reason</c> = idle | max_age | max_lease | orphan | failed.</summary>
    public static readonly Counter<long> WorkersReaped = Meter.CreateCounter<long>("dw_workers_reaped_total", description: "Workers deprovisioned, by reason");

    /// <summary>
    /// OpenTelemetry hooks for the service's meter and MassTransit's own source and meter (traces follow a
    /// lease across processes through MassTransit's headers). Exporters are added by the hosts.
    /// </summary>
    public static OpenTelemetry.OpenTelemetryBuilder AddDynamicWorkersTelemetry(this IServiceCollection services)
    {
        return services.AddOpenTelemetry()
            .WithTracing(t => t.AddSource(Name, DiagnosticHeaders.DefaultListenerName))
            .WithMetrics(m => m.AddMeter(Name, InstrumentationOptions.MeterName));
    }
}
