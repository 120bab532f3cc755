using System.Collections.Concurrent;
using DynamicWorkers.IntegrationTests.Support;
using MassTransit;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.IntegrationTests.Reliability;

[MessageUrn("DynamicWorkers.Tests:PoisonPill")]
public sealed record PoisonPill(Guid Id);

[MessageUrn("DynamicWorkers.Tests:Wholesome")]
public sealed record Wholesome(Guid Id);

public sealed class Attempts
{
    public ConcurrentDictionary<Guid, int> ById { get; } = new();

    public int Of(Guid id) => ById.GetValueOrDefault(id);
}

/// <summary>Fails every <see cref="PoisonPill"/> with an exception that is not bad input (so it is retried); consumes
/// the rest.</summary>
public sealed class AlwaysFailingConsumer(Attempts attempts) : IConsumer<PoisonPill>, IConsumer<Wholesome>
{
    public Task Consume(ConsumeContext<PoisonPill> context)
    {
        attempts.ById.AddOrUpdate(context.Message.Id, 1, (_, n) => n + 1);
        throw new InvalidOperationException("poison: this message always fails");
    }

    public Task Consume(ConsumeContext<Wholesome> context)
    {
        attempts.ById.AddOrUpdate(context.Message.Id, 1, (_, n) => n + 1);
        return Task.CompletedTask;
    }
}

/// <summary>
/// Invariant 6, the poison half: with the product's endpoint setup (retry in place, then scheduled redelivery
/// through the scheduler, then <c>_error</c>) a message that always fails is tried a bounded number of times,
/// lands in <c>_error</c> with its exception, and never comes back; the endpoint keeps consuming meanwhile.
/// The retry lists are shortened through <c>Retry:*</c> so the test takes seconds, not the default four minutes.
/// </summary>
public sealed class PoisonMessageTests(RabbitMqTestVirtualHost broker) : IClassFixture<RabbitMqTestVirtualHost>
{
    [Fact]
    public async Task A_message_that_always_fails_lands_in_error_after_bounded_retries_and_never_loops()
    {
        var settings = broker.Settings.Concat(new Dictionary<string, string?>
        {
            ["Retry:Intervals:0"] = "00:00:00.050",
            ["Retry:Intervals:1"] = "00:00:00.050",
            ["Retry:Redeliveries:0"] = "00:00:01",
            ["Retry:Redeliveries:1"] = "00:00:01",
            ["Scheduler:Store"] = "Memory",
            ["Scheduler:QueueName"] = "poison-quartz",
            ["ConnectionStrings:Default"] = "Data Source=unused-by-the-memory-store",
        });
        using var host = await TestBus.StartAsync(
            settings,
            bus => bus.AddConsumer<AlwaysFailingConsumer>().Endpoint(e => e.Name = "always-failing"),
            (services, _) => services.AddSingleton<Attempts>(),
            hostScheduler: true);
        var attempts = host.Services.GetRequiredService<Attempts>();
        var bus = host.Services.GetRequiredService<IBus>();
        await using var raw = await RawAmqp.ConnectAsync(broker.Name);

        var poison = new PoisonPill(Guid.NewGuid());
        await bus.Publish(poison);
        var errors = new List<RawMessage>();
        await Eventually.True(
            async () =>
            {
                errors.AddRange(await raw.DrainAsync("always-failing_error"));
                return errors.Count > 0;
            },
            TimeSpan.FromSeconds(60),
            "the poison message in always-failing_error",
            () => $"{attempts.Of(poison.Id)} attempts so far");

        // One delivery plus two redeliveries, each tried once plus two retries in place: 9 attempts, then _error.
        Assert.Equal(9, attempts.Of(poison.Id));
        var error = Assert.Single(errors);
        Assert.Contains(poison.Id.ToString(), error.Body);
        Assert.Equal(typeof(InvalidOperationException).FullName,
            error.Headers.GetValueOrDefault("MT-Fault-ExceptionType"));
        Assert.Contains("always fails", error.Headers.GetValueOrDefault("MT-Fault-Message"));

        // The endpoint still consumes, and the poison does not come back: a message published after it is
        // handled (so anything queued before it has been too), and the count of attempts stays at 9.
        var wholesome = new Wholesome(Guid.NewGuid());
        await bus.Publish(wholesome);
        await Eventually.True(() => attempts.Of(wholesome.Id) == 1, TimeSpan.FromSeconds(30),
            "a wholesome message after the poison");
        Assert.Equal(9, attempts.Of(poison.Id));
        Assert.Empty(await raw.DrainAsync("always-failing_error"));
        await host.StopAsync();
    }
}
