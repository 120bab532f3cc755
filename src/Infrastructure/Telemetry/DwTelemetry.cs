using System.Diagnostics;
using System.Diagnostics.Metrics;
using MassTransit.Logging;
using MassTransit.Monitoring;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace DynamicWorkers.Infrastructure.Telemetry;

/// <summary>
/// The service's own meter and activity source; metric names are part of the ops contract (DESIGN.md).
/// </summary>
public static class DwTelemetry
{
    public const string Name = "DynamicWorkers";

    public static readonly Meter Meter = new(Name);
    public static readonly ActivitySource ActivitySource = new(Name);

    /// <summary>Request → grant; tags <c>pool</c>, <c>path</c> = reuse | hot | cold.</summary>
    public static readonly Histogram<double> LeaseWait = Meter.CreateHistogram<double>(
        "dw_lease_wait_seconds", "s", "Time from LeaseRequested to LeaseGranted",
        advice: new InstrumentAdvice<double>
        {
            HistogramBucketBoundaries =
                [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600],
        });

    /// <summary>Request to provision → VM running; tag <c>pool</c>.</summary>
    public static readonly Histogram<double> ProvisionDuration = Meter.CreateHistogram<double>(
        "dw_provision_duration_seconds", "s", "Time to provision a worker VM",
        advice: new InstrumentAdvice<double>
        {
            HistogramBucketBoundaries = [1, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600],
        });

    public static readonly Counter<long> ProvisionFailures = Meter.CreateCounter<long>("dw_provision_failures_total",
        description: "Failed or timed-out provisionings");

    public static readonly Counter<long> TrustFailures = Meter.CreateCounter<long>("dw_trust_failures_total",
        description: "Failed or timed-out trust steps");

    /// <summary>Tag <c>reason</c> = idle | max_age | max_lease | orphan | failed.</summary>
    public static readonly Counter<long> WorkersReaped = Meter.CreateCounter<long>("dw_workers_reaped_total",
        description: "Workers deprovisioned, by reason");

    /// <summary>
    /// Idle VM time (ready and never leased, or idle between leases): the cost side of the hot pool; tag <c>pool</c>.
    /// </summary>
    public static readonly Counter<double> WorkerIdleSeconds = Meter.CreateCounter<double>(
        "dw_worker_idle_seconds_total", description: "Seconds workers spent provisioned but not leased");

    /// <summary>
    /// Saga saves that lost to a concurrent one (version or key) and run again: the cost of copies deciding at once.
    /// </summary>
    public static readonly Counter<long> SagaConflicts = Meter.CreateCounter<long>("dw_saga_conflicts_total",
        description: "Saga saves that lost a race and were retried, by saga");

    /// <summary>Gauge names; the lease-saga host observes them from its sampled pool status.</summary>
    public const string WorkersGauge = "dw_workers";
    public const string LeasesWaitingGauge = "dw_leases_waiting";
    public const string HotTargetGauge = "dw_pool_hot_target";

    /// <summary>
    /// OpenTelemetry hooks for the service's meter and MassTransit's own source and meter (traces follow a
    /// lease across processes through MassTransit's headers). Exporters are added by the hosts.
    /// </summary>
    public static OpenTelemetry.OpenTelemetryBuilder AddDynamicWorkersTelemetry(this IServiceCollection services)
    {
        // OTLP export is opt-in through the standard OTEL_EXPORTER_OTLP_ENDPOINT variable (a collector, Jaeger, ...).
        var otlp = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OTEL_EXPORTER_OTLP_ENDPOINT"));
        return services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService(AppDomain.CurrentDomain.FriendlyName))
            .WithTracing(t =>
            {
                t.AddSource(Name, DiagnosticHeaders.DefaultListenerName);
                if (otlp)
                {
                    t.AddOtlpExporter();
                }
            })
            .WithMetrics(m =>
            {
                m.AddMeter(Name, InstrumentationOptions.MeterName);
                if (otlp)
                {
                    m.AddOtlpExporter();
                }
            });
    }
}
