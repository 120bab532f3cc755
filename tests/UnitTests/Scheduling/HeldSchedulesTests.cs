using DynamicWorkers.Infrastructure.Scheduling;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace DynamicWorkers.UnitTests.Scheduling;

/// <summary>
/// A schedule waits for its cancel before it is stored; only a cancel that comes in time keeps it out of the store.
/// A hold begins before <c>CancelledWhileHeldAsync</c> first yields, so it is counted as soon as the call returns.
/// </summary>
public sealed class HeldSchedulesTests
{
    readonly FakeTimeProvider _clock = new(new DateTimeOffset(2026, 1, 5, 9, 0, 0, TimeSpan.Zero));

    HeldSchedules Held(int maxHeld = 10) => new(
        Options.Create(new QuartzEndpointOptions
        {
            HoldSchedulesFor = TimeSpan.FromSeconds(30), MaxHeld = maxHeld, ConcurrentStoreLimit = 5,
        }), _clock);

    [Fact]
    public async Task A_schedule_cancelled_while_held_is_never_stored_and_its_cancel_needs_no_store_either()
    {
        var held = Held();
        var outcome = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);
        Assert.Equal(1, held.Count);

        Assert.True(held.TryCancel("a"));
        Assert.True(await outcome);
        Assert.Equal(0, held.Count);
        Assert.False(held.TryCancel("a"));
    }

    [Fact]
    public async Task A_schedule_not_cancelled_is_stored_the_lead_before_it_falls_due()
    {
        var held = Held();
        var outcome = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(20), CancellationToken.None);
        Assert.Equal(1, held.Count);

        _clock.Advance(TimeSpan.FromSeconds(20) - HeldSchedules.StoreLead - TimeSpan.FromMilliseconds(1));
        Assert.False(outcome.IsCompleted);
        _clock.Advance(TimeSpan.FromMilliseconds(1));

        Assert.False(await outcome);
        // Too late: the schedule is on its way to the store, so the cancel must go there too.
        Assert.False(held.TryCancel("a"));
    }

    [Fact]
    public async Task A_far_off_schedule_is_held_no_longer_than_the_hold_limit()
    {
        var held = Held();
        var outcome = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddHours(8), CancellationToken.None);
        Assert.Equal(1, held.Count);

        _clock.Advance(TimeSpan.FromSeconds(30));

        Assert.False(await outcome);
    }

    [Fact]
    public async Task Schedules_due_soon_or_beyond_the_limit_are_stored_at_once()
    {
        var held = Held(maxHeld: 1);
        Assert.False(await held.CancelledWhileHeldAsync("soon", _clock.GetUtcNow() + HeldSchedules.StoreLead,
            CancellationToken.None));

        var first = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);
        Assert.Equal(1, held.Count);
        Assert.False(
            await held.CancelledWhileHeldAsync("b", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None));
        Assert.Equal(1, held.Count);

        Assert.True(held.TryCancel("a"));
        Assert.True(await first);
    }

    [Fact]
    public async Task A_copy_redelivered_while_the_first_is_held_takes_over_the_hold_and_the_cancel_meets_it()
    {
        var held = Held();
        var first = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);
        Assert.Equal(1, held.Count);

        var second = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);

        // The first stores nothing: the second, still held, is the one copy left to store or cancel.
        Assert.True(await first);
        Assert.False(second.IsCompleted);
        Assert.True(held.TryCancel("a"));
        Assert.True(await second);
        Assert.False(held.TryCancel("a"));
    }

    [Fact]
    public async Task A_copy_that_took_over_the_hold_is_stored_when_no_cancel_comes()
    {
        var held = Held();
        var first = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);
        Assert.Equal(1, held.Count);
        var second = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);
        Assert.True(await first);

        _clock.Advance(TimeSpan.FromSeconds(26));

        Assert.False(await second);
        Assert.Equal(0, held.Count);
    }

    [Fact]
    public async Task Stopping_stores_every_held_schedule_at_once_and_holds_no_more()
    {
        var held = Held();
        var outcome = held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None);
        Assert.Equal(1, held.Count);

        held.StoreAll();

        Assert.False(await outcome);
        Assert.False(
            await held.CancelledWhileHeldAsync("b", _clock.GetUtcNow().AddSeconds(30), CancellationToken.None));
        Assert.Equal(0, held.Count);
    }

    [Fact]
    public async Task A_hold_limit_of_zero_stores_every_schedule_at_once()
    {
        var options = Options.Create(new QuartzEndpointOptions { HoldSchedulesFor = TimeSpan.Zero });
        var held = new HeldSchedules(options, _clock);

        Assert.False(await held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddMinutes(1), CancellationToken.None));
        Assert.Equal(0, held.Count);
    }

    [Fact]
    public async Task Holding_is_off_unless_the_endpoint_turns_it_on()
    {
        var held = new HeldSchedules(Options.Create(new QuartzEndpointOptions()), _clock);

        Assert.False(await held.CancelledWhileHeldAsync("a", _clock.GetUtcNow().AddMinutes(1), CancellationToken.None));
        Assert.Equal(0, held.Count);
    }
}
