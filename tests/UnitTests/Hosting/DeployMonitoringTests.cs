using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.Json;
using System.Text.RegularExpressions;
using DynamicWorkers.Infrastructure.Telemetry;

namespace DynamicWorkers.UnitTests.Hosting;

/// <summary>
/// The alert rules and the Grafana dashboard in <c>deploy/</c>: valid for Prometheus, each alert fires on the series
/// that should raise it (promtool's own rule tests), and every metric they read is one the services export.
/// </summary>
public sealed partial class DeployMonitoringTests
{
    static readonly string Prometheus = Path.Combine(RepositoryFiles.Root, "deploy", "prometheus");
    static readonly string Dashboard = Path.Combine(RepositoryFiles.Root, "deploy", "grafana", "dynamic-workers.json");

    /// <summary>Read from RabbitMQ's own exporter, not the services'.</summary>
    static readonly string[] BrokerMetrics = ["rabbitmq_detailed_queue_messages"];

    [Fact]
    public async Task The_alert_rules_are_valid_and_each_fires_on_its_own_test_series()
    {
        Assert.Contains("SUCCESS: 5 rules found", await PromtoolAsync("check", "rules", "alerts.yml"));
        Assert.Contains("SUCCESS", await PromtoolAsync("test", "rules", "alerts.test.yml"));
    }

    [Fact]
    public void Every_metric_the_rules_and_the_dashboard_read_is_exported_and_the_dashboard_shows_every_one()
    {
        using var dashboard = JsonDocument.Parse(File.ReadAllText(Dashboard));
        var panels = dashboard.RootElement.GetProperty("panels").EnumerateArray().ToList();
        Assert.NotEmpty(panels);
        var queries = panels.SelectMany(p => p.GetProperty("targets").EnumerateArray()
            .Select(t => t.GetProperty("expr").GetString() ?? "")).ToList();
        Assert.All(queries, q => Assert.False(string.IsNullOrWhiteSpace(q)));

        var exported = ExportedMetrics();
        var rules = string.Join('\n',
            File.ReadLines(Path.Combine(Prometheus, "alerts.yml")).Where(l => !l.TrimStart().StartsWith('#')));
        var read = MetricNames(rules).Concat(queries.SelectMany(MetricNames)).ToHashSet();
        Assert.Empty(read.Except(exported).Except(BrokerMetrics));
        Assert.Empty(exported.Except(queries.SelectMany(MetricNames)));
    }

    /// <summary>The service meter's instruments as Prometheus names them (a histogram's series end in _bucket, _sum,
    /// _count).</summary>
    static HashSet<string> ExportedMetrics()
    {
        var names = new HashSet<string> { DwTelemetry.WorkersGauge, DwTelemetry.LeasesWaitingGauge,
            DwTelemetry.HotTargetGauge };
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name == DwTelemetry.Name)
                {
                    names.Add(instrument.Name);
                }
            },
        };
        _ = DwTelemetry.Meter;
        listener.Start();
        Assert.Contains("dw_lease_wait_seconds", names);
        return names;
    }

    static IEnumerable<string> MetricNames(string text)
        => MetricName().Matches(text).Select(m => Regex.Replace(m.Value, "_(bucket|sum|count)$", ""));

    [GeneratedRegex(@"\b(dw|rabbitmq)_[a-z0-9_]+\b")]
    private static partial Regex MetricName();

    static async Task<string> PromtoolAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("promtool") { WorkingDirectory = Prometheus, RedirectStandardOutput = true,
            RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start)!;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException(
                "promtool not found: scripts/test.sh installs Debian's prometheus package, which has it", e);
        }

        using (process)
        {
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            var text = await output + await error;
            Assert.True(process.ExitCode == 0,
                $"promtool {string.Join(' ', arguments)} exited {process.ExitCode}:\n{text}");
            return text;
        }
    }
}
