using System.Collections.Concurrent;
using System.Diagnostics;
using DynamicWorkers.Contracts;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using MassTransit.Logging;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace DynamicWorkers.IntegrationTests.Hosting;

/// <summary>Grants as seen by the test's instance, with the trace header they arrived with.</summary>
public sealed class TracedGrants : IConsumer<LeaseGranted>
{
    public ConcurrentDictionary<Guid, string?> ActivityIds { get; } = new();

    public Task Consume(ConsumeContext<LeaseGranted> context)
    {
        ActivityIds[context.Message.LeaseId] = context.Headers.Get<string>(DiagnosticHeaders.ActivityId);
        return Task.CompletedTask;
    }
}

/// <summary>One lease across the four deployables as separate processes: its trace and its metric.</summary>
public sealed class TelemetryTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>
{
    const string Pool = "ubuntu-22.04";

    [Fact]
    public async Task A_hot_grant_continues_the_requests_trace_through_every_process_and_is_measured_on_the_lease_saga()
    {
        var settings = broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
        {
            ["Cloud:Simulated:ProvisionDelay"] = "00:00:00.200",
            ["Cloud:Simulated:TrustDelay"] = "00:00:00.100",
        }).ToDictionary();
        await using var leaseSaga = ServiceProcess.Start("LeaseSaga", settings);
        await leaseSaga.WaitUntilStartedAsync(TimeSpan.FromSeconds(90));
        await using var provisioner = ServiceProcess.Start("Provisioner", settings);
        await using var trust = ServiceProcess.Start("Trust", settings);
        await Task.WhenAll(provisioner.WaitUntilStartedAsync(TimeSpan.FromSeconds(90)),
            trust.WaitUntilStartedAsync(TimeSpan.FromSeconds(90)));
        var grants = new TracedGrants();
        using var client = await TestBus.StartAsync(broker.Settings, bus => bus.AddConsumer<TracedGrants>(),
            (services, _) => services.AddSingleton(grants));
        using var http = new HttpClient();
        await Eventually.True(
            async () => (await http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/metrics")))
                .Contains($"dw_workers{{otel_scope_name=\"DynamicWorkers\",pool=\"{Pool}\",state=\"Ready\"}} 2",
                StringComparison.Ordinal),
            TimeSpan.FromSeconds(60),
            "two hot workers ready (dw_workers gauge)",
            () => leaseSaga.Output);

        // The instance's own trace: a recorded parent, as an instrumented product would have.
        using var parent = new Activity("instance-task");
        parent.ActivityTraceFlags = ActivityTraceFlags.Recorded;
        parent.Start();
        var lease = new LeaseRequested(NewId.NextGuid(), "traced-instance", new string('a', 40), Pool, "task",
            DateTimeOffset.UtcNow);
        await client.Services.GetRequiredService<IBus>().Publish(lease);
        parent.Stop();

        await Eventually.True(() => grants.ActivityIds.ContainsKey(lease.LeaseId), TimeSpan.FromSeconds(60),
            "the grant", () => leaseSaga.Output);
        var header = grants.ActivityIds[lease.LeaseId];
        Assert.True(header?.Contains(parent.TraceId.ToHexString()) == true,
            $"grant trace header {header} does not continue trace {parent.TraceId}");

        // The exporter may answer from a scrape cached a moment before the grant: read until the grant shows.
        var expected =
            $"dw_lease_wait_seconds_count{{otel_scope_name=\"DynamicWorkers\",path=\"hot\",pool=\"{Pool}\"}} 1";
        var metrics = "";
        await Eventually.True(
            async () => (metrics = await http.GetStringAsync(new Uri(leaseSaga.HttpAddress, "/metrics")))
                .Contains(expected, StringComparison.Ordinal),
            TimeSpan.FromSeconds(10),
            "the hot grant measured (dw_lease_wait_seconds)",
            () => metrics);
        Assert.Contains("dw_provision_duration_seconds_count", metrics);
    }
}
