using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using DynamicWorkers.Contracts;
using DynamicWorkers.Contracts.Internal;
using MassTransit;

namespace DynamicWorkers.Bench;

/// <summary>One lease in flight: when it was due to be sent, and how it ended.</summary>
public sealed class PendingLease(long dueAt)
{
    public long DueAt { get; } = dueAt;
    public TaskCompletionSource<object> Outcome { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    public long AnsweredAt { get; set; }
    public bool Queued { get; set; }
}

/// <summary>Every lease the benchmark sent, matched with its answer as it arrives.</summary>
public sealed class LeaseBook
{
    readonly ConcurrentDictionary<Guid, PendingLease> _leases = new();

    public PendingLease Add(Guid leaseId, long dueAt) => _leases[leaseId] = new PendingLease(dueAt);

    public void Answered(Guid leaseId, object outcome)
    {
        if (_leases.TryGetValue(leaseId, out var lease) && !lease.Outcome.Task.IsCompleted)
        {
            lease.AnsweredAt = Stopwatch.GetTimestamp();
            lease.Outcome.TrySetResult(outcome);
        }
    }

    public void Queued(Guid leaseId)
    {
        if (_leases.TryGetValue(leaseId, out var lease))
        {
            lease.Queued = true;
        }
    }
}

public sealed class OutcomeConsumer(LeaseBook book) : IConsumer<LeaseGranted>, IConsumer<LeaseRejected>,
    IConsumer<LeaseQueued>
{
    public Task Consume(ConsumeContext<LeaseGranted> context)
    {
        book.Answered(context.Message.LeaseId, context.Message);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<LeaseRejected> context)
    {
        book.Answered(context.Message.LeaseId, context.Message);
        return Task.CompletedTask;
    }

    public Task Consume(ConsumeContext<LeaseQueued> context)
    {
        book.Queued(context.Message.LeaseId);
        return Task.CompletedTask;
    }
}

/// <summary>What a run of leases did: grant latencies (from the time each request was due) and what went
/// wrong.</summary>
public sealed record LoadResult(int Sent, IReadOnlyList<double> LatenciesMs, int Rejected, int Unanswered, int Queued,
    int Reused, TimeSpan Elapsed)
{
    public int Granted => LatenciesMs.Count;
    public double Percentile(double p) => Stats.Percentile(LatenciesMs, p);
    public double Max => LatenciesMs.Count == 0 ? double.NaN : LatenciesMs.Max();
    public double CyclesPerSecond => Granted / Elapsed.TotalSeconds;
    public bool Clean => Rejected == 0 && Unanswered == 0;
}

public static class Stats
{
    public static double Percentile(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToArray();
        var rank = (int)Math.Ceiling(p / 100 * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}

/// <summary>Plays instances against the running services: open loop (on a schedule) or closed loop (as fast as answers
/// come).</summary>
public sealed class LeaseLoad(IBus bus, LeaseBook book)
{
    // Long enough for a busy machine; a lease still unanswered after it counts as lost.
    static readonly TimeSpan AnswerDeadline = TimeSpan.FromSeconds(60);

    int _outstanding;

    /// <summary>Leases sent and not answered yet (nor given up on): how far the services are behind.</summary>
    public int Outstanding => Volatile.Read(ref _outstanding);

    public static string ThumbprintOf(string instance)
        => Convert.ToHexString(SHA1.HashData(Encoding.UTF8.GetBytes(instance)));

    /// <summary>
    /// Sends <paramref name="rate"/> requests a second for <paramref name="duration"/>, each at its due time whatever
    /// happened to the ones before (a stall shows up as latency, it does not slow the sender), the instance of the
    /// n-th chosen by <paramref name="instanceOf"/> (and its pool by <paramref name="poolOf"/>, else
    /// <paramref name="pool"/>); each granted lease is released at once. Sending stops early when
    /// <paramref name="stop"/> is cancelled.
    /// </summary>
    public async Task<LoadResult> OpenLoopAsync(
        string pool, double rate, TimeSpan duration, Func<int, string> instanceOf, Func<int, string>? poolOf = null,
        CancellationToken stop = default)
    {
        var count = Math.Max(1, (int)Math.Round(rate * duration.TotalSeconds));
        var interval = Stopwatch.Frequency / rate;
        var start = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 20;
        var leases = new List<(PendingLease Lease, Task Done)>(count);
        var sends = new List<Task>(count);
        for (var n = 0; n < count && !stop.IsCancellationRequested; n++)
        {
            var due = start + (long)(n * interval);
            var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
            if (wait > TimeSpan.FromMilliseconds(1))
            {
                await Task.Delay(wait);
            }

            var instance = instanceOf(n);
            var request = new LeaseRequested(NewId.NextGuid(), instance, ThumbprintOf(instance),
                poolOf?.Invoke(n) ?? pool, $"bench-{n}", DateTimeOffset.UtcNow);
            var lease = book.Add(request.LeaseId, due);
            Interlocked.Increment(ref _outstanding);
            sends.Add(bus.Publish(request));
            leases.Add((lease, ReleaseWhenGrantedAsync(lease, request)));
        }

        await Task.WhenAll(sends);
        await Task.WhenAll(leases.Select(l => l.Done));
        return Summarise(leases.Select(l => l.Lease).ToList(), start);
    }

    /// <summary>
    /// <paramref name="instances"/> instances each request, wait for the grant and release, over and over, for
    /// <paramref name="duration"/>; with a <paramref name="pause"/> between a release and the next request.
    /// </summary>
    public async Task<LoadResult> ClosedLoopAsync(string pool, int instances, TimeSpan duration, string prefix,
        TimeSpan pause = default)
    {
        var start = Stopwatch.GetTimestamp();
        var end = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        var leases = new ConcurrentBag<PendingLease>();
        await Task.WhenAll(Enumerable.Range(0, instances).Select(async i =>
        {
            var instance = $"{prefix}-{i:000}";
            while (Stopwatch.GetTimestamp() < end)
            {
                var request = new LeaseRequested(NewId.NextGuid(), instance, ThumbprintOf(instance), pool, null,
                    DateTimeOffset.UtcNow);
                var lease = book.Add(request.LeaseId, Stopwatch.GetTimestamp());
                leases.Add(lease);
                Interlocked.Increment(ref _outstanding);
                await bus.Publish(request);
                await ReleaseWhenGrantedAsync(lease, request);
                if (!lease.Outcome.Task.IsCompleted)
                {
                    return; // no answer within the deadline: the run is not clean, stop this instance
                }

                if (pause > TimeSpan.Zero)
                {
                    await Task.Delay(pause);
                }
            }
        }));

        return Summarise(leases.ToList(), start);
    }

    async Task ReleaseWhenGrantedAsync(PendingLease lease, LeaseRequested request)
    {
        var answered = await Task.WhenAny(lease.Outcome.Task, Task.Delay(AnswerDeadline));
        Interlocked.Decrement(ref _outstanding);
        if (answered == lease.Outcome.Task && lease.Outcome.Task.Result is LeaseGranted)
        {
            await bus.Publish(new LeaseReleased(request.LeaseId, request.InstanceId));
        }
    }

    static LoadResult Summarise(IReadOnlyList<PendingLease> leases, long start)
    {
        var answered = leases.Where(l => l.Outcome.Task.IsCompleted).ToList();
        var granted = answered.Where(l => l.Outcome.Task.Result is LeaseGranted).ToList();
        var last = answered.Count == 0 ? Stopwatch.GetTimestamp() : answered.Max(l => l.AnsweredAt);
        return new LoadResult(
            leases.Count,
            granted.Select(l => Stopwatch.GetElapsedTime(l.DueAt, l.AnsweredAt).TotalMilliseconds).ToList(),
            answered.Count - granted.Count,
            leases.Count - answered.Count,
            leases.Count(l => l.Queued),
            granted.Count(l => ((LeaseGranted)l.Outcome.Task.Result).Reused),
            Stopwatch.GetElapsedTime(start, last));
    }
}
