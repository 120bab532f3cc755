using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Scheduling;

/// <summary>Standalone's arrangement: in-memory transport, the scheduler in the same process, Quartz's store in a
/// SQLite file.</summary>
public sealed class EmbeddedSchedulerTests(SqliteTestDatabase database) : IClassFixture<SqliteTestDatabase>
{
    [Fact]
    public async Task Scheduled_messages_arrive_and_cancelled_ones_do_not_on_sqlite_and_the_in_memory_transport()
    {
        using var host = await TestBus.StartAsync(
            database.Settings.Append(new("Transport", "InMemory")),
            bus => bus.AddConsumer<ProbeConsumer>().Endpoint(e => e.Name = "probe"),
            (services, _) => services.AddSingleton<ProbeArrivals>(),
            hostScheduler: true);
        var arrivals = host.Services.GetRequiredService<ProbeArrivals>();
        var scheduler = host.Services.CreateScope().ServiceProvider.GetRequiredService<IMessageScheduler>();
        var queue = new Uri("queue:probe");

        // The cancel must be handled before the first message falls due: a few seconds of slack for a loaded machine.
        var cancelled = await scheduler.ScheduleSend(queue, DateTime.UtcNow.AddSeconds(4),
            new Probe(NewId.NextGuid(), "cancelled"));
        await scheduler.CancelScheduledSend(queue, cancelled.TokenId);
        var kept =
            await scheduler.ScheduleSend(queue, DateTime.UtcNow.AddSeconds(5), new Probe(NewId.NextGuid(), "kept"));

        await Eventually.True(() => arrivals.CountOf(kept.Payload.Id) > 0, TimeSpan.FromSeconds(30),
            "the kept message");
        Assert.Equal(0, arrivals.CountOf(cancelled.Payload.Id));
        Assert.Equal(kept.TokenId, arrivals.All.Single(a => a.Id == kept.Payload.Id).TokenId);
        await host.StopAsync();
    }
}
