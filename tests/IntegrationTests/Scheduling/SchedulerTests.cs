using System.Collections.Concurrent;
using DynamicWorkers.Infrastructure.Messaging;
using DynamicWorkers.Infrastructure.Scheduling;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.IntegrationTests.Scheduling;

public sealed record Probe(Guid Id, string Label);

public sealed record ProbeArrival(Guid Id, string Label, Guid? TokenId, DateTime ReceivedAt);

public sealed class ProbeArrivals
{
    public ConcurrentQueue<ProbeArrival> All { get; } = new();

    public int CountOf(Guid id) => All.Count(a => a.Id == id);
}

public sealed class ProbeConsumer(ProbeArrivals arrivals) : IConsumer<Probe>
{
    public Task Consume(ConsumeContext<Probe> context)
    {
        arrivals.All.Enqueue(new ProbeArrival(context.Message.Id, context.Message.Label, context.GetSchedulingTokenId(),
            DateTime.UtcNow));
        return Task.CompletedTask;
    }
}

/// <summary>
/// The durable scheduler as deployed: the LeaseSaga host, a separate OS process, on real RabbitMQ and
/// PostgreSQL (Quartz's clustered job store). This test process schedules through the <c>quartz</c> queue
/// like any other service and receives the messages on a queue of its own.
/// </summary>
public sealed class SchedulerTests(RabbitMqTestVirtualHost broker, PostgresTestDatabase database)
    : IClassFixture<RabbitMqTestVirtualHost>, IClassFixture<PostgresTestDatabase>, IAsyncLifetime
{
    // The exchange of the test bus's probe queue: a queue: address would redeclare the quorum queue as classic.
    static readonly Uri ProbeQueue = new("exchange:probe");
    static readonly TimeSpan StartDeadline = TimeSpan.FromSeconds(60);

    readonly List<ServiceProcess> _schedulers = [];
    IHost _client = null!;

    ProbeArrivals Arrivals => _client.Services.GetRequiredService<ProbeArrivals>();

    public async Task InitializeAsync()
    {
        _client = await TestBus.StartAsync(
            broker.Settings,
            bus => bus.AddConsumer<ProbeConsumer>().Endpoint(e => e.Name = "probe"),
            (services, _) => services.AddSingleton<ProbeArrivals>());
    }

    public async Task DisposeAsync()
    {
        foreach (var scheduler in _schedulers)
        {
            await scheduler.DisposeAsync();
        }

        await _client.StopAsync();
        _client.Dispose();
    }

    [Fact]
    public async Task A_message_scheduled_2_s_ahead_arrives_once_on_time_with_its_token()
    {
        await StartSchedulerAsync();
        var due = DateTime.UtcNow.AddSeconds(2);

        var handle = await ScheduleAsync(due, "on-time");

        var arrival = await ArrivalAsync(handle.Payload.Id, TimeSpan.FromSeconds(30));
        await DrainedAsync();
        Assert.Equal(1, Arrivals.CountOf(handle.Payload.Id));
        Assert.True(arrival.ReceivedAt >= due.AddMilliseconds(-50),
            $"arrived {(due - arrival.ReceivedAt).TotalMilliseconds:0} ms early");
        Assert.Equal(handle.TokenId, arrival.TokenId);
    }

    [Fact]
    public async Task A_cancelled_message_never_arrives()
    {
        await StartSchedulerAsync();
        // Due far enough ahead that a freshly started process has stored the schedule and handled the cancel by then.
        var cancelled = await ScheduleAsync(DateTime.UtcNow.AddSeconds(10), "cancelled");
        await Scheduler.CancelScheduledSend(ProbeQueue, cancelled.TokenId);

        // A later message through the same scheduler: once it is here, the cancelled one would have come first.
        var later = await ScheduleAsync(DateTime.UtcNow.AddSeconds(11), "later");
        await ArrivalAsync(later.Payload.Id, TimeSpan.FromSeconds(30));
        await DrainedAsync();

        Assert.Equal(0, Arrivals.CountOf(cancelled.Payload.Id));
        Assert.Equal(0, await TriggersAsync());
    }

    [Fact]
    public async Task A_schedule_that_replaces_another_removes_it_whether_stored_or_still_held()
    {
        await StartSchedulerAsync();
        var start = DateTime.UtcNow;
        // Stored: held until 5 s before it is due, then in the job store when its replacement comes.
        var stored = await ScheduleAsync(start.AddSeconds(12), "stored, then replaced");
        await Eventually.True(async () => await TriggersAsync() == 1, TimeSpan.FromSeconds(30), "the first stored");
        var storedReplacement = await ScheduleAsync(start.AddSeconds(13), "replaces the stored", stored.TokenId);
        // Held: its replacement comes while it still waits for a cancel.
        var held = await ScheduleAsync(DateTime.UtcNow.AddSeconds(12), "held, then replaced");
        var heldReplacement = await ScheduleAsync(DateTime.UtcNow.AddSeconds(13), "replaces the held", held.TokenId);

        // Each replaced one was due a second before its replacement: once both replacements are here, it would be too.
        await ArrivalAsync(storedReplacement.Payload.Id, TimeSpan.FromSeconds(30));
        await ArrivalAsync(heldReplacement.Payload.Id, TimeSpan.FromSeconds(30));
        await DrainedAsync();

        Assert.Equal(0, Arrivals.CountOf(stored.Payload.Id));
        Assert.Equal(0, Arrivals.CountOf(held.Payload.Id));
        Assert.Equal(1, Arrivals.CountOf(storedReplacement.Payload.Id));
        Assert.Equal(1, Arrivals.CountOf(heldReplacement.Payload.Id));
    }

    [Fact]
    public async Task A_scheduled_message_still_arrives_after_the_scheduler_is_killed_9_and_started_again()
    {
        var first = await StartSchedulerAsync();
        // Due far enough ahead that the kill comes before it even when storing the trigger is slow.
        var due = DateTime.UtcNow.AddSeconds(10);
        var handle = await ScheduleAsync(due, "survivor");
        await Eventually.True(async () => await TriggersAsync() == 1, TimeSpan.FromSeconds(30),
            "the trigger to be stored", () => first.Output);

        first.KillHard();
        // Let it fall due while no scheduler runs at all.
        await Eventually.True(() => DateTime.UtcNow > due.AddSeconds(1), TimeSpan.FromSeconds(60),
            "the due time to pass");
        Assert.Equal(0, Arrivals.CountOf(handle.Payload.Id));

        await StartSchedulerAsync();
        var arrival = await ArrivalAsync(handle.Payload.Id, TimeSpan.FromSeconds(60));
        await DrainedAsync();

        Assert.Equal(1, Arrivals.CountOf(handle.Payload.Id));
        Assert.Equal(handle.TokenId, arrival.TokenId);
    }

    [Fact]
    public async Task A_schedule_held_for_its_cancel_still_arrives_once_on_time_after_the_scheduler_is_killed_9_during_the_hold()
    {
        var first = await StartSchedulerAsync();
        // Due 25 s ahead: held for 20 s (HeldSchedules), not yet in the store, its message not yet acknowledged.
        var due = DateTime.UtcNow.AddSeconds(25);
        var handle = await ScheduleAsync(due, "held");
        await Eventually.True(async () => await broker.QueueDepthAsync("quartz", "messages_unacknowledged") == 1,
            TimeSpan.FromSeconds(15), "the schedule to be held", () => first.Output);
        Assert.Equal(0, await TriggersAsync());

        first.KillHard();
        // The broker hands the unacknowledged schedule to the next scheduler, which holds and then stores it.
        await StartSchedulerAsync();
        var arrival = await ArrivalAsync(handle.Payload.Id, TimeSpan.FromSeconds(60));
        await DrainedAsync();

        Assert.Equal(1, Arrivals.CountOf(handle.Payload.Id));
        Assert.Equal(handle.TokenId, arrival.TokenId);
        Assert.True(arrival.ReceivedAt >= due.AddMilliseconds(-50),
            $"arrived {(due - arrival.ReceivedAt).TotalMilliseconds:0} ms early");
    }

    [Fact]
    public async Task Two_scheduler_processes_deliver_each_message_exactly_once()
    {
        // One after the other, as the other fixtures do: the first creates the schema on a fresh database.
        await StartSchedulerAsync();
        await StartSchedulerAsync();
        var start = DateTime.UtcNow.AddSeconds(2);
        var handles = await Task.WhenAll(
            Enumerable.Range(0, 20).Select(i => ScheduleAsync(start.AddMilliseconds(100 * i), $"pair-{i}")));

        await Eventually.True(
            () => handles.All(h => Arrivals.CountOf(h.Payload.Id) > 0),
            TimeSpan.FromSeconds(60),
            "all 20 messages",
            () => $"{handles.Count(h => Arrivals.CountOf(h.Payload.Id) > 0)} "
                + $"arrived\n{string.Join("\n----\n", _schedulers.Select(s => s.Output))}");
        await DrainedAsync();

        Assert.All(handles, h => Assert.Equal(1, Arrivals.CountOf(h.Payload.Id)));
    }

    IMessageScheduler Scheduler
        => _client.Services.CreateScope().ServiceProvider.GetRequiredService<IMessageScheduler>();

    Task<ScheduledMessage<Probe>> ScheduleAsync(DateTime due, string label, Guid? replaces = null)
        => Scheduler.ScheduleSend(ProbeQueue, due, new Probe(NewId.NextGuid(), label),
            ScheduleReplacement.Of<Probe>(replaces));

    async Task<ServiceProcess> StartSchedulerAsync()
    {
        // No hot workers: only this test's own timers are in the store.
        var settings = broker.Settings.Concat(database.Settings).Concat(new Dictionary<string, string?>
        {
            ["Scheduler:ClusterCheckinInterval"] = "00:00:01",
            ["Pools:ubuntu-22.04:HotTarget"] = "0",
            ["Pools:windows-2022:HotTarget"] = "0",
        });
        var scheduler = ServiceProcess.Start("LeaseSaga", settings);
        lock (_schedulers)
        {
            _schedulers.Add(scheduler);
        }

        await scheduler.WaitUntilStartedAsync(StartDeadline);
        return scheduler;
    }

    async Task<ProbeArrival> ArrivalAsync(Guid id, TimeSpan deadline)
    {
        await Eventually.True(() => Arrivals.CountOf(id) > 0, deadline, $"message {id}",
            () => string.Join("\n----\n", _schedulers.Select(s => s.Output)));
        return Arrivals.All.First(a => a.Id == id);
    }

    /// <summary>
    /// Every trigger has fired and finished (a job sends before Quartz removes its trigger), and a message sent
    /// straight to the probe queue afterwards has come through: any duplicate would have arrived before it.
    /// </summary>
    async Task DrainedAsync()
    {
        await Eventually.True(async () => await TriggersAsync() == 0 && await FiringAsync() == 0,
            TimeSpan.FromSeconds(60), "every trigger to finish");
        var sentinel = new Probe(NewId.NextGuid(), "sentinel");
        await (await _client.Services.GetRequiredService<IBus>().GetSendEndpoint(ProbeQueue)).Send(sentinel);
        await ArrivalAsync(sentinel.Id, TimeSpan.FromSeconds(30));
    }

    Task<long> TriggersAsync()
        => database.ScalarAsync("SELECT count(*) FROM qrtz_triggers WHERE job_name = 'dw-send-scheduled-message'");

    Task<long> FiringAsync() => database.ScalarAsync("SELECT count(*) FROM qrtz_fired_triggers");
}
