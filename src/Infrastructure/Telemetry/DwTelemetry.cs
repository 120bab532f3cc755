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
