using System.Diagnostics;

namespace DynamicWorkers.Bench;

/// <summary>How long each section runs: the full run (13 to 16 minutes, as busy as the machine is) or the smoke run
/// (seconds).</summary>
public sealed record BenchPlan(
    TimeSpan Raw,
    TimeSpan RawLifecycle,
    TimeSpan Latency,
    int[] Rates,
    int HotTarget,
    TimeSpan Closed,
    int ClosedLoopInstances,
    TimeSpan Hold,
    int HoldRate,
    double[] HoldShares,
    int PoolsRate,
    int PoolsCount,
    TimeSpan PoolsRun,
    int[] PoolSizes,
    int PoolSizeInstances,
    TimeSpan PoolSizeRun,
    TimeSpan PoolSizePause,
    TimeSpan PopulateDeadline,
    int[] ScaleOutCopies,
    TimeSpan StatsSettle,
    TimeSpan DatabaseStatsSettle,
    TimeSpan Warmup,
    TimeSpan CopyWarmup)
{
    public const string HotPool = "bench-hot";
    public const string ReusePool = "bench-reuse";
    public const string CyclePool = "bench-cycle";

    /// <summary>The hold at the goal rate, and the holds at shares of the ceiling after it, each on a pool of its own
    /// (not the closed loop's).</summary>
    public const string HoldPool = "bench-hold";
    public const string SustainPool = "bench-sustain";
    public const int HoldPoolHotTarget = 20;

    /// <summary>The pools section: one pool, against <see cref="PoolsCount"/> pools of these names.</summary>
    public const string OnePool = "bench-pools-one";
    public const int OnePoolHotTarget = 20;
    public static string ManyPool(int n) => $"bench-pools-{n:00}";

    /// <summary>The pool-size section: a pool per size.</summary>
    public static string SizePool(int size) => $"bench-size-{size}";

    // The management API samples statistics every 5 s: wait a little longer before reading a delivery count.
    // PostgreSQL's statistics: a backend that has gone idle flushes its last second's counts only after 10 s.
    public static readonly BenchPlan Full = new(
        Raw: TimeSpan.FromSeconds(10),
        RawLifecycle: TimeSpan.FromSeconds(10),
        Latency: TimeSpan.FromSeconds(10),
        Rates: [10, 50, 100],
        HotTarget: 400,
        Closed: TimeSpan.FromSeconds(20),
        ClosedLoopInstances: 32,
        Hold: TimeSpan.FromSeconds(60),
        HoldRate: Report.HoldGoalRate,
        HoldShares: [0.85, 0.6],
        PoolsRate: 40,
        PoolsCount: 50,
        PoolsRun: TimeSpan.FromSeconds(10),
        PoolSizes: [50, 500, 5000],
        PoolSizeInstances: 16,
        PoolSizeRun: TimeSpan.FromSeconds(10),
        PoolSizePause: TimeSpan.FromMilliseconds(250),
        PopulateDeadline: TimeSpan.FromSeconds(240),
        ScaleOutCopies: [2, 3],
        StatsSettle: TimeSpan.FromSeconds(6),
        DatabaseStatsSettle: TimeSpan.FromSeconds(11),
        Warmup: TimeSpan.FromSeconds(20),
        CopyWarmup: TimeSpan.FromSeconds(10));

    // Low rates: the smoke run proves every section works end to end, on a CI machine that may be busy.
    public static readonly BenchPlan Smoke = new(
        Raw: TimeSpan.FromSeconds(1),
        RawLifecycle: TimeSpan.FromSeconds(1),
        Latency: TimeSpan.FromSeconds(1),
        Rates: [5, 10, 20],
        HotTarget: 30,
        Closed: TimeSpan.FromSeconds(2),
        ClosedLoopInstances: 4,
        Hold: TimeSpan.FromSeconds(2),
        HoldRate: 5,
        HoldShares: [0.5],
        PoolsRate: 5,
        PoolsCount: 5,
        PoolsRun: TimeSpan.FromSeconds(2),
        PoolSizes: [8, 16, 32],
        PoolSizeInstances: 4,
        PoolSizeRun: TimeSpan.FromSeconds(1),
        PoolSizePause: TimeSpan.FromMilliseconds(250),
        PopulateDeadline: TimeSpan.FromSeconds(60),
        // A third copy runs the same code as the second: the smoke run spares itself the half minute it takes.
        ScaleOutCopies: [2],
        StatsSettle: TimeSpan.FromSeconds(6),
        DatabaseStatsSettle: TimeSpan.FromSeconds(6),
        Warmup: TimeSpan.FromSeconds(1),
        CopyWarmup: TimeSpan.FromSeconds(1));
}

/// <summary>A closed loop of lifecycles and where its cost went: deliveries, database commits, writing transactions and
/// saga conflicts per lifecycle.</summary>
public sealed record ClosedLoopProfile(LoadResult Result, double Messages, double Commits, double Writes,
    double Conflicts);

/// <summary>
/// One pool-size run: the pool's size, the live workers counted after it, the LeaseSaga copies, and CPU ms per
/// lifecycle of every LeaseSaga copy, of the PostgreSQL backends of the bench's database, and of the whole machine.
/// </summary>
public sealed record PoolSizeRun(
    int Size, int Live, int Copies, int Instances, TimeSpan Pause, LoadResult Result, double LeaseSagaCpuMs,
    double DatabaseCpuMs, double MachineCpuMs)
{
    /// <summary>What allocation costs wherever it runs: LeaseSaga's CPU and its database's backends'.</summary>
    public double AllocationCpuMs => LeaseSagaCpuMs + DatabaseCpuMs;
}

/// <summary>
/// An open-loop hold at one lifecycle rate. It holds when every lease is granted, p99 stays under a second,
/// no message went to an error queue and the queues stay bounded (in the last third, never more than two
/// seconds' worth of requests waiting). A hold the services fall behind by more than that (<see cref="GiveUpAfter"/> of
/// requests unanswered at once) stops sending there: it has not held, and a longer backlog would only eat the time
/// budget.
/// </summary>
public sealed record HoldResult(double Rate, TimeSpan Planned, int InstanceCount, LoadResult Load,
    long MaxDepthLastThird, long ErrorMessages, TimeSpan? GaveUpAt)
{
    /// <summary>How many seconds' worth of requests may be unanswered at once before the hold gives up.</summary>
    public static readonly TimeSpan GiveUpAfter = TimeSpan.FromSeconds(2);

    public bool Held => GaveUpAt is null && Load.Clean && Load.Percentile(99) <= 1000 && ErrorMessages == 0
        && MaxDepthLastThird <= 2 * Rate;

    public string Describe()
        => $"{Rate:0}/s: {(Held ? "held" : "NOT held")}"
           + $"{(GaveUpAt is { } at ? $" (gave up after {at.TotalSeconds:0} s, {GiveUpAfter.TotalSeconds:0} s of requests unanswered)" : "")}; "
           + $"{Report.Describe(Load)}; max queue depth in the last third {MaxDepthLastThird}; error-queue "
           + $"messages {ErrorMessages}";

    /// <summary>
    /// An instance of the hold asks again every <see cref="InstanceSpacing"/> or more: were its next request due before
    /// its last lifecycle ended (about half a second at the ceiling), it would need a second worker, and the run would
    /// measure provisioning, not lifecycles (a hold at 58/s over 32 instances had 3,373 of 3,480 leases wait for a new
    /// VM).
    /// </summary>
    public static readonly TimeSpan InstanceSpacing = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The spacing of the hold at the goal's rate: a service that keeps p99 within the goal's 100 ms ends a lifecycle
    /// well within a second, and half the instances halve the warm-up (each of them a hot lease, most of them a new
    /// VM).
    /// </summary>
    public static readonly TimeSpan GoalRateSpacing = TimeSpan.FromSeconds(1);

    public static int Instances(double rate, int atLeast, TimeSpan? spacing = null)
        => Math.Max(atLeast, (int)Math.Ceiling(rate * (spacing ?? InstanceSpacing).TotalSeconds));

    // Named by pool, not by rate: a later hold on the same pool re-uses the instances (and idle workers) of an earlier
    // one.
    static string HoldInstance(string pool, int n) => $"{pool}-{n:000}";

    /// <summary>One lease for each instance of the hold, released, so that each holds an idle worker when the hold
    /// starts.</summary>
    public static Task<LoadResult> WarmAsync(LeaseLoad load, string pool, double rate, int instances)
        => load.OpenLoopAsync(pool, rate, TimeSpan.FromSeconds(instances / rate), n => HoldInstance(pool, n));

    public static async Task<HoldResult> RunAsync(LeaseLoad load, BenchVirtualHost vhost, string pool, double rate,
        TimeSpan duration, int instances)
    {
        var started = Stopwatch.GetTimestamp();
        var depths = new List<(TimeSpan At, long Depth)>();
        TimeSpan? gaveUpAt = null;
        using var stop = new CancellationTokenSource();
        using var giveUp = new CancellationTokenSource();
        var watcher = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested && gaveUpAt is null)
            {
                if (load.Outstanding > Math.Max(20, rate * GiveUpAfter.TotalSeconds))
                {
                    gaveUpAt = Stopwatch.GetElapsedTime(started);
                    await giveUp.CancelAsync();
                }

                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(100), stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var queues = await vhost.QueueDepthsAsync();
                depths.Add((Stopwatch.GetElapsedTime(started),
                    queues.Where(q => !q.Key.EndsWith("_error", StringComparison.Ordinal)).Sum(q => q.Value)));
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), stop.Token);
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
        var result = await load.OpenLoopAsync(pool, rate, duration, n => HoldInstance(pool, n % instances),
            stop: giveUp.Token);
        await stop.CancelAsync();
        await sampler;
        await watcher;
        var lastThird = depths.Where(d => d.At >= duration * 2 / 3 && d.At <= duration).Select(d => d.Depth)
            .DefaultIfEmpty(0).Max();
        var errors = (await vhost.QueueDepthsAsync()).Where(q => q.Key.EndsWith("_error", StringComparison.Ordinal))
            .Sum(q => q.Value);
        return new HoldResult(rate, duration, instances, result, lastThird, errors, gaveUpAt);
    }
}
