using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>
/// Schedules waiting, not yet stored, for a cancel. Most timers are cancelled soon after they are set (a lease's
/// allocation timeout once it is granted, its max duration once it is released, a worker's trust timeout once it
/// trusts), so a schedule falling due later than <see cref="StoreLead"/> is first held for up to
/// <see cref="QuartzEndpointOptions.HoldSchedulesFor"/>: a cancel arriving meanwhile ends both with no write to the job
/// store.
/// A held schedule's message stays unacknowledged, so a process killed meanwhile loses nothing: the broker hands the
/// schedule to another node. Otherwise it is stored at least <see cref="StoreLead"/> before it falls due, and Quartz
/// fires it as before. One instance per process; a cancel that reaches another node goes to the store (and its
/// tombstone then keeps the held schedule out).
/// </summary>
public sealed class HeldSchedules
{
    /// <summary>
    /// A held schedule is stored at least this long before it falls due: time for Quartz to take it up.
    /// </summary>
    public static readonly TimeSpan StoreLead = TimeSpan.FromSeconds(5);

    readonly ConcurrentDictionary<string, TaskCompletionSource> _held = new();
    readonly TimeSpan _holdLimit;
    readonly int _maxHeld;
    readonly TimeProvider _clock;
    readonly CancellationTokenSource _stop = new();
    int _count;

    public HeldSchedules(IOptions<QuartzEndpointOptions> options, TimeProvider clock)
    {
        _holdLimit = options.Value.HoldSchedulesFor ?? TimeSpan.Zero;
        _maxHeld = options.Value.MaxHeld;
        _clock = clock;
        StoreSlots = new SemaphoreSlim(options.Value.ConcurrentStoreLimit ?? int.MaxValue);
    }

    /// <summary>Schedules stored at once (<see cref="QuartzEndpointOptions.ConcurrentStoreLimit"/>).</summary>
    public SemaphoreSlim StoreSlots { get; }

    /// <summary>How many are held now.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>
    /// Holds the schedule named <paramref name="token"/> until it is cancelled (true: store nothing) or its hold ends
    /// (false: store it). Returns false at once when it is due too soon, the hold is full or the host is stopping. A
    /// copy arriving while another is held (redelivered after a lost connection, whose ack the first can no longer
    /// give) takes over the hold: the first returns true, so a cancel still meets the one copy that may be stored.
    /// </summary>
    public async Task<bool> CancelledWhileHeldAsync(string token, DateTimeOffset due,
        CancellationToken cancellationToken)
    {
        var hold = Min(_holdLimit, due - _clock.GetUtcNow() - StoreLead);
        if (_stop.IsCancellationRequested || hold <= TimeSpan.Zero)
        {
            return false;
        }

        if (Interlocked.Increment(ref _count) > _maxHeld)
        {
            Interlocked.Decrement(ref _count);
            return false;
        }

        try
        {
            var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _held.AddOrUpdate(token, cancelled, (_, earlier) =>
            {
                earlier.TrySetResult();
                return cancelled;
            });

            using var timeout = new CancellationTokenSource(hold, _clock);
            using var ended = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, _stop.Token,
                cancellationToken);
            try
            {
                await cancelled.Task.WaitAsync(ended.Token).ConfigureAwait(false);
                return true;
            }
            catch (OperationCanceledException)
            {
                // Whoever takes the entry out owns the outcome: a cancel or a newer copy that came in the same instant
                // has it.
                return !_held.TryRemove(new KeyValuePair<string, TaskCompletionSource>(token, cancelled));
            }
        }
        finally
        {
            Interlocked.Decrement(ref _count);
        }
    }

    /// <summary>
    /// True when the schedule was held here: it is then never stored, and the cancel needs no write either.
    /// </summary>
    public bool TryCancel(string token)
    {
        if (!_held.TryRemove(token, out var cancelled))
        {
            return false;
        }

        cancelled.TrySetResult();
        return true;
    }

    /// <summary>Ends every hold (those schedules are stored at once) and holds no more: the host is stopping.</summary>
    public void StoreAll() => _stop.Cancel();

    static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
}

/// <summary>
/// On stop, stores what is held before Quartz stops (registered after it, so stopped before it): a schedule consumed
/// while the host stops is then stored like any other, not left to its redelivery.
/// </summary>
internal sealed class StoreHeldSchedulesOnStop(HeldSchedules held) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        held.StoreAll();
        while (held.Count > 0 && !cancellationToken.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(20), CancellationToken.None);
        }
    }
}
